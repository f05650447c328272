"""precision="bfloat16": autocast in training, float32 weights, float32 inference."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from skae import (
    AutoencoderClassifier,
    AutoencoderTransformer,
    ConvolutionalAutoencoder,
    DenoisingAutoencoder,
    VariationalAutoencoder,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FAST = dict(max_iter=10, random_state=0, device="cpu", batch_size=32)
ESTIMATORS = [
    # A random start: the PCA start is already exact on this rank-3 table.
    AutoencoderTransformer(n_components=3, init="random", **FAST),
    DenoisingAutoencoder(n_components=3, init="random", **FAST),
    VariationalAutoencoder(n_components=3, **FAST),
    ConvolutionalAutoencoder(n_components=3, channels=(4,), image_shape=(1, 4, 4), **FAST),
    AutoencoderClassifier(AutoencoderTransformer(n_components=3, **FAST), **FAST),
]


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 16))
    return X / X.std(), (X[:, 0] > 0).astype(int)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_bfloat16_trains_about_as_well_as_float32(estimator, data):
    X, y = data
    args = (X, y) if isinstance(estimator, AutoencoderClassifier) else (X,)
    full = clone(estimator).set_params(precision="float32").fit(*args)
    half = clone(estimator).set_params(precision="bfloat16").fit(*args)
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4
               for p in half.module_.parameters())
    # Rounding to 8 bits of mantissa changes the path, not where it goes.
    assert half.loss_curve_[-1] == pytest.approx(full.loss_curve_[-1], rel=0.15)
    assert half.loss_curve_ != full.loss_curve_  # autocast did run
    output = half.predict_proba(X) if hasattr(half, "predict_proba") else half.transform(X)
    assert output.dtype == np.float64  # inference keeps the input's precision


def test_precision_is_validated():
    with pytest.raises(InvalidParameterError, match="precision"):
        AutoencoderTransformer(precision="float16").fit(np.ones((5, 3)))
