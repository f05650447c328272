import numpy as np
import pytest
from sklearn.datasets import load_digits


@pytest.fixture(scope="session")
def digits():
    """The digits scaled to [0, 1], as float64."""
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture
def blobs():
    """A small float64 table with a low-dimensional structure."""
    rng = np.random.RandomState(0)
    latent = rng.normal(size=(120, 3))
    return latent @ rng.normal(size=(3, 10)) + 0.05 * rng.normal(size=(120, 10))
