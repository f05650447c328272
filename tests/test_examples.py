"""The examples run end to end (with small settings) and write their figure."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("plot_*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs_and_writes_its_figure(script, tmp_path):
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        # Small settings; scripts that know these variables use them.
        "SKAE_EXAMPLE_MAX_ITER": "3",
        "SKAE_EXAMPLE_N_SAMPLES": "300",
        "SKAE_EXAMPLE_QUICK": "1",
        "SKAE_EXAMPLE_OUTPUT": str(tmp_path / f"{script.stem}.png"),
    }
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = list(tmp_path.glob("*.png"))
    assert figures, f"{script.name} wrote no PNG"
    assert all(figure.stat().st_size > 10_000 for figure in figures)


def test_main_example_is_listed():
    assert "plot_digits_tsne" in [path.stem for path in EXAMPLES]
