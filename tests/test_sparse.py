"""Sparse input: never made dense whole, and the same model as its dense twin."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from numpy.testing import assert_allclose

from skae import (
    AutoencoderClassifier,
    AutoencoderTransformer,
    ConvolutionalAutoencoder,
    DenoisingAutoencoder,
    VariationalAutoencoder,
)
from skae._sources import SparseSource, TensorSource

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FAST = dict(max_iter=3, random_state=0, device="cpu", batch_size=16)
AUTOENCODERS = [
    AutoencoderTransformer(n_components=3, **FAST),
    DenoisingAutoencoder(n_components=3, **FAST),
    VariationalAutoencoder(n_components=3, **FAST),
    ConvolutionalAutoencoder(n_components=3, channels=(2,), image_shape=(1, 4, 5), **FAST),
]


@pytest.fixture(scope="module")
def counts():
    """A nonnegative sparse table (counts-like), 10% nonzeros, as float64 CSR."""
    rng = np.random.RandomState(0)
    X = sp.random(90, 20, density=0.1, format="csr", random_state=rng,
                  data_rvs=lambda n: rng.poisson(3, n) + 1.0)
    return X


def _formats(X):
    return {"csr_matrix": X, "csc_matrix": X.tocsc(), "coo_matrix": X.tocoo(),
            "csr_array": sp.csr_array(X), "coo_array": sp.coo_array(X)}


@pytest.mark.parametrize("estimator", AUTOENCODERS, ids=lambda e: type(e).__name__)
def test_sparse_input_trains_and_infers_as_its_dense_twin(estimator, counts):
    from sklearn.base import clone

    dense = clone(estimator).fit(counts.toarray())
    for name, X in _formats(counts).items():
        model = clone(estimator).fit(X)
        assert_allclose(model.loss_curve_, dense.loss_curve_, rtol=1e-5, err_msg=name)
        codes = model.transform(X)
        assert_allclose(codes, dense.transform(counts.toarray()), rtol=1e-5, atol=1e-6,
                        err_msg=name)
        assert_allclose(model.score_samples(X), dense.score_samples(counts.toarray()),
                        rtol=1e-5, atol=1e-6, err_msg=name)
        assert_allclose(model.inverse_transform(codes), dense.inverse_transform(codes),
                        rtol=1e-5, atol=1e-6, err_msg=name)
    # Codes may be given sparse too.
    assert_allclose(model.inverse_transform(sp.csr_matrix(codes)),
                    model.inverse_transform(codes), rtol=1e-6, atol=1e-7)


def test_float32_sparse_keeps_float32_and_partial_fit_and_early_stopping(counts):
    X = counts.astype(np.float32)
    params = dict(n_components=3, early_stopping=True, **FAST)
    sparse = AutoencoderTransformer(**params).fit(X)
    dense = AutoencoderTransformer(**params).fit(X.toarray())
    assert sparse.transform(X).dtype == np.float32
    assert_allclose(sparse.validation_scores_, dense.validation_scores_, rtol=1e-5)
    stream = AutoencoderTransformer(n_components=3, **FAST)
    twin = AutoencoderTransformer(n_components=3, **FAST)
    for start in range(0, 90, 30):
        stream.partial_fit(X[start:start + 30])
        twin.partial_fit(X[start:start + 30].toarray())
    assert_allclose(stream.transform(X), twin.transform(X.toarray()), rtol=1e-5, atol=1e-6)


def test_duplicate_entries_are_summed_as_scipy_does(counts):
    coo = counts.tocoo()
    # Every nonzero written twice, as halves: SciPy's dense form sums them.
    twice = sp.coo_matrix((np.r_[coo.data / 2, coo.data / 2], (np.r_[coo.row, coo.row],
                                                                  np.r_[coo.col, coo.col])),
                          shape=coo.shape)
    ae = AutoencoderTransformer(n_components=3, **FAST)
    assert_allclose(ae.fit(twice).transform(twice),
                    AutoencoderTransformer(n_components=3, **FAST).fit(counts).transform(counts),
                    rtol=1e-5, atol=1e-6)
    assert twice.nnz == 2 * counts.nnz  # the user's matrix was not modified


def test_the_classifier_accepts_sparse_input(counts):
    y = np.arange(90) % 3
    y[::4] = -1
    params = dict(autoencoder=AutoencoderTransformer(n_components=3, **FAST), max_iter=3,
                  random_state=0, device="cpu")
    for freeze in (True, False):
        sparse = AutoencoderClassifier(freeze_encoder=freeze, **params).fit(counts, y)
        dense = AutoencoderClassifier(freeze_encoder=freeze, **params).fit(counts.toarray(), y)
        assert_allclose(sparse.predict_proba(counts), dense.predict_proba(counts.toarray()),
                        rtol=1e-5, atol=1e-6)


def test_sparse_input_is_never_made_dense_whole(monkeypatch):
    X = sp.random(3000, 40, density=0.05, format="csr", random_state=0)
    shapes = []
    for cls in (sp.csr_matrix, sp.csr_array):
        real = cls.toarray

        def recording(self, *args, _real=real, **kwargs):
            shapes.append(self.shape)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "toarray", recording)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ae = AutoencoderTransformer(n_components=2, hidden_layer_sizes=(8,), **FAST).fit(X)
    for method in (ae.transform, ae.score_samples):
        shapes.clear()
        method(X)
        # Chunk by chunk through toarray, each row once.
        assert len(shapes) >= 2 and sum(rows for rows, _ in shapes) == X.shape[0]
        assert max(rows for rows, _ in shapes) < X.shape[0]


def test_sparse_source_gives_the_rows_and_order_of_a_tensor_source():
    dense = sp.random(50, 9, density=0.3, format="csr", random_state=1, dtype=np.float32)
    source = SparseSource.from_csr(dense.indptr, dense.indices, dense.data, 9, "cpu",
                                   y=torch.arange(50))
    twin = TensorSource(torch.from_numpy(dense.toarray()), torch.arange(50))
    for generator in (None, torch.Generator().manual_seed(0)):
        state = None if generator is None else generator.get_state()
        got = list(source.batches(8, generator))
        if generator is not None:
            generator.set_state(state)
        expected = list(twin.batches(8, generator))
        assert len(got) == len(expected) == 7
        for (X_got, y_got), (X_expected, y_expected) in zip(got, expected):
            assert torch.equal(X_got, X_expected) and torch.equal(y_got, y_expected)
    index = torch.tensor([4, 0, 49, 4])
    taken = source.take(index)
    assert torch.equal(taken.dense(torch.arange(4)), twin.X[index])
    assert torch.equal(taken.y, index)
