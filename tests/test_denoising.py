import pickle
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skae import AutoencoderTransformer, DenoisingAutoencoder
from skae._modules import corrupt

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, _ = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, test_size=0.25, random_state=0)


@pytest.fixture
def X():
    return np.random.RandomState(0).normal(size=(60, 6))


def fast(**params):
    defaults = dict(n_components=3, hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                    device="cpu")
    return DenoisingAutoencoder(**{**defaults, **params})


@pytest.mark.slow
def test_denoises_better_than_plain_autoencoder(digits):
    # A network wide enough to copy its input (a 32-d code of 64 pixels)
    # learns to pass noise through when trained on clean images; trained on
    # noisy ones, it learns to remove it.
    X_train, X_test = digits
    noise_level = 0.3
    noisy = X_test + np.random.RandomState(0).normal(scale=noise_level, size=X_test.shape)
    common = dict(n_components=32, hidden_layer_sizes=(128,), max_iter=100, tol=0,
                  early_stopping=False, init="random", random_state=0, device="cpu")
    plain = AutoencoderTransformer(**common).fit(X_train)
    denoiser = DenoisingAutoencoder(noise_level=noise_level, **common).fit(X_train)

    def error(model):
        return np.mean((model.inverse_transform(model.transform(noisy)) - X_test) ** 2)

    # Measured: 0.0225 against 0.0300 (and 0.090 for the noisy images).
    assert error(denoiser) < 0.85 * error(plain)


def test_defaults_denoise(digits):
    # With its defaults (a PCA start and early stopping), a wide-code
    # denoising autoencoder must still learn to denoise: early stopping judges
    # the held-out rows by their denoising error, not by their clean
    # reconstruction, which the PCA start already nearly minimises (judged
    # that way, it returned PCA, with 2.4x the error below).
    X_train, X_test = digits
    noisy = X_test + np.random.RandomState(0).normal(scale=0.3, size=X_test.shape)

    def error(model):
        return np.mean((model.inverse_transform(model.transform(noisy)) - X_test) ** 2)

    plain = AutoencoderTransformer(n_components=32, random_state=0).fit(X_train)
    denoiser = DenoisingAutoencoder(n_components=32, noise_level=0.3, random_state=0).fit(X_train)
    # Measured: 0.0197 against 0.0475 for the plain autoencoder (and for PCA).
    assert error(denoiser) < 0.6 * error(plain)


