import copy
import math
import pickle

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from torch.distributions import Normal, kl_divergence

from skae import VariationalAutoencoder
from skae._variational import gaussian_kl, gaussian_negative_log_likelihood

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Standard deviations of the two latent directions of the low-rank data.
_SCALES = np.array([5.0, 3.0])


@pytest.fixture(scope="module")
def low_rank():
    """Rows of N(mean, B^T diag(_SCALES**2) B + 0.01 I) for an orthonormal 2 x 8 B."""
    rng = np.random.RandomState(0)
    basis = np.linalg.qr(rng.normal(size=(8, 2)))[0].T
    mean = rng.normal(size=8)
    X = rng.normal(size=(2000, 2)) @ (_SCALES[:, None] * basis) + mean
    X += 0.1 * rng.normal(size=X.shape)
    return X, basis


@pytest.fixture(scope="module")
def fitted_low_rank(low_rank):
    X, _ = low_rank
    # beta=1: the unit noise variance the checks below are derived for.
    return VariationalAutoencoder(
        n_components=2, beta=1.0, hidden_layer_sizes=(32,), learning_rate_init=0.01,
        random_state=0, device="cpu",
    ).fit(X)


@pytest.fixture
def X():
    return np.random.RandomState(0).normal(size=(60, 6))


def fast(**params):
    defaults = dict(n_components=2, hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                    device="cpu")
    return VariationalAutoencoder(**{**defaults, **params})


def test_kl_matches_torch_distributions():
    rng = np.random.RandomState(0)
    mean = torch.as_tensor(rng.normal(scale=2, size=(50, 4)))
    log_variance = torch.as_tensor(rng.normal(scale=1.5, size=(50, 4)))
    expected = kl_divergence(Normal(mean, torch.exp(0.5 * log_variance)),
                             Normal(torch.zeros(()), torch.ones(()))).sum(dim=1)
    assert_allclose(gaussian_kl(mean, log_variance).numpy(), expected.numpy(), rtol=1e-10)


def test_likelihood_matches_torch_distributions():
    rng = np.random.RandomState(0)
    reconstruction, X = (torch.as_tensor(rng.normal(size=(50, 7))) for _ in range(2))
    expected = -Normal(reconstruction, 1.0).log_prob(X).sum(dim=1)
    assert_allclose(gaussian_negative_log_likelihood(reconstruction, X).numpy(),
                    expected.numpy(), rtol=1e-10)


def test_samples_match_low_rank_gaussian(low_rank, fitted_low_rank):
    X, basis = low_rank
    samples = fitted_low_rank.sample(5000, random_state=0)
    assert samples.shape == (5000, 8)
    spread = X.std(axis=0)
    # Means within a tenth of each feature's standard deviation.
    assert np.all(np.abs(samples.mean(axis=0) - X.mean(axis=0)) < 0.1 * spread)
    # The decoded means leave out the likelihood's unit variance: along a
    # latent direction of variance s**2 the model keeps s**2 - beta (as in
    # probabilistic PCA with noise variance beta). Spread within 8% of that.
    kept = basis.T @ np.diag(_SCALES ** 2 - 1.0) @ basis
    assert_allclose(samples.std(axis=0), np.sqrt(np.diag(kept)), rtol=0.08)
    assert_allclose(samples.std(axis=0), spread, rtol=0.12)
    # Correlations within 0.1.
    assert_allclose(np.corrcoef(samples, rowvar=False), np.corrcoef(X, rowvar=False), atol=0.1)


def test_posterior_means_are_centred(low_rank, fitted_low_rank):
    X, _ = low_rank
    codes = fitted_low_rank.transform(X)
    assert np.all(np.abs(codes.mean(axis=0)) < 0.1)
    # Informative codes: the aggregate posterior spreads like the prior.
    assert np.all(np.abs(codes.std(axis=0) - 1) < 0.15)


