"""The examples run end to end, without a warning, and write their figure.

All of them run in one subprocess, one after the other (each with its own
output path, warning filters and fresh figures), so that torch and
scikit-learn are imported once rather than once per example. Every warning an
example emits is recorded (a filter set to "always") and fails its test: a
user who copies an example sees what the gallery shows. Quick mode
(``SKAE_EXAMPLE_QUICK=1``) runs small settings; the slow test runs the
examples as written, where every fit must converge.
"""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))

RUNNER = """
import json, os, runpy, sys, time, traceback, warnings
import matplotlib.pyplot as plt
# Imported before any example runs, so that what their imports warn about
# (not the examples' concern) is not counted against the first example.
import sklearn, skae, torch  # noqa: F401

results = {}
for script, output in json.loads(sys.argv[1]):
    os.environ["SKAE_EXAMPLE_OUTPUT"] = output
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            runpy.run_path(script, run_name="__main__")
            results[script] = {"error": None}
        except BaseException:
            results[script] = {"error": traceback.format_exc()[-3000:]}
    results[script]["warnings"] = [
        f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught]
    results[script]["seconds"] = time.perf_counter() - start
    plt.close("all")
print(json.dumps(results))
"""


def run_examples(folder, quick):
    """Run every example in one subprocess; their results by script path, and their outputs."""
    jobs = [(str(script), str(folder / f"{script.stem}.png")) for script in EXAMPLES]
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    env.pop("SKAE_EXAMPLE_QUICK", None)
    if quick:
        # Small settings (few rows; a callback ends every fit after a few epochs).
        env["SKAE_EXAMPLE_QUICK"] = "1"
    result = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(jobs)], cwd=folder,
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), dict(jobs)


def check_run(results, outputs, script):
    assert results[str(script)]["error"] is None, results[str(script)]["error"]
    assert results[str(script)]["warnings"] == [], (
        f"{script.name} emitted warnings: {results[str(script)]['warnings']}")
    output = Path(outputs[str(script)])
    assert output.is_file(), f"{script.name} did not write SKAE_EXAMPLE_OUTPUT"
    assert output.stat().st_size > 10_000


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return run_examples(tmp_path_factory.mktemp("examples"), quick=True)


@pytest.fixture(scope="module")
def full_runs(tmp_path_factory):
    return run_examples(tmp_path_factory.mktemp("examples-full"), quick=False)


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs_without_warnings_and_writes_its_figure(runs, script):
    check_run(*runs, script)


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_at_its_own_settings_converges_without_warnings(full_runs, script):
    """As written (no quick mode), every fit converges: no ConvergenceWarning."""
    check_run(*full_runs, script)


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_hides_no_warning(script):
    """No example silences a warning (the runs above would not see it)."""
    tree = ast.parse(script.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
                node.func, "id", None)
            assert function not in {"simplefilter", "filterwarnings", "resetwarnings"}, (
                f"{script.name}:{node.lineno} sets a warning filter")


def test_readme_gallery_list_names_every_example():
    readme = (ROOT / "README.md").read_text()
    gallery = readme[readme.index("**Gallery**"):]
    gallery = gallery[:gallery.index("\n- **")]
    listed = set(re.findall(r"`(plot_\w+\.py)`", gallery))
    assert listed == {script.name for script in EXAMPLES}


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