@pytest.mark.parametrize("noise", ["gaussian", "dropout"])
def test_validation_scores_the_denoising_error(X, noise):
    model = fast(noise=noise, noise_level=0.4).fit(X)
    rows = torch.as_tensor(X, dtype=torch.float32)

    def scores(seed):
        generator = torch.Generator().manual_seed(seed)
        with torch.inference_mode():
            return model._validation_scores(model.module_, rows, None, generator)

    expected = corrupt(rows, noise, 0.4, torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected = -((model.module_(expected) - rows) ** 2).mean(dim=1)
    assert_allclose(scores(3), expected, rtol=1e-5, atol=1e-7)
    assert_array_equal(scores(3), scores(3))
    clean = model._predict(model._score_samples_tensor, X)  # minus the clean rows' error
    assert np.mean(scores(3).numpy()) < np.mean(clean)
    plain = fast(noise_level=0.0).fit(X)
    with torch.inference_mode():
        assert_allclose(plain._validation_scores(plain.module_, rows, None, None),
                        plain._predict(plain._score_samples_tensor, X), rtol=1e-5,
                        atol=1e-7)


@pytest.mark.parametrize("noise", ["gaussian", "dropout"])
def test_inference_sees_no_noise(X, noise):
    model = fast(noise=noise, noise_level=0.5).fit(X)
    codes = model.transform(X)
    assert_array_equal(model.transform(X), codes)
    assert_array_equal(model.score_samples(X), model.score_samples(X))
    with torch.inference_mode():
        clean = torch.as_tensor(X, dtype=torch.float32)
        expected_codes = model.module_.encoder(clean).numpy()
        reconstruction = model.module_(clean).numpy()
    assert_allclose(codes, expected_codes, rtol=1e-5, atol=1e-6)
    assert_allclose(model.inverse_transform(codes), reconstruction, rtol=1e-5, atol=1e-6)


def test_zero_noise_trains_the_plain_autoencoder(X):
    params = dict(n_components=3, hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                  device="cpu")
    plain = AutoencoderTransformer(**params).fit(X)
    assert_array_equal(DenoisingAutoencoder(noise_level=0, **params).fit(X).transform(X),
                       plain.transform(X))
    assert not np.allclose(DenoisingAutoencoder(noise_level=0.5, **params).fit(X).transform(X),
                           plain.transform(X))


def test_gaussian_corruption():
    X = torch.zeros(20_000, 5)
    generator = torch.Generator().manual_seed(0)
    noisy = corrupt(X, "gaussian", 0.3, generator)
    assert abs(float(noisy.mean())) < 0.01
    assert float(noisy.std()) == pytest.approx(0.3, rel=0.02)


def test_dropout_corruption():
    X = torch.ones(20_000, 5)
    generator = torch.Generator().manual_seed(0)
    noisy = corrupt(X, "dropout", 0.25, generator)
    zeroed = noisy == 0
    assert float(zeroed.float().mean()) == pytest.approx(0.25, abs=0.01)
    # Kept entries are scaled so that the expected input is unchanged.
    assert_allclose(noisy[~zeroed].numpy(), 1 / 0.75, rtol=1e-6)
    assert float(noisy.mean()) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("noise", ["gaussian", "dropout"])
def test_corruption_follows_the_generator(noise):
    X = torch.ones(50, 4)
    first = corrupt(X, noise, 0.5, torch.Generator().manual_seed(1))
    assert_array_equal(first, corrupt(X, noise, 0.5, torch.Generator().manual_seed(1)))
    assert not torch.equal(first, corrupt(X, noise, 0.5, torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("noise", ["gaussian", "dropout"])
def test_fit_is_reproducible_and_leaves_global_rng_alone(X, noise, global_rng):
    first = fast(noise=noise, noise_level=0.3).fit(X)
    second = fast(noise=noise, noise_level=0.3).fit(X)
    global_rng.assert_unchanged()
    assert_array_equal(first.transform(X), second.transform(X))
    assert first.loss_curve_ == second.loss_curve_


def test_noise_kinds_train_differently(X):
    gaussian = fast(noise="gaussian", noise_level=0.3).fit(X)
    dropout = fast(noise="dropout", noise_level=0.3).fit(X)
    assert not np.allclose(gaussian.transform(X), dropout.transform(X))


def test_pickle_round_trip(X):
    model = fast(noise="dropout", noise_level=0.2).fit(X)
    restored = pickle.loads(pickle.dumps(model))
    assert restored.noise == "dropout" and restored.noise_level == 0.2
    assert_array_equal(restored.transform(X), model.transform(X))
    assert_array_equal(restored.score_samples(X), model.score_samples(X))


def test_partial_fit(X):
    model = fast().partial_fit(X)
    first_codes = model.transform(X)
    model.partial_fit(X)
    assert model.n_iter_ == 2
    assert len(model.loss_curve_) == 2
    assert not np.allclose(model.transform(X), first_codes)
    again = fast().partial_fit(X).partial_fit(X)
    assert_array_equal(again.transform(X), model.transform(X))


def test_pandas_output(X):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    codes = fast().set_output(transform="pandas").fit(frame).transform(frame)
    assert list(codes.columns) == [f"denoisingautoencoder{i}" for i in range(3)]
    assert_array_equal(codes.index, frame.index)


@pytest.mark.parametrize("params, match", [
    (dict(noise="salt"), "noise"),
    (dict(noise_level=-1), "noise_level"),
    (dict(noise="dropout", noise_level=1.0), "noise_level"),
    (dict(noise="dropout", noise_level=1.5), "noise_level"),
])
def test_bad_parameters(X, params, match):
    model = fast(**params)
    with pytest.raises(ValueError, match=match):
        model.fit(X)
    assert not hasattr(model, "module_")


def test_large_gaussian_level_is_allowed(X):
    # A standard deviation above 1 is meaningful, unlike a dropout rate: it is
    # taken as given, not refused nor clipped to 1, so every epoch's loss on
    # the corrupted rows exceeds the one at 1.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        large, unit = fast(noise_level=1.5).fit(X), fast(noise_level=1.0).fit(X)
    assert large.noise_level == 1.5
    assert np.isfinite(large.loss_curve_).all()
    assert np.all(np.array(large.loss_curve_) > np.array(unit.loss_curve_))
