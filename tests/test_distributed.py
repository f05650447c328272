"""One model on several processes: distributed=True under torchrun (2 CPU processes, gloo)."""

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from skae import AutoencoderTransformer

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.skipif(not torch.distributed.is_available(),
                       reason="this torch build has no torch.distributed"),
]

SCRIPT = """
import os, pickle, sys, warnings
import joblib, numpy as np, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from skae import AutoencoderClassifier, AutoencoderTransformer, VariationalAutoencoder

warnings.simplefilter("ignore")
dist.init_process_group("gloo")
rank = dist.get_rank()
rng = np.random.RandomState(0)
X = (rng.normal(size=(256, 3)) @ rng.normal(size=(3, 10))).astype(np.float32)
y = (X[:, 0] > 0).astype(int)
y[::3] = -1
common = dict(n_components=3, batch_size=16, random_state=0, distributed=True)
results = {}
results["ae"] = AutoencoderTransformer(max_iter=3, **common).fit(X)
results["stopped"] = AutoencoderTransformer(
    max_iter=60, early_stopping=True, n_iter_no_change=2, tol=1e-3, learning_rate_init=0.01,
    **common).fit(X)
results["vae"] = VariationalAutoencoder(max_iter=2, **common).fit(X)
results["unseeded"] = AutoencoderTransformer(
    n_components=3, max_iter=2, random_state=None, distributed=True).fit(X)
results["classifier"] = AutoencoderClassifier(
    AutoencoderTransformer(max_iter=2, **common), freeze_encoder=False, max_iter=2,
    batch_size=16, random_state=None, distributed=True).fit(X, y)
import scipy.sparse as sp
import skae._sources
results["sparse"] = AutoencoderTransformer(max_iter=2, **common).fit(
    sp.csr_matrix(np.where(X > 1, X, 0)))
np.save(os.path.join(sys.argv[1], f"X{rank}.npy"), X)
skae._sources.BLOCK_BYTES = 10 * 4 * 16  # blocks of 16 rows: this memmap is read in windows
results["blocks"] = AutoencoderTransformer(max_iter=2, early_stopping=True, **common).fit(
    np.load(os.path.join(sys.argv[1], f"X{rank}.npy"), mmap_mode="r"))
results["frozen"] = AutoencoderClassifier(  # DDP sees the head's parameters only
    AutoencoderTransformer(max_iter=2, **common), max_iter=3, batch_size=16, random_state=0,
    distributed=True).fit(X, y)
partial = AutoencoderTransformer(**common)
for start in range(0, 256, 128):
    partial.partial_fit(X[start:start + 128])
results["partial"] = partial
assert not any(isinstance(m.module_, DistributedDataParallel) for m in results.values())
results["seeds"] = [results[name]._training.seed for name in ("unseeded", "classifier")]
errors = {}
try:
    AutoencoderTransformer(max_iter=1, **common).fit(X[:100 + rank])
except ValueError as error:
    errors["rows"] = str(error)
with joblib.parallel_config(backend="threading"):
    try:
        joblib.Parallel(n_jobs=2)(joblib.delayed(AutoencoderTransformer(**common).fit)(X)
                                  for _ in range(2))
    except ValueError as error:
        errors["search"] = str(error)
results["errors"] = errors
with open(os.path.join(sys.argv[1], f"rank{rank}.pkl"), "wb") as file:
    pickle.dump(results, file)
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    """What each of two processes fitted under torchrun, as loaded pickles."""
    folder = tmp_path_factory.mktemp("distributed")
    script = folder / "train.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(script), str(folder)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    loaded = []
    for rank in range(2):
        with open(folder / f"rank{rank}.pkl", "rb") as file:
            loaded.append(pickle.load(file))
    return loaded


# The same launch, but the script never makes a process group: skae starts
# one for each fit from torchrun's environment and destroys it after.
LAUNCHED_SCRIPT = """
import os, pickle, sys, warnings
import numpy as np, torch.distributed as dist
from skae import AutoencoderClassifier, AutoencoderTransformer

warnings.simplefilter("ignore")
rng = np.random.RandomState(0)
X = (rng.normal(size=(256, 3)) @ rng.normal(size=(3, 10))).astype(np.float32)
y = (X[:, 0] > 0).astype(int)
common = dict(n_components=3, batch_size=16, random_state=0, distributed=True)
results = {"ae": AutoencoderTransformer(max_iter=3, **common).fit(X)}
results["group_after_fit"] = dist.is_initialized()
results["classifier"] = AutoencoderClassifier(
    AutoencoderTransformer(max_iter=2, **common), freeze_encoder=False, max_iter=2,
    batch_size=16, random_state=0, distributed=True).fit(X, y)
