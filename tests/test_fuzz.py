"""Bad input, fuzzed: every public method either returns a finite, correctly
shaped result or raises a ValueError/TypeError (a MemoryError for sizes no
machine holds) a user can act on, never a torch error or torch's wording."""

import os
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from sklearn.base import clone

from skae import (
    AutoencoderClassifier,
    AutoencoderTransformer,
    ConvolutionalAutoencoder,
    DenoisingAutoencoder,
    VariationalAutoencoder,
)

N_FEATURES = 6
TORCH_WORDING = ("torch", "tensor", "aten", "mat1", "mat2", "cuda", "expected all tensors",
                 "size mismatch", "unbatched", "shape '[", "storage", "dtype torch")


def _models():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, N_FEATURES))
    y = (X[:, 0] > 0).astype(int)
    y[::3] = -1
    fast = dict(max_iter=2, random_state=0, device="cpu")
    models = {
        "ae": AutoencoderTransformer(2, hidden_layer_sizes=(4,), **fast),
        "dae": DenoisingAutoencoder(2, hidden_layer_sizes=(4,), **fast),
        "vae": VariationalAutoencoder(2, hidden_layer_sizes=(4,), **fast),
        "conv": ConvolutionalAutoencoder(2, channels=(2,), **fast),
        "clf": AutoencoderClassifier(AutoencoderTransformer(2, hidden_layer_sizes=(4,), **fast),
                                     **fast),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, model in models.items():
            model.fit(X, y) if name == "clf" else model.fit(X)
    return models


MODELS = _models()

DTYPES = ["bool", "int8", "int64", "float16", "float32", "float64", "complex128",
          "object", "str"]
SPECIALS = [None, np.nan, np.inf, -np.inf, 1e300, -1e300]


@st.composite
def inputs(draw, n_features=None):
    """Arrays, DataFrames and lists of many shapes, dtypes and special values."""
    n_rows = draw(st.sampled_from([0, 1, 2, 7, 33]))
    n_cols = draw(st.sampled_from([0, 1, N_FEATURES, N_FEATURES + 1])) \
        if n_features is None else draw(st.sampled_from([n_features, n_features, 1, 0]))
    dtype = draw(st.sampled_from(DTYPES))
    special = draw(st.sampled_from(SPECIALS))
    container = draw(st.sampled_from(["ndarray", "frame", "list", "3d"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.RandomState(seed)
    values = rng.normal(scale=draw(st.sampled_from([1.0, 1e-3, 1e3])), size=(n_rows, n_cols))
    if special is not None and values.size:
        values[rng.randint(n_rows), rng.randint(n_cols)] = special
    if dtype == "str":
        X = values.astype(str)
    elif dtype == "object":
        X = values.astype(object)
    elif dtype == "bool":
        X = values > 0
    elif dtype.startswith("int"):
        with np.errstate(invalid="ignore", over="ignore"):
            X = np.nan_to_num(values, posinf=100, neginf=-100).astype(dtype)
    else:
        with np.errstate(over="ignore"):
            X = values.astype(dtype)
    if container == "frame":
        frame = pd.DataFrame(X, columns=[f"c{i}" for i in range(n_cols)])
        if n_cols and draw(st.booleans()):
            frame[frame.columns[-1]] = ["x"] * n_rows  # a mixed table with a text column
        return frame
    if container == "list":
        return X.tolist()
    if container == "3d":
        return X.reshape(n_rows, 1, n_cols) if n_cols else X[:, :, None]
    return X


def _count(outcome):
    """Tally outcomes in hypothesis's statistics (--hypothesis-show-statistics)."""
    try:
        event(outcome)
    except InvalidArgument:  # called outside a hypothesis test
        pass


def _check_outcome(call, expected_shape):
    """Run ``call``: a finite result of ``expected_shape``, or an actionable error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                result = call()
    except (ValueError, TypeError, MemoryError) as error:
        message = str(error).lower()
        assert message, "an error without a message"
        assert not any(word in message for word in TORCH_WORDING), message
        _count(f"refused: {type(error).__name__}")
        return "refused"
    if expected_shape is not None:
        result = np.asarray(result)
        assert result.shape == expected_shape
        assert np.isfinite(result).all()
    _count("accepted")
    return "accepted"


def _rows(X):
    return len(X)


# SKAE_FUZZ_EXAMPLES=5000 for a long hunt; the default keeps the suite quick.
EXAMPLES = int(os.environ.get("SKAE_FUZZ_EXAMPLES", 60))
COMMON = settings(max_examples=EXAMPLES, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@COMMON
@given(X=inputs(), name=st.sampled_from(sorted(MODELS)))
def test_fit_and_partial_fit(X, name):
    model = clone(MODELS[name])
    if name == "clf":
        y = np.arange(_rows(X)) % 2
        _check_outcome(lambda: model.fit(X, y), None)
    else:
        _check_outcome(lambda: model.fit(X), None)
        _check_outcome(lambda: clone(MODELS[name]).partial_fit(X), None)


@COMMON
@given(X=inputs(N_FEATURES), name=st.sampled_from(["ae", "dae", "vae", "conv"]))
def test_transform_and_score_samples(X, name):
    model = MODELS[name]
    n = _rows(X)
    _check_outcome(lambda: model.transform(X), (n, 2))
    _check_outcome(lambda: model.score_samples(X), (n,))


@COMMON
@given(Z=inputs(2), name=st.sampled_from(["ae", "dae", "vae", "conv"]))
def test_inverse_transform(Z, name):
    _check_outcome(lambda: MODELS[name].inverse_transform(Z), (_rows(Z), N_FEATURES))


@COMMON
@given(X=inputs(N_FEATURES))
def test_predict(X):
    model = MODELS["clf"]
    n = _rows(X)
    _check_outcome(lambda: model.predict(X), (n,))
    _check_outcome(lambda: model.predict_proba(X), (n, 2))


@settings(max_examples=EXAMPLES, deadline=None)
@given(n_samples=st.one_of(st.integers(-3, 50), st.floats(allow_nan=True), st.text(max_size=3),
                           st.none(), st.booleans(), st.integers(10**14, 10**18)),
       random_state=st.one_of(st.none(), st.integers(0, 2**31), st.text(max_size=2)))
def test_sample(n_samples, random_state):
    expected = (n_samples, N_FEATURES) if isinstance(n_samples, int) and not isinstance(
        n_samples, bool) and n_samples > 0 else None
    outcome = _check_outcome(
        lambda: MODELS["vae"].sample(n_samples, random_state=random_state), expected)
    assert outcome == "refused" or expected is not None


@st.composite
def csr_arrays(draw, n_features):
    """CSR matrices whose arrays were set by hand: column indices in and out of
    range, unsorted and repeated, indptr that may decrease or overrun."""
    n_rows = draw(st.integers(1, 6))
    nnz = draw(st.integers(0, 12))
    indices = draw(st.lists(st.integers(-2, n_features + 2), min_size=nnz, max_size=nnz))
    cuts = sorted(draw(st.lists(st.integers(0, nnz), min_size=n_rows - 1,
                                max_size=n_rows - 1)))
    indptr = np.array([0, *cuts, nnz], dtype=np.int32)
    if draw(st.booleans()):
        indptr[1:-1] = draw(st.permutations(indptr[1:-1].tolist()))
    indptr[-1] += draw(st.sampled_from([0, 0, -1, 2]))
    X = sp.csr_matrix((n_rows, n_features))
    # Set after construction, as code that edits a matrix in place does.
    X.data = np.random.RandomState(nnz).normal(size=nnz)
    X.indices = np.array(indices, dtype=np.int32)
    X.indptr = indptr
    return X


@COMMON
@given(X=csr_arrays(N_FEATURES), name=st.sampled_from(sorted(MODELS)))
def test_sparse_structure(X, name):
    """A malformed matrix is refused in every method, before any of its indices
    is used; the caller's arrays are never changed."""
    model = MODELS[name]
    arrays = [X.data.copy(), X.indices.copy(), X.indptr.copy()]
    n = X.shape[0]
    if name == "clf":
        y = np.arange(n) % 2
        _check_outcome(lambda: clone(model).fit(X, y), None)
        _check_outcome(lambda: model.predict_proba(X), (n, 2))
    else:
        _check_outcome(lambda: clone(model).fit(X), None)
        _check_outcome(lambda: model.transform(X), (n, 2))
        _check_outcome(lambda: model.score_samples(X), (n,))
    for before, after in zip(arrays, [X.data, X.indices, X.indptr]):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_plain_good_input_is_accepted(name):
    """The strategy's well-formed cases must pass, or the test above proves nothing."""
    X = np.random.RandomState(1).normal(size=(7, N_FEATURES))
    model = MODELS[name]
    call = (lambda: model.predict_proba(X)) if name == "clf" else (lambda: model.transform(X))
    assert _check_outcome(call, (7, 2)) == "accepted"
