"""Errors in scikit-learn's words, never torch's, and never silent (issue 16).

Sizes that cannot fit in memory, malformed sparse matrices, absurd thread
counts and exploding losses each get an error that names the parameter and
the fix, raised before torch allocates or crashes, with the estimator left
as it was; a fit whose result no epoch made says so.
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

import skae._device
from skae import (
    AutoencoderClassifier,
    AutoencoderTransformer,
    ConvolutionalAutoencoder,
    DenoisingAutoencoder,
    TrainingDivergedError,
    VariationalAutoencoder,
)
from skae._device import MAX_THREADS, check_memory, memory_of
from skae._stopping import DivergenceRule

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*max_iter=.*:sklearn.exceptions.ConvergenceWarning")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = dict(max_iter=3, random_state=0, device="cpu", early_stopping=False)


@pytest.fixture
def X():
    return np.random.RandomState(0).rand(40, 8)


# --------------------------------------------------------------------------- #
# Sizes known before allocating.

def test_memory_of_the_cpu_is_the_machines():
    total = memory_of("cpu")
    assert isinstance(total, int) and total > 2**28
    assert memory_of(torch.device("cpu")) == total
    if not hasattr(os, "sysconf") or "SC_PHYS_PAGES" not in os.sysconf_names:
        return
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    import resource

    limited = resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as file:
                limited |= int(file.read()) < ram
        except (OSError, ValueError):
            pass
    if not limited:  # RAM, and swap where psutil sees it
        assert total >= ram


HUGE = r"hidden_layer_sizes=\(1000000000000,\)"


@pytest.mark.parametrize("estimator, parameter", [
    (AutoencoderTransformer(hidden_layer_sizes=(10**12,)), HUGE),
    (DenoisingAutoencoder(hidden_layer_sizes=(10**12,)), HUGE),
    (VariationalAutoencoder(hidden_layer_sizes=(10**12,)), HUGE),
    (ConvolutionalAutoencoder(channels=(10**9,)), r"channels=\(1000000000,\)"),
    (AutoencoderClassifier(pretrain=False,
                           autoencoder=AutoencoderTransformer(hidden_layer_sizes=(10**12,))),
     "autoencoder=AutoencoderTransformer"),
], ids=lambda value: type(value).__name__ if not isinstance(value, str) else "")
def test_a_network_larger_than_memory_is_refused_before_torch_allocates(estimator, parameter, X):
    """torch's allocator RuntimeError escaped before (issue 16)."""
    estimator = clone(estimator).set_params(**FAST)
    y = np.arange(X.shape[0]) % 2
    with pytest.raises(MemoryError, match=f"{parameter}.*parameters; training them would need "
                                          ".*more than the .* of memory this machine has; make"):
        estimator.fit(X, y) if isinstance(estimator, AutoencoderClassifier) else estimator.fit(X)
    assert not hasattr(estimator, "module_")