def test_auto_beta_is_the_mean_feature_variance(X):
    model = fast().fit(X)
    assert model.beta == "auto"
    assert_allclose(model.beta_, X.var(axis=0).mean(), rtol=1e-5)
    assert_allclose(fast().fit(3 * X).beta_, 9 * model.beta_, rtol=1e-5)
    assert fast(beta=0.25).fit(X).beta_ == 0.25
    # A continued fit keeps the measured value, and can switch to it.
    model.set_params(warm_start=True, max_iter=2).fit(5 * X)
    assert_allclose(model.beta_, X.var(axis=0).mean(), rtol=1e-5)
    explicit = fast(beta=0.25).fit(X)
    explicit.set_params(warm_start=True, beta="auto").fit(X)
    assert_allclose(explicit.beta_, X.var(axis=0).mean(), rtol=1e-5)
    assert_allclose(fast(beta="auto").fit(np.ones((20, 3))).beta_, 1.0)


def test_auto_beta_keeps_the_codes_of_pixels_in_the_unit_interval():
    # Pixels in [0, 1] vary far less than 1: with beta=1 the KL term wins,
    # every code collapses onto the prior (measured: code spread 0.02) and
    # every sample is the average digit. "auto" weighs the KL term by the
    # pixels' mean variance (0.07), and the codes carry the digits.
    X = load_digits().data / 16.0
    codes = VariationalAutoencoder(random_state=0, device="cpu").fit(X).transform(X)
    assert np.all(codes.std(axis=0) > 0.5)
    collapsed = VariationalAutoencoder(beta=1.0, random_state=0, device="cpu").fit(X)
    assert np.all(collapsed.transform(X).std(axis=0) < 0.1)


def test_sample_is_reproducible_and_leaves_global_rng_alone(X, global_rng):
    model = fast().fit(X)
    first = model.sample(10, random_state=0)
    assert first.shape == (10, X.shape[1])
    assert first.dtype == np.float64
    assert_array_equal(model.sample(10, random_state=0), first)
    assert_array_equal(model.sample(10, random_state=np.random.RandomState(0)),
                       model.sample(10, random_state=np.random.RandomState(0)))
    assert not np.allclose(model.sample(10, random_state=1), first)
    assert not np.allclose(model.sample(10), model.sample(10))
    assert model.sample().shape == (1, X.shape[1])
    global_rng.assert_unchanged()


def test_sample_decodes_prior_draws(X):
    model = fast().fit(X)
    codes = torch.randn((4, 2), generator=torch.Generator().manual_seed(3)).numpy()
    assert_allclose(model.sample(4, random_state=3),
                    model.inverse_transform(codes.astype(np.float64)), rtol=1e-12)


@pytest.mark.parametrize("n_samples", [0, -1, 1.5, True, "3"])
def test_sample_rejects_bad_n_samples(X, n_samples):
    model = fast().fit(X)
    with pytest.raises(ValueError, match="n_samples"):
        model.sample(n_samples)


def test_sample_needs_a_fitted_model():
    with pytest.raises(NotFittedError):
        fast().sample(3)


def test_transform_returns_posterior_means(X):
    model = fast().fit(X)
    with torch.inference_mode():
        mean, _ = model.module_.encoder(torch.as_tensor(X, dtype=torch.float32))
    assert_allclose(model.transform(X), mean.numpy(), rtol=1e-5, atol=1e-6)
    assert_array_equal(model.transform(X), model.transform(X))


def test_score_is_the_elbo_at_the_posterior_mean(X):
    model = fast().fit(X)
    with torch.inference_mode():
        rows = torch.as_tensor(X, dtype=torch.float64)
        module = copy.deepcopy(model.module_).double()
        mean, log_variance = module.encoder(rows)
        likelihood = Normal(module.decoder(mean), 1.0).log_prob(rows).sum(dim=1)
        kl = kl_divergence(Normal(mean, torch.exp(0.5 * log_variance)),
                           Normal(torch.zeros(()), torch.ones(()))).sum(dim=1)
    expected = (likelihood - kl).numpy()
    assert_allclose(model.score_samples(X), expected, rtol=1e-5)
    assert model.score(X) == pytest.approx(expected.mean(), rel=1e-5)
    # The Gaussian constant is included: the score is a log-density in nats.
    assert np.all(model.score_samples(X) < -0.5 * X.shape[1] * math.log(2 * math.pi))


