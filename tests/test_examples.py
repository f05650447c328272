"""The examples run end to end (in quick mode) and write their figure."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("plot_*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs_and_writes_its_figure(script, tmp_path):
    output = tmp_path / f"{script.stem}.png"
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        # Small settings (few rows and epochs): every example reads QUICK.
        "SKAE_EXAMPLE_QUICK": "1",
        "SKAE_EXAMPLE_MAX_ITER": "3",
        "SKAE_EXAMPLE_N_SAMPLES": "300",
        "SKAE_EXAMPLE_OUTPUT": str(output),
    }
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert output.is_file(), f"{script.name} did not write SKAE_EXAMPLE_OUTPUT"
    assert output.stat().st_size > 10_000


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_is_a_gallery_script(script):
    """sphinx-gallery needs a docstring whose first lines are an RST title."""
    text = script.read_text()
    docstring = ast.get_docstring(ast.parse(text))
    assert docstring, f"{script.name} has no module docstring"
    title, underline, *_ = docstring.splitlines()
    assert underline == "=" * len(title), f"{script.name}: title not underlined with '='"
    assert "SKAE_EXAMPLE_QUICK" in text and "SKAE_EXAMPLE_OUTPUT" in text


def test_main_example_is_listed():
    assert "plot_digits_tsne" in [path.stem for path in EXAMPLES]
