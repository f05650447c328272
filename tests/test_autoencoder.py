"""AutoencoderTransformer: the uses users come for, errors, guarantees."""

import io
import pickle
import re
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.linalg import subspace_angles
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.manifold import TSNE, trustworthiness
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skae import AutoencoderTransformer

FAST = dict(hidden_layer_sizes=(16,), max_iter=5, random_state=0)


def fitted_params(estimator):
    return {k: v.detach().clone() for k, v in estimator.module_.state_dict().items()}


def reconstruction_score(ae, X):
    """Minus the mean squared reconstruction error (``score`` is a log-likelihood)."""
    return -float(np.mean((ae.inverse_transform(ae.transform(X)) - X) ** 2))


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(autouse=True)
def _no_convergence_noise():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


# --------------------------------------------------------------------------- #
# The uses users come for.

def test_fit_transform_shapes_and_attributes(blobs):
    ae = AutoencoderTransformer(n_components=3, **FAST)
    codes = ae.fit_transform(blobs)
    assert codes.shape == (120, 3)
    assert ae.inverse_transform(codes).shape == (120, 10)
    assert ae.n_features_in_ == 10
    assert ae.n_iter_ == 5 and len(ae.loss_curve_) == 5
    assert ae.best_loss_ == min(ae.loss_curve_)
    # early_stopping=True by default: 12 rows held out, scored every epoch.
    assert len(ae.validation_scores_) == 5
    assert ae.best_validation_score_ >= max(ae.validation_scores_)
    assert ae.device_ == torch.device("cpu")
    assert ae.batch_size_ == 108
    assert isinstance(ae.encoder_, torch.nn.Module) and isinstance(ae.decoder_, torch.nn.Module)
    assert_array_equal(ae.get_feature_names_out(),
                       [f"autoencodertransformer{i}" for i in range(3)])


def test_training_reduces_reconstruction_error(digits):
    X, _ = digits
    ae = AutoencoderTransformer(n_components=8, hidden_layer_sizes=(32,), max_iter=30,
                                init="random", random_state=0).fit(X)
    assert ae.loss_curve_[-1] < 0.5 * ae.loss_curve_[0]
    # Early stopping scores minus the mean squared reconstruction error
    # (score itself is a log-likelihood: tests/test_latent_size.py).
    reconstruction = ae.inverse_transform(ae.transform(X))
    assert_allclose(ae._predict(ae._score_samples_tensor, X),
                    -np.mean((reconstruction - X) ** 2, axis=1), rtol=1e-4)


def test_pipeline_into_tsne(digits):
    X, y = digits
    pipe = Pipeline([
        ("ae", AutoencoderTransformer(n_components=8, hidden_layer_sizes=(32,), max_iter=10,
                                      random_state=0)),
        ("tsne", TSNE(n_components=2, perplexity=10, max_iter=250, random_state=0)),
    ])
    embedding = pipe.fit_transform(X[:200])
    assert embedding.shape == (200, 2)
    assert np.isfinite(embedding).all()
    # The map of the codes keeps the digits apart and the pixels' neighbours
    # near (measured: 5-NN accuracy 0.89-0.91 over seeds, chance 0.1;
    # trustworthiness 0.91-0.94).
    accuracy = cross_val_score(KNeighborsClassifier(5), embedding, y[:200], cv=5).mean()
    assert accuracy > 0.7
    assert trustworthiness(X[:200], embedding, n_neighbors=5) > 0.85


def test_grid_search_with_default_scoring_prefers_the_better_fit(blobs):
    # The default score is the held-out log-likelihood: a network trained at a
    # useful learning rate beats one left near its random start.
    pipe = Pipeline([("ae", AutoencoderTransformer(n_components=3, hidden_layer_sizes=(),
                                                   activation="identity", max_iter=100,
                                                   init="random", random_state=0))])
    search = GridSearchCV(pipe, {"ae__learning_rate_init": [1e-6, 1e-2]}, cv=3).fit(blobs)
    assert search.best_params_ == {"ae__learning_rate_init": 1e-2}
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > scores[0]


def test_pandas_in_and_out(blobs):
    frame = pd.DataFrame(blobs, columns=[f"col{i}" for i in range(10)],
                         index=np.arange(100, 220))
    ae = AutoencoderTransformer(n_components=2, **FAST).set_output(transform="pandas")
    codes = ae.fit_transform(frame)
    assert isinstance(codes, pd.DataFrame)
    assert list(codes.columns) == ["autoencodertransformer0", "autoencodertransformer1"]
    assert_array_equal(codes.index, frame.index)
    assert_array_equal(ae.feature_names_in_, frame.columns)
    with pytest.warns(UserWarning, match="feature names"):
        plain = ae.set_output(transform="default").transform(blobs)
    assert_array_equal(codes.to_numpy(), plain)


