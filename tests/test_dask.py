"""Dask: parallel search on a process cluster, Incremental training, lazy inference."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
dask_ml_wrappers = pytest.importorskip("dask_ml.wrappers")

import joblib  # noqa: E402
import torch  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

import skae.dask  # noqa: E402
from skae import (  # noqa: E402
    AutoencoderClassifier,
    AutoencoderTransformer,
    ConvolutionalAutoencoder,
    DenoisingAutoencoder,
    VariationalAutoencoder,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FAST = dict(max_iter=3, random_state=0, device="cpu", batch_size=32)


def _one_thread(record):
    """A callback that fails the fit unless torch computes on one thread."""
    assert torch.get_num_threads() == 1, torch.get_num_threads()


def _estimators():
    return [
        AutoencoderTransformer(n_components=3, **FAST),
        DenoisingAutoencoder(n_components=3, **FAST),
        VariationalAutoencoder(n_components=3, **FAST),
        ConvolutionalAutoencoder(n_components=3, channels=(2,), image_shape=(1, 4, 4), **FAST),
        AutoencoderClassifier(AutoencoderTransformer(n_components=3, **FAST), **FAST),
    ]


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = (rng.normal(size=(240, 3)) @ rng.normal(size=(3, 16))).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    return X, y


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=50)
    with cluster, distributed.Client(cluster) as client:
        yield client


@pytest.mark.parametrize("estimator", _estimators(), ids=lambda e: type(e).__name__)
def test_grid_search_on_the_dask_backend_matches_the_sequential_one(estimator, data, client):
    X, y = data
    grid = {"learning_rate_init": [0.001, 0.01]}
    fit_args = (X, y) if isinstance(estimator, AutoencoderClassifier) else (X,)
    estimator = clone(estimator).set_params(callbacks=[_one_thread])
    sequential = GridSearchCV(estimator, grid, cv=2, error_score="raise").fit(*fit_args)
    with joblib.parallel_config(backend="dask"):
        searched = GridSearchCV(estimator, grid, cv=2, n_jobs=-1,
                                error_score="raise").fit(*fit_args)
    assert_allclose(searched.cv_results_["mean_test_score"],
                    sequential.cv_results_["mean_test_score"], rtol=1e-5)
    assert searched.best_params_ == sequential.best_params_


@pytest.mark.parametrize("estimator", _estimators()[:4], ids=lambda e: type(e).__name__)
def test_incremental_trains_an_autoencoder_block_by_block(estimator, data):
    X, _ = data
    blocks = da.from_array(X, chunks=(60, 16))
    incremental = dask_ml_wrappers.Incremental(clone(estimator), shuffle_blocks=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dask-ml's own deprecation warnings
        incremental.fit(blocks)
    by_hand = clone(estimator)
    for start in range(0, 240, 60):
        by_hand.partial_fit(X[start:start + 60])
    assert incremental.estimator_.n_iter_ == 4
    assert_array_equal(incremental.estimator_.transform(X), by_hand.transform(X))


@pytest.mark.parametrize("method", ["transform", "inverse_transform", "score_samples"])
def test_lazy_inference_has_the_right_width_chunks_and_values(method, data, client):
    X, _ = data
    model = VariationalAutoencoder(n_components=3, **FAST).fit(X)
    inputs = model.transform(X) if method == "inverse_transform" else X
    blocks = da.from_array(inputs, chunks=(50, inputs.shape[1]))
    lazy = skae.dask.transform(model, blocks, method=method)
    expected = getattr(model, method)(inputs)
    assert lazy.shape == expected.shape and lazy.dtype == expected.dtype
    assert lazy.chunks[0] == blocks.chunks[0]
    if expected.ndim == 2:
        assert lazy.chunks[1] == (expected.shape[1],)  # not the input's width
    assert_allclose(lazy.compute(), expected, rtol=1e-6, atol=1e-7)


def test_lazy_inference_of_the_classifier_and_of_sparse_blocks(data, client):
    X, y = data
    classifier = AutoencoderClassifier(AutoencoderTransformer(n_components=3, **FAST),
                                       **FAST).fit(X, y)
    blocks = da.from_array(X, chunks=(100, 8))  # split across columns: joined first
    assert_array_equal(skae.dask.transform(classifier, blocks, "predict").compute(),
                       classifier.predict(X))
    proba = skae.dask.transform(classifier, blocks, "predict_proba")
    assert proba.chunks[1] == (2,)
    assert_allclose(proba.compute(), classifier.predict_proba(X), rtol=1e-6)
    sparse = sp.csr_matrix(np.where(X > 0.5, X, 0))
    sparse_blocks = da.from_array(sparse, chunks=(100, 16), asarray=False)
    model = AutoencoderTransformer(n_components=3, **FAST).fit(sparse)
    assert_allclose(skae.dask.transform(model, sparse_blocks).compute(), model.transform(sparse),
                    rtol=1e-6, atol=1e-7)


def test_lazy_inference_refuses_what_it_cannot_do(data):
    X, _ = data
    model = AutoencoderTransformer(n_components=3, **FAST).fit(X)
    with pytest.raises(ValueError, match="predict_proba"):
        skae.dask.transform(model, da.from_array(X), "predict_proba")
    with pytest.raises(ValueError, match="method must be one of"):
        skae.dask.transform(model, da.from_array(X), "fit")
    with pytest.raises(ValueError, match=r"reads 3 \(the code width"):
        skae.dask.transform(model, da.from_array(X), "inverse_transform")
    with pytest.raises(TypeError, match="dask.array.Array"):
        skae.dask.transform(model, X)