def test_score_is_deterministic_and_row_independent():
    # A repeated call repeats itself exactly; other orders and chunkings move
    # a row only by rounding (float64 input is computed in float64), not
    # bitwise: BLAS kernels pick their summation order by shape and CPU.
    X = np.random.RandomState(0).normal(size=(60, 8))
    model = fast().fit(X)
    scores = model.score_samples(X)
    assert_array_equal(model.score_samples(X), scores)
    tolerance = dict(rtol=1e-12, atol=1e-12)
    assert_allclose(model.score_samples(X[::-1]), scores[::-1], **tolerance)
    assert_allclose(np.concatenate([model.score_samples(X[i:i + 1]) for i in range(5)]),
                    scores[:5], **tolerance)
    # Calls on pieces of 7 rows; a call on 10,200 rows, which the estimator
    # splits into several chunks (64 Ki floats each, rows at least 8 wide).
    assert_allclose(np.concatenate([model.score_samples(piece)
                                    for piece in np.split(X, range(7, 60, 7))]),
                    scores, **tolerance)
    assert_allclose(model.score_samples(np.tile(X, (170, 1))), np.tile(scores, 170),
                    **tolerance)


def test_loss_parts_are_recorded(X):
    beta = 0.5
    model = fast(beta=beta).fit(X)
    assert len(model.reconstruction_curve_) == len(model.kl_curve_) == model.n_iter_
    assert_allclose(model.loss_curve_,
                    np.add(model.reconstruction_curve_, beta * np.asarray(model.kl_curve_)),
                    rtol=1e-5)
    assert all(kl > 0 for kl in model.kl_curve_)
    # The reconstruction term is a negative log-likelihood per sample, in nats.
    assert min(model.reconstruction_curve_) > 0.5 * X.shape[1] * math.log(2 * math.pi)


def test_beta_weighs_the_kl(X):
    light = fast(beta=0.01, max_iter=30, tol=0).fit(X)
    heavy = fast(beta=10.0, max_iter=30, tol=0).fit(X)
    assert heavy.kl_curve_[-1] < light.kl_curve_[-1]


def test_fit_is_reproducible_and_leaves_global_rng_alone(X, global_rng):
    first, second = fast().fit(X), fast().fit(X)
    global_rng.assert_unchanged()
    assert_array_equal(first.transform(X), second.transform(X))
    assert first.kl_curve_ == second.kl_curve_


def test_pickle_round_trip(X):
    model = fast(beta=0.3).fit(X)
    restored = pickle.loads(pickle.dumps(model))
    assert_array_equal(restored.transform(X), model.transform(X))
    assert_array_equal(restored.score_samples(X), model.score_samples(X))
    assert_array_equal(restored.sample(5, random_state=0), model.sample(5, random_state=0))
    assert restored.kl_curve_ == model.kl_curve_


def test_partial_fit_extends_the_curves(X):
    model = fast().partial_fit(X).partial_fit(X)
    assert model.n_iter_ == 2
    assert len(model.loss_curve_) == len(model.kl_curve_) == len(model.reconstruction_curve_) == 2


def test_pandas_output(X):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    codes = fast().set_output(transform="pandas").fit(frame).transform(frame)
    assert list(codes.columns) == ["variationalautoencoder0", "variationalautoencoder1"]


def test_grid_search_with_default_scoring_prefers_the_trained_model(X):
    # The default score is the ELBO: one epoch at a tiny learning rate leaves
    # the network close to its random start, thirty at the default fit X.
    search = GridSearchCV(fast(), {"max_iter": [1, 30], "learning_rate_init": [1e-6, 1e-2]},
                          cv=2).fit(X)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_params_ == {"max_iter": 30, "learning_rate_init": 1e-2}


@pytest.mark.parametrize("beta", [-1, -0.1])
def test_negative_beta_is_rejected(X, beta):
    with pytest.raises(ValueError, match="beta"):
        fast(beta=beta).fit(X)


def test_codes_of_the_wrong_width_are_rejected(X):
    model = fast().fit(X)
    with pytest.raises(ValueError, match="n_components=2"):
        model.inverse_transform(np.zeros((3, 5)))
