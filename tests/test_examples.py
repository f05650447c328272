"""The examples run end to end (in quick mode) and write their figure.

All of them run in one subprocess, one after the other (each with its own
output path, warning filters and fresh figures), so that torch and
scikit-learn are imported once rather than once per example.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("plot_*.py"))

RUNNER = """
import json, os, runpy, sys, time, traceback, warnings
import matplotlib.pyplot as plt

results = {}
for script, output in json.loads(sys.argv[1]):
    os.environ["SKAE_EXAMPLE_OUTPUT"] = output
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            runpy.run_path(script, run_name="__main__")
        results[script] = {"error": None}
    except BaseException:
        results[script] = {"error": traceback.format_exc()[-3000:]}
    results[script]["seconds"] = time.perf_counter() - start
    plt.close("all")
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples")
    jobs = [(str(script), str(folder / f"{script.stem}.png")) for script in EXAMPLES]
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        # Small settings (few rows and epochs): every example reads QUICK.
        "SKAE_EXAMPLE_QUICK": "1",
        "SKAE_EXAMPLE_MAX_ITER": "3",
        "SKAE_EXAMPLE_N_SAMPLES": "300",
    }
    result = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(jobs)], cwd=folder,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), dict(jobs)


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs_and_writes_its_figure(runs, script):
    results, outputs = runs
    assert results[str(script)]["error"] is None, results[str(script)]["error"]
    output = Path(outputs[str(script)])
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
