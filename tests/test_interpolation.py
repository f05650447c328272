"""interpolate: decoded paths between the codes of two sets of rows, on every autoencoder."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import NotFittedError

import skae._inference
from skae import (
    AutoencoderTransformer,
    ConvolutionalAutoencoder,
    VariationalAutoencoder,
)
from skae._base import BaseAutoencoder
from skae.utils import all_estimators

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Every autoencoder skae exports, those added later included.
AUTOENCODERS = [E for _, E in all_estimators() if issubclass(E, BaseAutoencoder)]


def fast(Estimator, **params):
    return Estimator(**{"n_components": 3, "max_iter": 3, "random_state": 0, "device": "cpu",
                        **params})


@pytest.fixture(scope="module")
def pixels(digits):
    return digits[0][:200]


@pytest.fixture(scope="module", params=AUTOENCODERS, ids=lambda E: E.__name__)
def fitted(request, pixels):
    return fast(request.param).fit(pixels)


def test_every_autoencoder_is_covered():
    assert {AutoencoderTransformer, VariationalAutoencoder,
            ConvolutionalAutoencoder} <= set(AUTOENCODERS)
    assert len(AUTOENCODERS) >= 4


def test_ends_are_the_reconstructions_and_shape_is_rows_by_steps(fitted, pixels):
    X_from, X_to = pixels[:5], pixels[10:15]
    paths = fitted.interpolate(X_from, X_to, n_steps=6)
    assert paths.shape == (5, 6, 64)
    assert paths.dtype == np.float64
    assert_allclose(paths[:, 0], fitted.inverse_transform(fitted.transform(X_from)),
                    rtol=1e-9, atol=1e-12)
    assert_allclose(paths[:, -1], fitted.inverse_transform(fitted.transform(X_to)),
                    rtol=1e-9, atol=1e-12)
    # The path moves: its steps differ from both ends.
    assert not np.allclose(paths[:, 1], paths[:, 0]) and not np.allclose(paths[:, 1],
                                                                          paths[:, -1])


def test_steps_decode_evenly_spaced_codes(fitted, pixels):
    """Step s decodes (1 - s / (n - 1)) z_from + s / (n - 1) z_to: the codes of
    the transform (a VAE's posterior means), not a draw."""
    X_from, X_to = pixels[:4], pixels[20:24]
    z_from, z_to = fitted.transform(X_from), fitted.transform(X_to)
    paths = fitted.interpolate(X_from, X_to, n_steps=5)
    for step in range(5):
        t = step / 4
        assert_allclose(paths[:, step], fitted.inverse_transform((1 - t) * z_from + t * z_to),
                        rtol=1e-9, atol=1e-12)
    assert_array_equal(paths, fitted.interpolate(X_from, X_to, n_steps=5))  # deterministic


def test_float32_rows_give_float32_paths(fitted, pixels):
    X = pixels[:3].astype(np.float32)
    paths = fitted.interpolate(X, X[::-1], n_steps=2)
    assert paths.dtype == np.float32
    assert_allclose(paths[:, 0], fitted.inverse_transform(fitted.transform(X)), rtol=1e-5,
                    atol=1e-6)


def test_middle_step_of_a_linear_autoencoder_is_the_decoded_mean_code(pixels):
    ae = fast(AutoencoderTransformer, activation="identity", hidden_layer_sizes=()).fit(pixels)
    X_from, X_to = pixels[:7], pixels[50:57]
    paths = ae.interpolate(X_from, X_to, n_steps=3)
    mean_code = (ae.transform(X_from) + ae.transform(X_to)) / 2
    assert_allclose(paths[:, 1], ae.inverse_transform(mean_code), rtol=1e-9, atol=1e-12)
    # An affine decoder maps the evenly spaced codes to evenly spaced rows.
    paths = ae.interpolate(X_from, X_to, n_steps=5)
    for step in range(5):
        t = step / 4
        assert_allclose(paths[:, step], (1 - t) * paths[:, 0] + t * paths[:, -1],
                        rtol=1e-9, atol=1e-9)


def test_a_nonlinear_decoder_does_not_blend_the_ends(pixels):
    """The middle of the path is decoded from the middle code, which for a
    nonlinear decoder is not the average of the two reconstructions."""
    ae = fast(AutoencoderTransformer, max_iter=20, hidden_layer_sizes=(32,)).fit(pixels)
    paths = ae.interpolate(pixels[:20], pixels[100:120], n_steps=3)
    blend = (paths[:, 0] + paths[:, -1]) / 2
    assert np.abs(paths[:, 1] - blend).max() > 1e-3


def test_paths_do_not_depend_on_the_chunk_size(fitted, pixels, monkeypatch):
    X_from, X_to = pixels[:30], pixels[30:60]
    reference = fitted.interpolate(X_from, X_to, n_steps=4)
    # Chunks of one row: every encode and decode runs row by row.
    monkeypatch.setattr(skae._inference, "_CHUNK_FLOATS", 1)
    assert_allclose(fitted.interpolate(X_from, X_to, n_steps=4), reference,
                    rtol=1e-12, atol=1e-12)


def test_images_keep_their_shape(pixels):
    cae = fast(ConvolutionalAutoencoder, channels=(4,)).fit(pixels)
    images = pixels.reshape(-1, 8, 8)
    paths = cae.interpolate(images[:3], images[5:8], n_steps=4)
    assert paths.shape == (3, 4, 8, 8)
    assert_allclose(paths.reshape(3, 4, 64), cae.interpolate(pixels[:3], pixels[5:8], 4),
                    rtol=1e-12, atol=1e-12)


def test_pandas_rows(pixels):
    pd = pytest.importorskip("pandas")
    columns = [f"pixel_{i}" for i in range(64)]
    frame = pd.DataFrame(pixels, columns=columns)
    ae = fast(AutoencoderTransformer).fit(frame)
    paths = ae.interpolate(frame.iloc[:4], frame.iloc[10:14], n_steps=3)
    assert isinstance(paths, np.ndarray) and paths.shape == (4, 3, 64)
    with pytest.warns(UserWarning, match="feature names"):  # plain arrays have none
        from_arrays = ae.interpolate(pixels[:4], pixels[10:14], n_steps=3)
    assert_allclose(paths, from_arrays, rtol=1e-12)
    with pytest.raises(ValueError, match="feature names"):
        ae.interpolate(frame.iloc[:4], frame.iloc[10:14, ::-1], n_steps=3)


@pytest.mark.parametrize("n_steps", [1, 0, -3, 2.5, True, "8", None])
def test_n_steps_must_be_an_integer_of_at_least_two(fitted, pixels, n_steps):
    with pytest.raises(ValueError, match=r"n_steps must be an integer >= 2"):
        fitted.interpolate(pixels[:2], pixels[2:4], n_steps=n_steps)


def test_numpy_integer_n_steps(fitted, pixels):
    assert fitted.interpolate(pixels[:2], pixels[2:4], n_steps=np.int64(3)).shape == (2, 3, 64)


def test_rows_must_pair_up(fitted, pixels):
    with pytest.raises(ValueError, match=r"X_from and X_to must have the same shape.*\(3, 64\)"):
        fitted.interpolate(pixels[:3], pixels[3:5])
    with pytest.raises(ValueError, match="X_from and X_to must hold rows"):
        fitted.interpolate(pixels[0], pixels[1])
    with pytest.raises(ValueError, match="64 features"):
        fitted.interpolate(pixels[:3, :10], pixels[3:6, :10])


def test_needs_a_fitted_model(pixels):
    with pytest.raises(NotFittedError):
        AutoencoderTransformer().interpolate(pixels[:2], pixels[2:4])


def test_sparse_rows(pixels):
    sparse = pytest.importorskip("scipy.sparse")
    ae = fast(AutoencoderTransformer).fit(pixels)
    paths = ae.interpolate(sparse.csr_matrix(pixels[:5]), sparse.csr_matrix(pixels[5:10]), 4)
    assert_allclose(paths, ae.interpolate(pixels[:5], pixels[5:10], 4), rtol=1e-12, atol=1e-12)