def test_the_network_bound_is_the_memory_and_large_networks_that_fit_train(X, monkeypatch):
    """The bound is the device's memory, not a constant: a 33-million-parameter
    network (a 2,048-wide hidden layer twice over) trains here, and the same
    network is refused where memory is said to hold only 100 MiB."""
    wide = AutoencoderTransformer(hidden_layer_sizes=(2048, 2048), max_iter=1, batch_size=40,
                                  random_state=0, early_stopping=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clone(wide).fit(X)
        small = clone(wide).set_params(hidden_layer_sizes=(16,))
        monkeypatch.setattr(skae._device, "memory_of", lambda device: 100 * 2**20)
        small.fit(X)  # 16-wide: a few kilobytes
        with pytest.raises(MemoryError, match=r"hidden_layer_sizes=\(2048, 2048\).*100 MiB"):
            clone(wide).fit(X)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_gpu_the_bound_is_the_gpus_memory(X):
    gpu_memory = torch.cuda.get_device_properties(0).total_memory
    assert memory_of("cuda:0") == gpu_memory
    # 20 * width parameters of 16 bytes: 1.25 times the GPU's memory.
    width = gpu_memory // (16 * 2 * X.shape[1]) + 1
    model = AutoencoderTransformer(hidden_layer_sizes=(width,), **{**FAST, "device": "cuda"})
    with pytest.raises(MemoryError, match="of memory the GPU cuda"):
        model.fit(X)


def test_the_gpus_memory_is_named_for_a_gpu(monkeypatch):
    monkeypatch.setattr(skae._device, "memory_of", lambda device: 2**30)
    with pytest.raises(MemoryError, match="more than the 1 GiB of memory the GPU cuda:1 has"):
        check_memory(2**31, torch.device("cuda:1"), "This", "ask less")


def test_batches_larger_than_memory_are_refused_before_the_first_step(monkeypatch):
    """A network that fits can still take more than the machine's memory in the
    outputs of its layers for one batch: torch's allocator error escaped at the
    first step before. The bound counts every layer's output for each row."""
    X = np.random.RandomState(0).rand(200, 64)
    wide = ConvolutionalAutoencoder(channels=(512,), image_shape=(1, 8, 8), **FAST)
    monkeypatch.setattr(skae._device, "memory_of", lambda device: 8 * 2**20)
    with pytest.raises(MemoryError, match=r"batch_size='auto' trains on 200 rows a step, each "
                                          r"taking [\d,]+ values in the network's layers.*"
                                          "lower batch_size, or make .*channels.* smaller"):
        clone(wide).fit(X)
    clone(wide).set_params(batch_size=8).fit(X)


def test_sample_refuses_sizes_larger_than_memory_before_drawing(X):
    vae = VariationalAutoencoder(n_components=2, **FAST).fit(X)
    with pytest.raises(MemoryError, match=r"sample\(n_samples=10000000000000\) would need"):
        vae.sample(10**13)
    assert vae.sample(3, random_state=0).shape == (3, X.shape[1])


def test_inference_refuses_an_output_larger_than_memory(X, monkeypatch):
    model = AutoencoderTransformer(n_components=2, **FAST).fit(X)
    codes = np.zeros((20_000, 2))
    model.transform(np.zeros((20_000, X.shape[1])))
    monkeypatch.setattr(skae._device, "memory_of", lambda device: 2**20)
    # 20,000 rows of 8 float64 values: 1.2 MiB.
    with pytest.raises(MemoryError, match=r"The output for 20000 rows, of shape \(20000, 8\) "
                                          r"in float64, would need .*pass fewer rows"):
        model.inverse_transform(codes)
    assert model.inverse_transform(codes[:1000]).shape == (1000, 8)


def test_check_memory_lets_through_what_may_fit():
    check_memory(memory_of("cpu"), "cpu", "this", "that")
    with pytest.raises(MemoryError, match="^Five bytes too many would need"):
        check_memory(memory_of("cpu") + 5, "cpu", "Five bytes too many", "ask less")


# --------------------------------------------------------------------------- #
# Sparse structure.

def _corrupt(X, how):
    """A copy of CSR ``X`` whose arrays were changed after it was built."""
    X = X.copy()
    if how == "column index too large":
        X.indices[3] = X.shape[1] + 92
    elif how == "negative column index":
        X.indices[3] = -1
    elif how == "indptr decreasing":
        X.indptr[5], X.indptr[6] = X.indptr[6], X.indptr[5]
    elif how == "indptr past the end":
        X.indptr[-1] += 7
    return X


CORRUPTIONS = ["column index too large", "negative column index", "indptr decreasing",
               "indptr past the end"]


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("method", ["fit", "partial_fit", "transform", "score_samples",
                                    "inverse_transform"])
def test_a_malformed_csr_matrix_is_refused_in_every_method(how, method, X):
    """It trained silently or raised torch's IndexError before (issue 16)."""
    fitted = AutoencoderTransformer(n_components=2, **FAST).fit(X)
    sparse = sp.csr_matrix(X if method != "inverse_transform" else fitted.transform(X))
    bad = _corrupt(sparse, how)
    arrays = [bad.data.copy(), bad.indices.copy(), bad.indptr.copy()]
    model = clone(fitted) if method in ("fit", "partial_fit") else fitted
    name = "Z" if method == "inverse_transform" else "X"
    with pytest.raises(ValueError, match=f"^{name} is not a valid CSR matrix: .*scipy.sparse"):
        getattr(model, method)(bad)
    for before, after in zip(arrays, [bad.data, bad.indices, bad.indptr]):
        assert_array_equal(before, after)


@pytest.mark.parametrize("method", ["fit", "predict"])
def test_the_classifier_refuses_a_malformed_csr_matrix(method, X):
    y = np.arange(X.shape[0]) % 2
    bad = _corrupt(sp.csr_matrix(X), "column index too large")
    model = AutoencoderClassifier(pretrain=False, **FAST)
    if method == "predict":
        model.fit(X, y)
    with pytest.raises(ValueError, match="X is not a valid CSR matrix"):
        model.fit(bad, y) if method == "fit" else model.predict(bad)


def test_unsorted_and_repeated_indices_are_made_canonical_in_a_copy(X):
    sparse = sp.csr_matrix(X)
    messy = sp.csr_matrix(sparse, copy=True)
    # Row 0: its first two entries swapped; row 1: its first entry split in two.
    messy.indices[[0, 1]] = messy.indices[[1, 0]]
    messy.data[[0, 1]] = messy.data[[1, 0]]
    start = messy.indptr[1]
    indices = np.insert(messy.indices, start, messy.indices[start])
    data = np.insert(messy.data, start, 0.25 * messy.data[start])
    data[start + 1] *= 0.75
    indptr = messy.indptr.copy()
    indptr[2:] += 1
    messy = sp.csr_matrix((data, indices, indptr), shape=X.shape)
    assert not messy.has_canonical_format
    arrays = [messy.data.copy(), messy.indices.copy(), messy.indptr.copy()]
    clean = AutoencoderTransformer(n_components=2, **FAST).fit(sparse)
    model = AutoencoderTransformer(n_components=2, **FAST).fit(messy)
    np.testing.assert_allclose(model.loss_curve_, clean.loss_curve_, rtol=1e-6)
    np.testing.assert_allclose(model.transform(messy), clean.transform(sparse), atol=1e-6)
    for before, after in zip(arrays, [messy.data, messy.indices, messy.indptr]):
        assert_array_equal(before, after)


# --------------------------------------------------------------------------- #
# Threads.

def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)