partial = AutoencoderTransformer(**common)
for start in range(0, 256, 128):
    partial.partial_fit(X[start:start + 128])
results["partial"] = partial
results["group_at_end"] = dist.is_initialized()
with open(os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pkl"), "wb") as file:
    pickle.dump(results, file)
"""


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """What each of two processes fitted under torchrun with no process group of its own."""
    folder = tmp_path_factory.mktemp("launched")
    script = folder / "train.py"
    script.write_text(textwrap.dedent(LAUNCHED_SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(script), str(folder)], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    loaded = []
    for rank in range(2):
        with open(folder / f"rank{rank}.pkl", "rb") as file:
            loaded.append(pickle.load(file))
    return loaded


@pytest.mark.parametrize("name", ["ae", "classifier", "partial"])
def test_under_torchrun_skae_starts_the_process_group_itself(launched, name):
    # Issue 16: this raised "none is initialised" under torchrun.
    first, second = launched[0][name], launched[1][name]
    assert first.batch_size_ == 16  # per process: the two trained as one
    for a, b in zip(_weights(first), _weights(second)):
        assert_array_equal(a, b)
    assert first.loss_curve_ == second.loss_curve_


def test_the_process_group_skae_started_is_destroyed_after_the_fit(launched):
    for results in launched:
        assert results["group_after_fit"] is False and results["group_at_end"] is False


def test_the_launched_fit_is_the_single_process_fit_with_the_global_batch(launched):
    rng = np.random.RandomState(0)
    X = (rng.normal(size=(256, 3)) @ rng.normal(size=(3, 10))).astype(np.float32)
    single = AutoencoderTransformer(n_components=3, batch_size=32, max_iter=3,
                                    random_state=0).fit(X)
    assert_allclose(launched[0]["ae"].loss_curve_, single.loss_curve_, rtol=1e-5)


def _weights(model):
    return [p.detach().numpy() for p in model.module_.parameters()]


@pytest.mark.parametrize("name", ["ae", "stopped", "vae", "unseeded", "classifier", "partial",
                                  "sparse", "blocks", "frozen"])
def test_every_process_ends_with_the_same_plain_estimator(replicas, name):
    first, second = replicas[0][name], replicas[1][name]
    for a, b in zip(_weights(first), _weights(second)):
        assert_array_equal(a, b)
    assert first.loss_curve_ == second.loss_curve_
    assert first.n_iter_ == second.n_iter_


def test_unseeded_processes_share_one_seed(replicas):
    assert replicas[0]["seeds"] == replicas[1]["seeds"]


def test_two_processes_train_as_one_with_the_global_batch(replicas):
    rng = np.random.RandomState(0)
    X = (rng.normal(size=(256, 3)) @ rng.normal(size=(3, 10))).astype(np.float32)
    single = AutoencoderTransformer(n_components=3, batch_size=32, max_iter=3,
                                    random_state=0).fit(X)
    distributed = replicas[0]["ae"]
    assert distributed.batch_size_ == 16  # per process
    assert_allclose(distributed.loss_curve_, single.loss_curve_, rtol=1e-5)
    for a, b in zip(_weights(distributed), _weights(single)):
        assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_early_stopping_is_agreed_by_every_process(replicas):
    first, second = replicas[0]["stopped"], replicas[1]["stopped"]
    assert first.n_iter_ < 60  # it did stop early
    assert first.validation_scores_ == second.validation_scores_


def test_processes_with_different_rows_and_parallel_searches_are_refused(replicas):
    for results in replicas:
        assert "different numbers of rows" in results["errors"]["rows"]
        assert "parallel search" in results["errors"]["search"]


def test_distributed_without_a_process_group_says_how_to_start_one(monkeypatch):
    X = np.random.RandomState(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match="torchrun.*init_process_group"):
        AutoencoderTransformer(distributed=True).fit(X)
    # Part of a launcher's environment is not a launch: no group is started.
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ValueError, match="no launcher started"):
        AutoencoderTransformer(distributed=True).fit(X)
    assert not torch.distributed.is_initialized()
