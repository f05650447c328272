import pickle
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skae import ConvolutionalAutoencoder

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _fast(**params):
    # Two codes (not the default 16): these rows are as small as 12 numbers.
    params = {"n_components": 2, "channels": (4, 8), "max_iter": 2, "random_state": 0,
              "device": "cpu", **params}
    return ConvolutionalAutoencoder(**params)


@pytest.fixture(scope="module")
def digits():
    X, _ = load_digits(return_X_y=True)
    return X / 16.0


@pytest.mark.parametrize(
    "n_features, image_shape, expected",
    [
        (64, None, (1, 8, 8)),
        (784, None, (1, 28, 28)),
        (3 * 7 * 9, (3, 7, 9), (3, 7, 9)),
        (63, (1, 7, 9), (1, 7, 9)),
        (1, None, (1, 1, 1)),
        (2, None, (1, 2)),
        (3, None, (1, 3)),
        (50, None, (1, 50)),
        (2 * 11, (2, 11), (2, 11)),
    ],
)
def test_shapes(n_features, image_shape, expected):
    X = np.random.RandomState(0).rand(20, n_features)
    cae = _fast(n_components=3, image_shape=image_shape).fit(X)
    assert cae.image_shape_ == expected
    codes = cae.transform(X)
    assert codes.shape == (20, 3)
    assert cae.inverse_transform(codes).shape == X.shape
    assert np.isfinite(cae.score(X))


@pytest.mark.parametrize("image_shape, conv", [((28, 28), torch.nn.Conv1d),
                                               ((1, 28, 28), torch.nn.Conv2d),
                                               (None, torch.nn.Conv2d)])
def test_two_entries_read_a_signal_three_an_image(image_shape, conv):
    # The docstring's warning: (28, 28) is 28 signals of length 28, not an image.
    X = np.random.RandomState(0).rand(6, 784)
    cae = _fast(image_shape=image_shape, max_iter=1).fit(X)
    convolutions = [layer for layer in cae.module_.encoder
                    if isinstance(layer, torch.nn.modules.conv._ConvNd)]
    assert {type(layer) for layer in convolutions} == {conv}
    assert convolutions[0].in_channels == (28 if image_shape == (28, 28) else 1)


@pytest.mark.parametrize("kernel_size", [1, 2, 4, 5])
@pytest.mark.parametrize("channels", [8, (4, 8, 16)])
def test_kernel_sizes_and_depths_restore_odd_sizes(kernel_size, channels):
    X = np.random.RandomState(0).rand(10, 7 * 9)
    cae = _fast(image_shape=(1, 7, 9), kernel_size=kernel_size, channels=channels).fit(X)
    assert cae.inverse_transform(cae.transform(X)).shape == X.shape


def test_4d_input_is_read_as_images():
    images = np.random.RandomState(0).rand(12, 3, 5, 6)
    cae = _fast().fit(images)
    assert cae.image_shape_ == (3, 5, 6)
    assert cae.n_features_in_ == 90
    flat = images.reshape(12, -1)
    assert_array_equal(cae.transform(images), cae.transform(flat))
    with pytest.raises(ValueError, match=r"fitted on images of shape \(3, 5, 6\)"):
        cae.transform(images.reshape(12, 3, 6, 5))
    with pytest.raises(ValueError, match="image_shape"):
        _fast(image_shape=(3, 6, 5)).fit(images)


@pytest.mark.parametrize("image_shape", [(1, 8, 9), (2, 8, 8), (64,)])
def test_image_shape_mismatch_is_a_clear_error(image_shape):
    X = np.random.RandomState(0).rand(10, 64)
    cae = _fast(image_shape=image_shape)
    with pytest.raises(ValueError, match="image_shape"):
        cae.fit(X)
    assert not hasattr(cae, "n_features_in_")


def test_transform_is_row_independent():
    X = np.random.RandomState(0).rand(37, 49)
    cae = _fast(n_components=4).fit(X)
    batch = cae.transform(X)
    rows = np.vstack([cae.transform(X[i:i + 1]) for i in range(X.shape[0])])
    assert_allclose(rows, batch, rtol=1e-12, atol=1e-12)
    assert_allclose(cae.score_samples(X[:5]), cae.score_samples(X)[:5], rtol=1e-12)


@pytest.mark.parametrize("noise", ["gaussian", "dropout"])
def test_noise_is_seeded_and_leaves_global_state(noise):
    X = np.random.RandomState(0).rand(30, 16)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002 (the legacy global state)
    first = _fast(noise=noise, noise_level=0.3).fit(X).transform(X)
    second = _fast(noise=noise, noise_level=0.3).fit(X).transform(X)
    assert_array_equal(first, second)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()  # noqa: NPY002 (the legacy global state)
    clean = _fast().fit(X).transform(X)
    assert not np.array_equal(first, clean)


def test_dropout_rate_must_be_below_one():
    with pytest.raises(ValueError, match="noise_level"):
        _fast(noise="dropout", noise_level=1.0).fit(np.ones((4, 4)))


def test_pickle_round_trip(digits):
    cae = _fast(n_components=4).fit(digits[:50])
    restored = pickle.loads(pickle.dumps(cae))
    assert restored.image_shape_ == (1, 8, 8)
    assert_array_equal(restored.transform(digits[:20]), cae.transform(digits[:20]))


def test_warm_start_refuses_a_new_image_shape():
    X = np.random.RandomState(0).rand(10, 12)
    cae = _fast(image_shape=(1, 3, 4), warm_start=True).fit(X)
    cae.set_params(image_shape=(1, 4, 3))
    with pytest.raises(ValueError, match="shape changed"):
        cae.fit(X)


@pytest.mark.slow
@pytest.mark.parametrize("n_components", [2, 8])
def test_defaults_reconstruct_held_out_digits_better_than_pca(digits, n_components):
    # What the user guide promises of the defaults: below PCA's error, and
    # converged within the default budget.
    X_train, X_test = train_test_split(digits, test_size=0.25, random_state=0)
    pca = PCA(n_components).fit(X_train)
    pca_error = np.mean((pca.inverse_transform(pca.transform(X_test)) - X_test) ** 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        cae = ConvolutionalAutoencoder(n_components, random_state=0, device="cpu").fit(X_train)
    cae_error = np.mean((cae.inverse_transform(cae.transform(X_test)) - X_test) ** 2)
    # Measured: 0.77 of PCA's error at 2 and 0.69 at 8 components.
    assert cae_error < 0.85 * pca_error