def test_an_absurd_thread_count_is_a_value_error_not_a_crash():
    """n_threads=100000 killed the process (segmentation fault) before (issue 16):
    run in a subprocess, so that a crash fails this test instead of pytest."""
    result = _run(
        "import numpy as np\n"
        "from skae import AutoencoderTransformer\n"
        "X = np.random.RandomState(0).rand(30, 5)\n"
        "model = AutoencoderTransformer(max_iter=2, early_stopping=False)\n"
        "try:\n"
        "    model.set_params(n_threads=100000).fit(X)\n"
        "except ValueError as error:\n"
        "    print('fit:', error)\n"
        "model.set_params(n_threads=1).fit(X).set_params(n_threads=100000)\n"
        "try:\n"
        "    model.transform(X)\n"
        "except ValueError as error:\n"
        "    print('transform:', error)\n")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("fit: The 'n_threads' parameter of AutoencoderTransformer must "
                               f"be None or an int in the range [1, {MAX_THREADS}]")
    assert lines[1].startswith(f"transform: n_threads must be None or an int in [1, {MAX_THREADS}]")


@pytest.mark.parametrize("n_threads", [None, 1, MAX_THREADS])
def test_thread_counts_up_to_the_bound_are_valid(n_threads):
    AutoencoderTransformer(n_threads=n_threads)._validate_params()


def test_the_thread_bound_is_documented():
    for estimator in (AutoencoderTransformer, DenoisingAutoencoder, VariationalAutoencoder,
                      ConvolutionalAutoencoder, AutoencoderClassifier):
        entry = estimator.__doc__.split("n_threads :")[1].split("precision :")[0]
        assert f"at most {MAX_THREADS}" in " ".join(entry.lower().split())


# --------------------------------------------------------------------------- #
# Divergence.

@pytest.fixture(scope="module")
def digits_sample():
    from sklearn.datasets import load_digits

    return load_digits().data[:600] / 16.0