def test_output_dtype_follows_input(blobs):
    ae = AutoencoderTransformer(**FAST).fit(blobs)
    assert ae.transform(blobs).dtype == np.float64
    assert ae.transform(blobs.astype(np.float32)).dtype == np.float32
    assert_allclose(ae.transform(blobs.astype(np.float32)), ae.transform(blobs), rtol=1e-5,
                    atol=1e-6)


def test_score_samples_ranks_outliers_lowest(blobs):
    ae = AutoencoderTransformer(n_components=3, hidden_layer_sizes=(), activation="identity",
                                learning_rate_init=0.01, max_iter=200, random_state=0)
    ae.fit(blobs)
    outliers = np.random.RandomState(1).normal(scale=3.0, size=(5, 10))
    scores = ae.score_samples(np.vstack([blobs, outliers]))
    assert set(np.argsort(scores)[:5]) == set(range(120, 125))


# --------------------------------------------------------------------------- #
# Bad input and bad parameters: clear errors, raised before any training.

@pytest.mark.parametrize("X, error, match", [
    (np.array([[1.0, np.nan], [2.0, 3.0]]), ValueError, "NaN"),
    (np.array([[1.0, np.inf], [2.0, 3.0]]), ValueError, "infinity"),
    (np.arange(5.0), ValueError, "Expected 2D array, got 1D array"),
    (np.empty((0, 3)), ValueError, "0 sample"),
    (np.array([["a", "b"], ["c", "d"]]), ValueError, "could not convert|dtype"),
])
def test_bad_training_data(X, error, match):
    with pytest.raises(error, match=match):
        AutoencoderTransformer(**FAST).fit(X)


def test_wrong_number_of_features(blobs):
    ae = AutoencoderTransformer(**FAST).fit(blobs)
    for method in (ae.transform, ae.score_samples, ae.score, ae.partial_fit):
        with pytest.raises(ValueError, match="X has 4 features, but AutoencoderTransformer "
                                             "is expecting 10 features"):
            method(blobs[:, :4])
    with pytest.raises(ValueError, match=re.escape("Z has 5 columns, but AutoencoderTransformer "
                                                   "has n_components=2")):
        ae.inverse_transform(np.zeros((3, 5)))


