"""What makes a deep network learn: He initialisation, batch normalisation and
the learning-rate schedule (``init``, ``batch_norm``, ``learning_rate``)."""

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skae import (
    AutoencoderTransformer,
    ConvolutionalAutoencoder,
    DenoisingAutoencoder,
    RecurrentAutoencoder,
    SparseAutoencoder,
    VariationalAutoencoder,
)
from skae._fastpath import ReconstructionLoss, dense_step
from skae._modules import MLPAutoencoder
from skae._optim import make_optimizer


@pytest.fixture(scope="module")
def digits():
    X, _ = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32)


def _norms(estimator):
    return [m for m in estimator.module_.modules() if isinstance(m, torch.nn.BatchNorm1d)]


# --------------------------------------------------------------------------- #
# batch_norm

@pytest.mark.parametrize("params, expected", [
    ({}, False),                                                  # one hidden layer
    ({"hidden_layer_sizes": (32, 16)}, False),                    # deep, starts at PCA
    ({"hidden_layer_sizes": (32, 16), "loss": "log_loss"}, True),  # deep, random start
    ({"hidden_layer_sizes": (32, 16), "init": "random"}, True),
    ({"hidden_layer_sizes": (32,), "loss": "log_loss"}, False),
    ({"hidden_layer_sizes": (32, 16), "batch_norm": False, "loss": "log_loss"}, False),
    ({"batch_norm": True}, True),
])
def test_batch_norm_auto_is_on_for_deep_networks_that_start_at_random(digits, params, expected):
    ae = AutoencoderTransformer(4, max_iter=2, random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae.fit(digits[:300])
    assert bool(_norms(ae)) is expected
    assert ae._training.network_params["batch_norm"] is expected


@pytest.mark.parametrize("estimator_class", [AutoencoderTransformer, DenoisingAutoencoder])
@pytest.mark.parametrize("params, batch_norm", [
    ({}, False),
    ({"hidden_layer_sizes": (32, 16)}, False),
    ({"hidden_layer_sizes": (32, 16), "loss": "log_loss"}, True),
    ({"hidden_layer_sizes": (32, 16), "init": "random"}, True),
    ({"hidden_layer_sizes": (32, 16), "batch_norm": False, "loss": "log_loss"}, False),
    ({"batch_norm": True}, True),
])
def test_activation_auto_is_gelu_with_batch_norm_and_relu_otherwise(digits, estimator_class,
                                                                     params, batch_norm):
    ae = estimator_class(4, max_iter=2, random_state=0, **params)
    assert ae.get_params()["activation"] == "auto"  # stored untouched
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae.fit(digits[:300])
    expected = "gelu" if batch_norm else "relu"
    assert ae.activation_ == expected
    assert ae.get_params()["activation"] == "auto"
    units = {type(layer) for layer in ae.module_.modules()
             if isinstance(layer, (torch.nn.ReLU, torch.nn.GELU))}
    assert units == {torch.nn.GELU if batch_norm else torch.nn.ReLU}
    # A fitted model keeps the unit it was built with, pickled or not.
    again = pickle.loads(pickle.dumps(ae))
    assert again.activation_ == expected
    assert_allclose(again.transform(digits[:20]), ae.transform(digits[:20]))


def test_an_explicit_activation_is_kept_with_batch_norm(digits):
    ae = AutoencoderTransformer(4, hidden_layer_sizes=(32, 16), loss="log_loss",
                                activation="relu", max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae.fit(digits[:300])
    assert ae.activation_ == "relu" and _norms(ae)
    with pytest.raises(ValueError, match="activation"):
        AutoencoderTransformer(activation="swish").fit(digits)


def test_batch_norm_with_a_pca_start_is_refused_before_training(digits):
    with pytest.raises(ValueError, match="batch_norm=True cannot"):
        AutoencoderTransformer(4, init="pca", batch_norm=True).fit(digits)
    with pytest.raises(ValueError, match="batch_norm"):
        AutoencoderTransformer(4, batch_norm="yes").fit(digits)


def test_a_network_with_batch_norm_trains_through_autograd():
    module = MLPAutoencoder(8, (6, 5), 2, "relu", batch_norm=True)
    optimizer = make_optimizer(module, 1e-3, 0.0)
    assert dense_step(module, ReconstructionLoss(), optimizer, None, None) is None
    plain = MLPAutoencoder(8, (6, 5), 2, "relu")
    assert dense_step(plain, ReconstructionLoss(), make_optimizer(plain, 1e-3, 0.0),
                      None, None) is not None


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_batch_norm_uses_running_statistics_outside_training(digits):
    ae = AutoencoderTransformer(4, hidden_layer_sizes=(32, 16), loss="log_loss", max_iter=5,
                                random_state=0).fit(digits)
    assert not ae.module_.training
    norm = _norms(ae)[0]
    assert int(norm.num_batches_tracked) > 0
    # A row's code does not depend on the other rows it is transformed with.
    alone = ae.transform(digits[:1])
    together = ae.transform(digits[:50])[:1]
    np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-6)


def test_a_last_batch_of_one_row_is_skipped_not_an_error(digits):
    # 101 training rows in batches of 20: the last batch has one row.
    ae = AutoencoderTransformer(3, hidden_layer_sizes=(16, 8), batch_norm=True, batch_size=20,
                                early_stopping=False, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae.fit(digits[:101])
    assert np.isfinite(ae.loss_curve_).all()


def test_batches_of_one_row_with_batch_norm_say_what_to_do(digits):
    ae = AutoencoderTransformer(3, hidden_layer_sizes=(16, 8), batch_norm=True, batch_size=1,
                                early_stopping=False, max_iter=2, random_state=0)
    with pytest.raises(ValueError, match="batch_size >= 2.*batch_norm=False"):
        ae.fit(digits[:20])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_fitted_batch_norm_network_survives_pickling(digits):
    ae = AutoencoderTransformer(4, hidden_layer_sizes=(32, 16), loss="log_loss", max_iter=3,
                                random_state=0).fit(digits)
    before = ae.transform(digits)
    ae.set_params(batch_norm=False)  # the saved model is the fitted one
    loaded = pickle.loads(pickle.dumps(ae))
    np.testing.assert_array_equal(loaded.transform(digits), before)
    with pytest.raises(ValueError, match="batch_norm=False"):
        loaded.set_params(warm_start=True).fit(digits)


def test_denoising_autoencoder_takes_batch_norm_too(digits):
    dae = DenoisingAutoencoder(4, hidden_layer_sizes=(32, 16), init="random", max_iter=2,
                               random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dae.fit(digits)
    assert _norms(dae)


def test_batch_norm_makes_a_deep_random_start_learn_faster(digits):
    # The MNIST finding on a small scale: after the same few epochs, the deep
    # network with batch normalisation reconstructs better than without.
    errors = {}
    for batch_norm in (False, True):
        ae = AutoencoderTransformer(8, hidden_layer_sizes=(128, 64, 32), loss="log_loss",
                                    batch_norm=batch_norm, activation="relu", max_iter=8,
                                    early_stopping=False,
                                    random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ae.fit(digits)
        errors[batch_norm] = float(((ae.inverse_transform(ae.transform(digits)) - digits)
                                    ** 2).sum(axis=1).mean())
    assert errors[True] < 0.85 * errors[False]


# --------------------------------------------------------------------------- #
# learning_rate


def _rates(estimator_class, X, **params):
    rates = []
    model = estimator_class(callbacks=[lambda record: rates.append(record.learning_rate)],
                            random_state=0, **params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X)
    return model, rates, caught


@pytest.mark.parametrize("estimator_class, params", [
    (AutoencoderTransformer, {"n_components": 3}),
    (DenoisingAutoencoder, {"n_components": 3}),
    (VariationalAutoencoder, {"n_components": 3}),
    (ConvolutionalAutoencoder, {"n_components": 3, "image_shape": (8, 8), "channels": (4,)}),
    (SparseAutoencoder, {"n_components": 8}),
    (RecurrentAutoencoder, {"n_components": 2, "hidden_size": 8}),
])
def test_cosine_anneals_from_learning_rate_init_to_zero_at_max_iter(digits, estimator_class,
                                                                      params):
    model, rates, caught = _rates(estimator_class, digits[:200], learning_rate="cosine",
                                  learning_rate_init=0.002, max_iter=6, tol=0.0,
                                  early_stopping=False, **params)
    expected = [0.002 * 0.5 * (1 + math.cos(math.pi * epoch / 6)) for epoch in range(6)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    # Reaching max_iter is the schedule's end: no ConvergenceWarning.
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert model._training.stop_reason == "annealed"


def test_a_warm_start_anneals_again_from_learning_rate_init(digits):
    model, rates, _ = _rates(AutoencoderTransformer, digits[:200], n_components=3,
                             learning_rate="cosine", max_iter=4, tol=0.0, early_stopping=False)
    later = []
    model.set_params(warm_start=True, callbacks=[lambda r: later.append(r.learning_rate)])
    model.fit(digits[:200])
    assert later == rates


def test_constant_never_cuts_and_adaptive_cuts_once(digits):
    # A stall after every epoch (tol huge): adaptive cuts the rate by 10 at the
    # first stall and stops at the second; constant stops at the first.
    common = dict(n_components=3, learning_rate_init=0.001, tol=10.0, n_iter_no_change=1,
                  max_iter=50, early_stopping=False)
    _, constant, _ = _rates(AutoencoderTransformer, digits[:200], learning_rate="constant",
                            **common)
    _, adaptive, _ = _rates(AutoencoderTransformer, digits[:200], learning_rate="adaptive",
                            **common)
    assert set(constant) == {0.001}
    assert len(adaptive) > len(constant)
    assert sorted(set(adaptive)) == pytest.approx([0.0001, 0.001])


def test_learning_rate_is_validated(digits):
    with pytest.raises(ValueError, match="learning_rate"):
        AutoencoderTransformer(learning_rate="invscaling").fit(digits)


@pytest.mark.parametrize("params, he", [({}, False), ({"init": "random"}, True),
                                        ({"loss": "log_loss"}, True)])
def test_he_scale_for_random_starts_only(digits, params, he):
    # A PCA start leaves its free units at torch's default scale: He's made
    # the small tables' held-out error 1-8% worse (bench_quality.py).
    ae = AutoencoderTransformer(4, hidden_layer_sizes=(64,), max_iter=1, early_stopping=False,
                                random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae.fit(digits[:200])
    assert ae._training.architecture["variance_preserving_init"] is he
    assert ae.module_.variance_preserving_init is he