DIVERGING = [
    AutoencoderTransformer(), DenoisingAutoencoder(), VariationalAutoencoder(),
    ConvolutionalAutoencoder(channels=(4,), image_shape=(1, 8, 8)),
]


@pytest.mark.parametrize("estimator", DIVERGING, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("early_stopping", [False, True])
def test_an_exploding_loss_is_divergence_for_every_estimator(estimator, early_stopping,
                                                            digits_sample):
    """learning_rate_init=10 ended at a loss of 1e9 reported as converged (issue 16);
    the fitted model is kept as it was."""
    X = digits_sample
    model = clone(estimator).set_params(max_iter=3, random_state=0, n_components=4,
                                        early_stopping=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    codes = model.transform(X)
    model.set_params(learning_rate_init=10, early_stopping=early_stopping, max_iter=20)
    with pytest.raises(TrainingDivergedError,
                       match="training loss (reached|became) .* in epoch 1.*"
                             r"lower learning_rate_init \(now 10"):
        model.fit(X)
    assert_array_equal(model.transform(X), codes)
    assert model.learning_rate_init == 10


def test_the_classifier_diverges_too(digits_sample):
    X = digits_sample
    y = np.arange(X.shape[0]) % 3
    with pytest.raises(TrainingDivergedError, match="diverged"):
        AutoencoderClassifier(pretrain=False, learning_rate_init=1e3, max_iter=5,
                              early_stopping=False, random_state=0).fit(X, y)


def test_divergence_rule_measures_against_the_start_and_the_data():
    rule = DivergenceRule(factor=1e3)
    rule.start(starting_loss=5.0, data_scale=0.1)
    rule.check(4999.0, epoch=1)
    with pytest.raises(TrainingDivergedError, match="reached 5.01e\\+03 in epoch 2"):
        rule.check(5010.0, epoch=2)
    # A start that already fits is measured against the data...
    rule.start(starting_loss=1e-12, data_scale=20.0)
    rule.check(1e4, epoch=1)
    with pytest.raises(TrainingDivergedError):
        rule.check(2.1e4, epoch=1)
    # ... and against 1 when both are tiny.
    rule.start(starting_loss=0.0, data_scale=1e-16)
    rule.check(999.0, epoch=1)
    rule.start(starting_loss=-3.0, data_scale=0.0)  # a loss may be negative
    with pytest.raises(TrainingDivergedError):
        rule.check(3001.0, epoch=1)


@pytest.mark.parametrize("value", [0.0, 1e-8, 3.0])
@pytest.mark.parametrize("estimator", [*DIVERGING, AutoencoderTransformer(init="random")],
                         ids=lambda e: type(e).__name__)
def test_constant_data_of_any_scale_is_no_divergence(estimator, value):
    """Healthy training on rows of 1e-8 grows the loss from 1e-16 to 1e-10."""
    X = np.full((50, 64), value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clone(estimator).set_params(max_iter=50, n_components=2, random_state=0).fit(X)


def test_kept_starting_network_warns(digits_sample):
    """Early stopping kept the starting network silently (issue 16)."""
    X = digits_sample
    with pytest.warns(ConvergenceWarning, match="none of the .* epochs improved the validation "
                                                "score .* so that network is kept"):
        model = AutoencoderTransformer(learning_rate_init=0.1, early_stopping=True,
                                       random_state=0).fit(X)
    assert model.n_iter_ > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        AutoencoderTransformer(learning_rate_init=0.003, early_stopping=True,
                               random_state=0).fit(X)


def test_a_start_already_at_the_optimum_is_kept_without_a_warning():
    """A linear autoencoder set up as PCA starts at its optimum: epochs stay
    within a fraction of a percent of it, and keeping it is no failure.

    ``alpha=0.3`` (on 180 training rows of 30 features, the weight decay 1e-4
    the default alpha had before it took scikit-learn's meaning) holds every
    epoch slightly off that optimum; a weaker penalty lets epochs tie it."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 30))
    X += 0.1 * rng.normal(size=X.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = AutoencoderTransformer(activation="identity", hidden_layer_sizes=(),
                                       n_components=6, early_stopping=True, alpha=0.3,
                                       random_state=0).fit(X[:200])
    assert max(model.validation_scores_) < model.best_validation_score_  # the start, kept