@pytest.mark.parametrize("params, error, match", [
    (dict(n_components=0), InvalidParameterError, "n_components"),
    (dict(hidden_layer_sizes=(8, 0)), ValueError, "hidden_layer_sizes must be a sequence of "
                                                  "positive integers"),
    (dict(hidden_layer_sizes=(8, 2.5)), ValueError, "hidden_layer_sizes"),
    (dict(activation="softmaxx"), InvalidParameterError, "activation"),
    (dict(batch_size=0), InvalidParameterError, "batch_size"),
    (dict(learning_rate_init=0.0), InvalidParameterError, "learning_rate_init"),
    (dict(validation_fraction=1.0), InvalidParameterError, "validation_fraction"),
    (dict(device="gpu"), ValueError, "device='gpu' is not a device name"),
    (dict(device=3.5), InvalidParameterError, "device"),
    (dict(n_threads=0), InvalidParameterError, "n_threads"),
])
def test_bad_parameters(blobs, params, error, match):
    with pytest.raises(error, match=match):
        AutoencoderTransformer(**{**FAST, **params}).fit(blobs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_device_is_a_clear_error(blobs):
    with pytest.raises(ValueError, match="CUDA is not available"):
        AutoencoderTransformer(device="cuda", **FAST).fit(blobs)
    with pytest.raises(ValueError, match="CUDA is not available"):
        AutoencoderTransformer(device=torch.device("cuda:1"), **FAST).fit(blobs)


def test_early_stopping_needs_training_rows():
    with pytest.raises(ValueError, match="leaving none to train on"):
        AutoencoderTransformer(early_stopping=True, **FAST).fit(np.ones((1, 3)))


def test_unfitted_methods_raise(blobs):
    ae = AutoencoderTransformer()
    for method in (ae.transform, ae.inverse_transform, ae.score_samples, ae.score):
        with pytest.raises(NotFittedError):
            method(blobs)


def test_rejected_calls_leave_fitted_model_as_it_was(blobs):
    ae = AutoencoderTransformer(**FAST).fit(pd.DataFrame(blobs).add_prefix("f"))
    before = fitted_params(ae)
    attributes = dict(vars(ae))
    bad_frame = pd.DataFrame(blobs[:, :4]).add_prefix("g")
    bad_frame.iloc[0, 0] = np.nan
    for call in (lambda: ae.fit(bad_frame),
                 lambda: ae.partial_fit(bad_frame),
                 lambda: ae.set_params(hidden_layer_sizes=(0,)).fit(blobs),
                 lambda: ae.set_params(hidden_layer_sizes=(16,), device="nope").fit(blobs)):
        with pytest.raises(ValueError):
            call()
    ae.set_params(device="auto")
    assert_same_params(before, fitted_params(ae))
    assert vars(ae).keys() == attributes.keys()
    assert_array_equal(ae.feature_names_in_, attributes["feature_names_in_"])
    assert ae.n_features_in_ == 10


def test_divergence_is_an_error_not_silent_nan(blobs):
    ae = AutoencoderTransformer(warm_start=True, **FAST).fit(blobs)
    before = fitted_params(ae)
    n_iter = ae.n_iter_
    huge = np.full_like(blobs, 1e30)
    with pytest.raises(ValueError, match="not finite"):
        ae.fit(huge)
    # The failed call left the previous model in place.
    assert_same_params(before, fitted_params(ae))
    assert ae.n_iter_ == n_iter
    assert np.isfinite(ae.transform(blobs)).all()
    with pytest.raises(ValueError, match="not finite"):
        AutoencoderTransformer(**FAST).fit(huge)


def test_warm_start_can_switch_on_early_stopping(blobs):
    ae = AutoencoderTransformer(warm_start=True, early_stopping=False, **FAST).fit(blobs)
    assert ae.validation_scores_ is None
    ae.set_params(early_stopping=True, max_iter=3).fit(blobs)
    assert len(ae.validation_scores_) == 3
    # The network as the warm start found it is a candidate too.
    assert ae.best_validation_score_ >= max(ae.validation_scores_)


def test_warm_start_refuses_a_changed_network(blobs):
    ae = AutoencoderTransformer(warm_start=True, **FAST).fit(blobs)
    with pytest.raises(ValueError, match="set warm_start=False"):
        ae.set_params(n_components=4).fit(blobs)


# --------------------------------------------------------------------------- #
# Training behaviour.

def test_convergence_warning_only_when_max_iter_is_reached(blobs):
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        AutoencoderTransformer(hidden_layer_sizes=(16,), max_iter=3, random_state=0).fit(blobs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ae = AutoencoderTransformer(hidden_layer_sizes=(16,), max_iter=500, tol=10.0,
                                    n_iter_no_change=2, early_stopping=False,
                                    random_state=0).fit(blobs)
    # tol=10 counts no epoch but the first (which beats nothing) as progress:
    # 1 + 3 epochs, the learning rate divided by 10, 3 more, stop.
    assert ae.n_iter_ == 7


@pytest.mark.slow
def test_early_stopping_keeps_best_weights(digits):
    X, _ = digits
    ae = AutoencoderTransformer(n_components=4, hidden_layer_sizes=(32,), max_iter=300,
                                learning_rate_init=0.05, early_stopping=True, init="random",
                                n_iter_no_change=3, random_state=0).fit(X[:400])
    assert len(ae.validation_scores_) == ae.n_iter_ == len(ae.loss_curve_)
    assert ae.best_validation_score_ == max(ae.validation_scores_)
    assert ae.n_iter_ < 300
    # The best epoch's weights are kept (tests/test_engine.py checks them
    # bitwise): rescoring the full data with them is close to the best
    # held-out score.
    assert ae.validation_scores_[-1] <= ae.best_validation_score_
    rescored = reconstruction_score(ae, X[:400])
    assert abs(rescored - ae.best_validation_score_) < 0.5 * abs(ae.best_validation_score_)


def test_warm_start_continues_training(blobs):
    ae = AutoencoderTransformer(warm_start=True, early_stopping=False, init="random",
                                **FAST).fit(blobs)
    first_curve = list(ae.loss_curve_)
    ae.fit(blobs)
    assert ae.n_iter_ == 10
    assert ae.loss_curve_[:5] == first_curve
    assert ae.loss_curve_[5] < first_curve[0]


def test_partial_fit_keeps_optimizer_state(blobs):
    """Two partial_fit calls are exactly two epochs of fit, Adam moments included."""
    params = dict(hidden_layer_sizes=(16,), shuffle=False, random_state=0, batch_size=32,
                  early_stopping=False)
    by_fit = AutoencoderTransformer(max_iter=2, **params).fit(blobs)
    streamed = AutoencoderTransformer(**params)
    streamed.partial_fit(blobs)
    streamed = pickle.loads(pickle.dumps(streamed))  # state survives pickling too
    streamed.partial_fit(blobs)
    assert streamed.n_iter_ == 2
    assert streamed.loss_curve_ == by_fit.loss_curve_
    assert_same_params(fitted_params(by_fit), fitted_params(streamed))


@pytest.mark.slow
def test_partial_fit_over_blocks_learns(digits):
    X, _ = digits
    ae = AutoencoderTransformer(n_components=8, hidden_layer_sizes=(32,), random_state=0)
    for _epoch in range(5):
        for block in np.array_split(X, 6):
            ae.partial_fit(block)
    assert ae.n_iter_ == 30
    # Five passes over six blocks train at least as well as five epochs of fit.
    by_fit = AutoencoderTransformer(n_components=8, hidden_layer_sizes=(32,), max_iter=5,
                                    random_state=0).fit(X)
    assert reconstruction_score(ae, X) > 1.1 * reconstruction_score(by_fit, X)


def test_verbose_prints_a_table_of_epochs_and_why_training_stopped(blobs, capsys):
    AutoencoderTransformer(verbose=True, early_stopping=True, **FAST).fit(blobs)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "AutoencoderTransformer (fit): 108 samples, batch size 108, up to 5 epochs"
    assert lines[1].split() == ["epoch", "train", "loss", "valid", "score", "lr", "time"]
    rows = lines[3:-1]
    assert len(rows) == 5
    assert re.match(r"\s+1\s+[\d.e+-]+\s+-[\d.e+-]+\s+0.003\s+[\d.]+s", rows[0])
    assert re.match(r"AutoencoderTransformer \(fit\): max_iter=5 reached after 5 epochs; kept "
                    r"the weights of (epoch \d|the starting network) \(best validation score "
                    r"-[\d.]+\)", lines[-1])


# --------------------------------------------------------------------------- #
# Reproducibility and determinism.

def test_same_random_state_gives_identical_codes(blobs):
    a = AutoencoderTransformer(**FAST).fit_transform(blobs)
    b = AutoencoderTransformer(**FAST).fit_transform(blobs)
    # From a random start, another seed gives another model (from the PCA
    # start, two seeds may both keep PCA).
    c = AutoencoderTransformer(**{**FAST, "random_state": 1}, init="random").fit_transform(blobs)
    assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fit_leaves_global_random_state_untouched(blobs, global_rng):
    for random_state in (None, 0, np.random.RandomState(3)):
        ae = AutoencoderTransformer(early_stopping=True, hidden_layer_sizes=(8,), max_iter=3,
                                    random_state=random_state)
        ae.fit(blobs).transform(blobs)
        ae.partial_fit(blobs)
    global_rng.assert_unchanged()


def test_fits_in_threads_side_by_side_are_reproducible(blobs):
    reference = AutoencoderTransformer(**FAST).fit_transform(blobs)
    with joblib.parallel_backend("threading", n_jobs=4):
        results = joblib.Parallel()(
            joblib.delayed(lambda: AutoencoderTransformer(**FAST).fit_transform(blobs))()
            for _ in range(8)
        )
    for codes in results:
        assert_array_equal(codes, reference)


def test_thread_count_is_restored(blobs):
    before = torch.get_num_threads()
    seen = []
    ae = AutoencoderTransformer(n_threads=1, **FAST)
    ae._training_loss = lambda *args, _f=ae._training_loss: (
        seen.append(torch.get_num_threads()) or _f(*args))
    ae.fit(blobs)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_transform_does_not_depend_on_chunk_size(blobs):
    """Float64 input is computed in float64: rows agree to 1e-12 whatever the
    chunking, on any CPU (scikit-learn's own check asks for 1e-7). 10,000
    rows take several of the estimator's chunks (64 Ki floats each, rows at
    least 10 wide); calls on pieces of 7 and of 997 rows chunk them otherwise."""
    ae = AutoencoderTransformer(**FAST).fit(blobs)
    X = np.tile(blobs, (84, 1))[:10_000] + np.random.RandomState(1).normal(size=(10_000, 10))
    reference = ae.transform(X), ae.score_samples(X)
    bounds = [*range(7, 1_001, 7), *range(1_001, 10_000, 997)]
    assert_allclose(np.concatenate([ae.transform(piece) for piece in np.split(X, bounds)]),
                    reference[0], rtol=1e-12, atol=1e-12)
    assert_allclose(np.concatenate([ae.score_samples(piece) for piece in np.split(X, bounds)]),
                    reference[1], rtol=1e-12, atol=1e-12)
    for row in range(0, 10_000, 1_717):
        assert_allclose(ae.transform(X[row:row + 1]), reference[0][row:row + 1],
                        rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_rows_do_not_depend_on_order_or_memory_offset(dtype, rtol):
    """Narrow layers with odd widths are where CPU BLAS is most sensitive to a
    row's position and to the input's alignment; results may move only by
    rounding, and a repeated call repeats itself exactly."""
    X = np.random.RandomState(0).normal(size=(61, 9)).astype(dtype)
    ae = AutoencoderTransformer(2, **{**FAST, "hidden_layer_sizes": (7,)})
    ae.fit(X)
    reference = ae.transform(X)
    assert reference.dtype == dtype
    assert_array_equal(ae.transform(X), reference)
    assert_allclose(ae.transform(X[::-1])[::-1], reference, rtol=rtol, atol=rtol)
    for offset in (1, 2, 3):  # slices start at addresses that are not 16-byte aligned
        assert_allclose(ae.transform(X[offset:]), reference[offset:], rtol=rtol, atol=rtol)
    rolled = np.roll(X, 5, axis=0)
    assert_allclose(np.roll(ae.score_samples(rolled), -5), ae.score_samples(X),
                    rtol=rtol, atol=rtol)


@settings(max_examples=15, deadline=None)
@given(n_rows=st.integers(1, 40), n_features=st.integers(1, 6), n_components=st.integers(1, 4))
def test_shapes_and_determinism_property(n_rows, n_features, n_components):
    X = np.random.RandomState(n_rows).normal(size=(n_rows, n_features))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*input features")  # overcomplete on purpose
        ae = AutoencoderTransformer(n_components, hidden_layer_sizes=(4,), max_iter=2,
                                    early_stopping=False, random_state=0).fit(X)
    codes = ae.transform(X)
    assert codes.shape == (n_rows, n_components)
    assert ae.inverse_transform(codes).shape == (n_rows, n_features)
    assert ae.score_samples(X).shape == (n_rows,)
    assert_array_equal(codes, ae.transform(X))
    assert np.isfinite(codes).all()


# --------------------------------------------------------------------------- #
# A linear autoencoder finds the PCA subspace.

@pytest.mark.slow
@settings(max_examples=8, deadline=None)
@example(seed=142, n_features=3, n_components=2)  # needed the full-batch epochs
@example(seed=425, n_features=3, n_components=3)  # failed with the default PCA start
@given(seed=st.integers(0, 2**16), n_features=st.integers(3, 10), n_components=st.integers(1, 3))
def test_linear_autoencoder_recovers_pca_subspace(seed, n_features, n_components):
    rng = np.random.RandomState(seed)
    n_components = min(n_components, n_features - 1)
    rotation, _ = np.linalg.qr(rng.normal(size=(n_features, n_features)))
    # A clear eigengap: leading spreads 3-5, trailing ones 0.5-1 (variance ratio >= 9).
    spreads = np.r_[rng.uniform(3, 5, n_components),
                    rng.uniform(0.5, 1.0, n_features - n_components)]
    X = (rng.normal(size=(400, n_features)) * spreads) @ rotation.T + rng.normal(size=n_features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # From a random start on every row: training itself must find the
        # subspace (the default would start at PCA, on 90% of the rows).
        ae = AutoencoderTransformer(n_components, hidden_layer_sizes=(), activation="identity",
                                    alpha=0.0, learning_rate_init=0.01, batch_size=64,
                                    max_iter=600, tol=1e-7, n_iter_no_change=20,
                                    init="random", early_stopping=False,
                                    random_state=0).fit(X)
        # Adam's steps at lr=0.01 on minibatches jitter around the optimum (up
        # to 2% above PCA's error was seen); a few full-batch epochs at a
        # tenth of the rate settle them (worst seen: 0.03% above).
        ae.set_params(warm_start=True, learning_rate_init=0.001, batch_size=400,
                      max_iter=300).fit(X)
    pca = PCA(n_components).fit(X)
    decoder_columns = ae.decoder_[0].weight.detach().numpy()
    largest_angle = np.degrees(subspace_angles(decoder_columns, pca.components_.T)).max()
    assert largest_angle < 3.0
    pca_error = np.mean((pca.inverse_transform(pca.transform(X)) - X) ** 2)
    assert -reconstruction_score(ae, X) <= 1.01 * pca_error


def test_linear_autoencoder_at_defaults_finds_pca_of_every_row():
    # Issue 16: with early stopping on by default it trained on 90% of the
    # rows and ended 0.08-0.09 (sine) away from the PCA of them all.
    X = StandardScaler().fit_transform(load_breast_cancer().data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ae = AutoencoderTransformer(3, hidden_layer_sizes=(), activation="identity",
                                    random_state=0).fit(X)
    assert ae.early_stopping == "auto" and ae.early_stopping_ is False
    assert ae.validation_scores_ is None
    decoder_columns = ae.decoder_[0].weight.detach().numpy()
    pca = PCA(3).fit(X)
    assert np.sin(subspace_angles(decoder_columns, pca.components_.T)).max() < 0.01


@pytest.mark.parametrize("early_stopping, activation, expected", [
    ("auto", "relu", True), ("auto", "tanh", True), ("auto", "identity", False),
    (True, "identity", True), (False, "relu", False)])
def test_early_stopping_auto_is_resolved_never_written_back(blobs, early_stopping, activation,
                                                            expected):
    ae = AutoencoderTransformer(3, activation=activation, early_stopping=early_stopping,
                                **FAST).fit(blobs)
    assert ae.early_stopping == early_stopping
    assert ae.early_stopping_ is expected
    assert (ae.validation_scores_ is not None) is expected
    ae.partial_fit(blobs)
    assert ae.early_stopping_ is False and ae.early_stopping == early_stopping


# --------------------------------------------------------------------------- #
# Persistence and devices.

def test_pickle_and_joblib_round_trip(blobs, tmp_path):
    ae = AutoencoderTransformer(**FAST).fit(blobs)
    codes = ae.transform(blobs)
    restored = pickle.loads(pickle.dumps(ae))
    assert_array_equal(restored.transform(blobs), codes)
    joblib.dump(ae, tmp_path / "ae.joblib")
    assert_array_equal(joblib.load(tmp_path / "ae.joblib").transform(blobs), codes)
    # The pickle holds NumPy arrays, not torch objects: it loads without
    # looking up any class of torch's.
    modules = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            modules.add(module.split(".")[0])
            return super().find_class(module, name)

    assert_array_equal(Recording(io.BytesIO(pickle.dumps(ae))).load().transform(blobs), codes)
    assert "numpy" in modules and "torch" not in modules
    # The live estimator is untouched: still torch, still the same.
    assert isinstance(ae.module_, torch.nn.Module)
    assert_array_equal(ae.transform(blobs), codes)
    # A clone is unfitted and a refit gives the same model.
    assert_array_equal(clone(ae).fit(blobs).transform(blobs), codes)


def test_model_from_a_missing_device_loads_on_cpu_with_warning(blobs):
    ae = AutoencoderTransformer(**FAST).fit(blobs)
    codes = ae.transform(blobs)
    # A payload as a machine with four GPUs writes it: the device it was
    # fitted on, the one string "cpu" in it (protocol 0 writes strings as
    # text lines), now names the fourth GPU.
    payload = pickle.dumps(ae, protocol=0)
    assert payload.count(b"Vcpu\n") == 1
    payload = payload.replace(b"Vcpu\n", b"Vcuda:3\n")
    with pytest.warns(UserWarning, match="fitted on cuda:3, which is not available"):
        restored = pickle.loads(payload)
    assert restored.device_ == torch.device("cpu")
    assert_array_equal(restored.transform(blobs), codes)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "auto"])
def test_device_forms(blobs, device):
    ae = AutoencoderTransformer(device=device, **FAST).fit(blobs)
    assert ae.device == device  # stored untouched
    assert isinstance(ae.device_, torch.device)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_matches_cpu_and_unpickles(blobs):
    cpu = AutoencoderTransformer(device="cpu", **FAST).fit(blobs)
    gpu = AutoencoderTransformer(device="cuda", **FAST).fit(blobs)
    assert gpu.device_.type == "cuda"
    assert_allclose(gpu.transform(blobs), cpu.transform(blobs), rtol=1e-3, atol=1e-4)
    restored = pickle.loads(pickle.dumps(gpu))
    assert_allclose(restored.transform(blobs), gpu.transform(blobs), rtol=1e-6)
