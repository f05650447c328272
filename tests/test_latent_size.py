"""The score a search over n_components maximises: a likelihood that peaks at the rank."""

import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from skae import AutoencoderTransformer, DenoisingAutoencoder
from skae._likelihood import pool


def low_rank(rank, level=0.1, n_rows=240, n_features=20, seed=0):
    """Rows of rank ``rank`` (each feature's signal of variance 1) plus isotropic
    noise of ``level`` times the signal's deviation."""
    rng = np.random.RandomState(seed)
    signal = rng.normal(size=(n_rows, rank)) @ rng.normal(size=(rank, n_features))
    return signal / np.sqrt(rank) + level * rng.normal(size=(n_rows, n_features))


def linear(**params):
    return AutoencoderTransformer(activation="identity", hidden_layer_sizes=(),
                                  random_state=0, **params)


def test_linear_autoencoder_on_pcas_subspace_scores_as_pca():
    """With PCA's subspace, whatever basis the code uses (a non-orthogonal
    mixing here), the score is probabilistic PCA's log-likelihood."""
    X = low_rank(3, n_rows=200)
    X_train, X_test = X[:150], X[150:]
    k = 4
    pca = PCA(k).fit(X_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # float32 rows: no float64 copy of the network is cached before the
        # weights are replaced.
        ae = linear(n_components=k, max_iter=1).fit(X_train.astype(np.float32))
    mixing = np.random.RandomState(1).normal(size=(k, k)) + 2 * np.eye(k)
    encoder = mixing @ pca.components_  # z = A U^T (x - mean)
    decoder = pca.components_.T @ np.linalg.inv(mixing)
    with torch.no_grad():
        ae.encoder_[0].weight.copy_(torch.as_tensor(encoder))
        ae.encoder_[0].bias.copy_(torch.as_tensor(-encoder @ pca.mean_))
        ae.decoder_[0].weight.copy_(torch.as_tensor(decoder))
        ae.decoder_[0].bias.copy_(torch.as_tensor(pca.mean_))
    ae._fit_density(X_train, incremental=False)  # the statistics of these weights
    # To the rounding of float32 weights.
    assert_allclose(ae.score_samples(X_test), pca.score_samples(X_test), rtol=1e-5, atol=2e-4)
    assert ae.score(X_test) == pytest.approx(pca.score(X_test), rel=1e-5)
    assert ae.score(X_train) == pytest.approx(pca.score(X_train), rel=1e-5)


@pytest.mark.parametrize("estimator", [
    linear(), AutoencoderTransformer(random_state=0)], ids=["linear", "default"])
def test_plain_grid_search_picks_the_rank(estimator):
    """The old score (minus the reconstruction error) kept the largest code."""
    X = low_rank(3)
    grid = {"n_components": [1, 2, 3, 4, 5, 6]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(estimator, grid, cv=3).fit(X)
    assert GridSearchCV(PCA(), grid, cv=3).fit(X).best_params_ == {"n_components": 3}
    assert search.best_params_ == {"n_components": 3}
    scores = search.cv_results_["mean_test_score"]
    assert scores[2] > scores[1] + 10  # a missing direction costs many nats a row
    assert scores[2] > scores[5]  # an extra one costs a little


def test_score_is_the_mean_of_score_samples_and_rows_are_independent():
    X = low_rank(2, n_rows=120)
    ae = DenoisingAutoencoder(n_components=3, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae.fit(X)
    scores = ae.score_samples(X)
    assert scores.shape == (120,) and np.isfinite(scores).all()
    assert ae.score(X) == pytest.approx(scores.mean(), rel=1e-12)
    assert_allclose(ae.score_samples(X[7:9]), scores[7:9], rtol=1e-6)
    # A log-density: rows far from the data score far lower.
    assert ae.score_samples(X + 5).max() < scores.min()


def test_log_loss_keeps_minus_the_reconstruction_loss():
    pixels = np.random.RandomState(0).uniform(size=(80, 10))
    ae = AutoencoderTransformer(n_components=2, loss="log_loss", max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae.fit(pixels)
    p = np.clip(ae.inverse_transform(ae.transform(pixels)), 1e-12, 1 - 1e-12)
    cross_entropy = -(pixels * np.log(p) + (1 - pixels) * np.log(1 - p)).mean(axis=1)
    assert_allclose(ae.score_samples(pixels), -cross_entropy, rtol=1e-4)


def test_pooled_statistics_equal_those_of_all_rows():
    """partial_fit pools its blocks' statistics as one pass over them would."""
    rows = np.random.RandomState(0).normal(size=(50, 5))
    whole = pool(rows, 12)
    pooled = pool(rows[20:], 12, pool(rows[:20], 12))
    for key in whole:
        assert_allclose(pooled[key], whole[key], rtol=1e-12, err_msg=key)


def test_partial_fit_scores_with_the_pooled_statistics():
    X = low_rank(2, n_rows=200)
    ae = AutoencoderTransformer(n_components=2, random_state=0)
    ae.partial_fit(X[:100])
    first = ae._training.settings["density"]["n_samples"]
    ae.partial_fit(X[100:])
    assert (first, ae._training.settings["density"]["n_samples"]) == (100, 200)
    assert np.isfinite(ae.score(X))
