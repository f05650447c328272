"""A saved model is the model that was fitted: whatever ``set_params`` did
after ``fit``, a pickle or skops round trip gives the fitted network's
outputs; a saved model holds no torch object; a file of another layout is
refused, naming both layouts."""

import pickle
import pickletools

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from skae import (
    AutoencoderClassifier,
    AutoencoderTransformer,
    ConvolutionalAutoencoder,
    DenoisingAutoencoder,
    VariationalAutoencoder,
)
from skae._state import TrainingState

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

sio = pytest.importorskip("skops.io")

AUTOENCODERS = [AutoencoderTransformer, DenoisingAutoencoder, VariationalAutoencoder,
                ConvolutionalAutoencoder]
ALL = [*AUTOENCODERS, AutoencoderClassifier]


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.rand(60, 16)  # 4x4 images for the conv AE
    y = (X[:, 0] > 0.5).astype(int)
    return X, y


def _fast(Estimator, **params):
    return Estimator(**{"max_iter": 3, "random_state": 0, "device": "cpu", **params})


def _fitted(Estimator, X, y, **params):
    if Estimator is AutoencoderClassifier:
        return _fast(Estimator, autoencoder=AutoencoderTransformer(
            n_components=3, hidden_layer_sizes=(8,), max_iter=3, random_state=0,
            device="cpu"), **params).fit(X, y)
    if Estimator is ConvolutionalAutoencoder:
        params = {"channels": (2,), **params}
    return _fast(Estimator, n_components=3, hidden_layer_sizes=(8,), **params).fit(X)


def _outputs(model, X):
    """Everything a fitted model computes, by method name."""
    if isinstance(model, AutoencoderClassifier):
        return {"predict_proba": model.predict_proba(X), "predict": model.predict(X)}
    codes = model.transform(X)
    outputs = {"transform": codes, "inverse_transform": model.inverse_transform(codes),
               "score_samples": model.score_samples(X), "score": model.score(X),
               "feature_names_out": model.get_feature_names_out()}
    if isinstance(model, VariationalAutoencoder):
        outputs["sample"] = model.sample(4, random_state=0)
        outputs["beta_"] = model.beta_
    return outputs


def _assert_same_outputs(model, X, expected):
    outputs = _outputs(model, X)
    assert outputs.keys() == expected.keys()
    for name, value in expected.items():
        assert_array_equal(outputs[name], value, err_msg=name)


def _skops_round_trip(model):
    payload = sio.dumps(model)
    untrusted = sio.get_untrusted_types(data=payload)
    return sio.loads(payload, trusted=untrusted)


ROUND_TRIPS = {
    "pickle": lambda model: pickle.loads(pickle.dumps(model)),
    "skops": _skops_round_trip,
}

# Parameters that would build another network, set between fit and save.
CHANGES = {
    "activation": {"activation": "tanh"},
    "hidden_layer_sizes": {"hidden_layer_sizes": (5,)},
    "n_components": {"n_components": 4},
    "no_hidden_layer": {"hidden_layer_sizes": ()},
}
CONV_CHANGES = {
    "channels": {"channels": (3, 4)},
    "kernel_size": {"kernel_size": 5},
    "image_shape": {"image_shape": (1, 2, 8)},
}
CASES = [(Estimator, change) for Estimator in AUTOENCODERS for change in CHANGES] + \
    [(ConvolutionalAutoencoder, change) for change in CONV_CHANGES]


def _change(name):
    return {**CHANGES, **CONV_CHANGES}[name]


@pytest.mark.parametrize("how", ROUND_TRIPS)
@pytest.mark.parametrize(("Estimator", "change"), CASES,
                         ids=[f"{E.__name__}-{c}" for E, c in CASES])
def test_a_saved_model_is_the_fitted_one_whatever_set_params_did(data, Estimator, change, how):
    X, y = data
    model = _fitted(Estimator, X, y)
    expected = _outputs(model, X)
    model.set_params(**_change(change))
    # In memory, inference still uses the fitted network...
    _assert_same_outputs(model, X, expected)
    # ...and so does the model loaded from a file.
    loaded = ROUND_TRIPS[how](model)
    _assert_same_outputs(loaded, X, expected)
    assert loaded.get_params()[next(iter(_change(change)))] == \
        model.get_params()[next(iter(_change(change)))]


CLASSIFIER_CHANGES = {
    "autoencoder": lambda clf: clf.set_params(autoencoder=VariationalAutoencoder(
        n_components=2, hidden_layer_sizes=(3,))),
    "freeze_encoder": lambda clf: clf.set_params(freeze_encoder=not clf.freeze_encoder_),
    # The fitted autoencoder is a fitted attribute, but a user can still
    # change its parameters: the classifier's network is its own.
    "autoencoder_": lambda clf: clf.autoencoder_.set_params(hidden_layer_sizes=(5,),
                                                            activation="tanh"),
    "pretrain": lambda clf: clf.set_params(pretrain=False, freeze_encoder=False),
}


@pytest.mark.parametrize("how", ROUND_TRIPS)
@pytest.mark.parametrize("change", CLASSIFIER_CHANGES)
def test_a_saved_classifier_is_the_fitted_one_whatever_set_params_did(data, change, how):
    X, y = data
    clf = _fitted(AutoencoderClassifier, X, y)
    expected = _outputs(clf, X)
    CLASSIFIER_CHANGES[change](clf)
    _assert_same_outputs(clf, X, expected)
    _assert_same_outputs(ROUND_TRIPS[how](clf), X, expected)


@pytest.mark.parametrize("how", ROUND_TRIPS)
@pytest.mark.parametrize("Autoencoder", AUTOENCODERS, ids=lambda E: E.__name__)
@pytest.mark.parametrize("pretrain", [True, False])
def test_a_classifier_is_rebuilt_from_its_state_whatever_its_encoder(
        data, Autoencoder, pretrain, how):
    X, y = data
    autoencoder = _fast(Autoencoder, n_components=2, hidden_layer_sizes=(6,),
                        **({"channels": (2,)} if Autoencoder is ConvolutionalAutoencoder else {}))
    clf = _fast(AutoencoderClassifier, autoencoder=autoencoder, pretrain=pretrain,
                freeze_encoder=False).fit(X, y)
    expected = _outputs(clf, X)
    clf.set_params(autoencoder=AutoencoderTransformer(n_components=5))
    _assert_same_outputs(ROUND_TRIPS[how](clf), X, expected)


@pytest.mark.parametrize("Estimator", ALL, ids=lambda E: E.__name__)
def test_what_training_produces_lives_in_the_training_state(data, Estimator):
    """No fitted value is kept beside the state (the VAE's measured beta, the
    conv AE's image shape): the estimator's attributes are its parameters,
    what validation of X sets, and the state."""
    X, y = data
    model = _fitted(Estimator, X, y)
    beside = set(vars(model)) - set(model.get_params(deep=False)) - {
        "n_features_in_", "_training", "_sklearn_version"}
    if Estimator is AutoencoderClassifier:  # fitted before the network is built
        beside -= {"classes_", "autoencoder_", "freeze_encoder_", "pseudo_labelling_", "alpha_",
                   "learning_rate_init_", "_encoder_source"}
    assert beside == set()


def test_the_vae_keeps_the_beta_it_was_trained_with(data):
    X, _ = data
    vae = _fitted(VariationalAutoencoder, X, None, beta=0.25)
    vae.set_params(beta=0.5)
    assert vae.beta_ == 0.25
    assert pickle.loads(pickle.dumps(vae)).beta_ == 0.25
    measured = _fitted(VariationalAutoencoder, X, None)
    variance = measured.beta_
    assert_allclose(variance, X.var(axis=0).mean(), rtol=1e-5)
    measured.set_params(beta=0.5)
    assert _skops_round_trip(measured).beta_ == variance


def test_the_conv_image_shape_is_fitted(data):
    X, _ = data
    cae = _fitted(ConvolutionalAutoencoder, X, None)
    assert cae.image_shape_ == (1, 4, 4)
    cae.set_params(image_shape=(2, 8))
    assert cae.image_shape_ == (1, 4, 4)
    images = X.reshape(-1, 1, 4, 4)
    assert_array_equal(cae.transform(images), cae.transform(X))
    assert _skops_round_trip(cae).image_shape_ == (1, 4, 4)
    # A 3-D array is read as the fitted network reads rows: signals here.
    signals = _fitted(ConvolutionalAutoencoder, X.reshape(-1, 2, 8), None, image_shape=(2, 8))
    codes = signals.transform(X)
    signals.set_params(image_shape=None)
    assert_array_equal(signals.transform(X.reshape(-1, 2, 8)), codes)


# --------------------------------------------------------------------------- #
# Continuing after a change of the network.

@pytest.mark.parametrize(("Estimator", "change"), CASES,
                         ids=[f"{E.__name__}-{c}" for E, c in CASES])
def test_warm_start_and_partial_fit_refuse_a_changed_network_naming_the_parameter(
        data, Estimator, change):
    X, y = data
    model = _fitted(Estimator, X, y)
    expected = _outputs(model, X)
    name = next(iter(_change(change)))
    model.set_params(**_change(change))
    with pytest.raises(ValueError, match=rf"{name}=.*set warm_start=False"):
        model.set_params(warm_start=True).fit(X)
    with pytest.raises(ValueError, match=rf"{name}=.*partial_fit continues.*call fit"):
        model.partial_fit(X)
    _assert_same_outputs(model, X, expected)  # refused calls change nothing
    # warm_start=False trains a new network, the one a fresh estimator trains.
    model.set_params(warm_start=False).fit(X)
    fresh = _fast(Estimator, **model.get_params()).fit(X)
    assert_array_equal(model.transform(X), fresh.transform(X))


def test_a_loaded_model_continues_with_its_fitted_network(data):
    X, _ = data
    ae = _fitted(AutoencoderTransformer, X, None)
    ae.set_params(hidden_layer_sizes=(5,))
    loaded = pickle.loads(pickle.dumps(ae))
    with pytest.raises(ValueError, match="hidden_layer_sizes="):
        loaded.partial_fit(X)
    loaded.set_params(hidden_layer_sizes=(8,)).partial_fit(X)
    assert loaded.n_iter_ == ae.n_iter_ + 1


def test_encoder_factory_of_a_fitted_model_builds_the_fitted_encoder(data):
    X, _ = data
    ae = _fitted(AutoencoderTransformer, X, None)
    ae.set_params(hidden_layer_sizes=(5,), n_components=2)
    build, n_codes = ae.encoder_factory()
    encoder = build()
    encoder.load_state_dict(ae.encoder_.state_dict())
    assert n_codes == 3
    with torch.no_grad():
        codes = encoder(torch.as_tensor(X, dtype=torch.float32)).numpy()
    assert_allclose(codes, ae.transform(X.astype(np.float32)), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- #
# No torch object in a saved model.

def _pickled_strings(payload):
    return [arg for _, arg, _ in pickletools.genops(payload) if isinstance(arg, str)]


@pytest.mark.parametrize("Estimator", ALL, ids=lambda E: E.__name__)
def test_a_torch_device_parameter_is_saved_as_its_string(data, Estimator):
    X, y = data
    model = _fitted(Estimator, X, y, device=torch.device("cpu"))
    expected = _outputs(model, X)
    payload = pickle.dumps(model)
    torch_names = [s for s in _pickled_strings(payload) if s == "torch" or s.startswith("torch.")]
    assert torch_names == []
    untrusted = sio.get_untrusted_types(data=sio.dumps(model))
    assert not [name for name in untrusted if "torch" in name], untrusted
    for loaded in (pickle.loads(payload), _skops_round_trip(model)):
        assert loaded.device == "cpu"
        _assert_same_outputs(loaded, X, expected)
    assert model.device == torch.device("cpu")  # the live estimator is untouched


# --------------------------------------------------------------------------- #
# Layouts.

def _old_layout_state(model):
    """The state skae wrote at f9d7584 (layout 1): the same numbers, with the
    architecture as a tuple of parameters in ``_training`` and no layout
    number beside it."""
    state = model.__getstate__()
    state = {key: value for key, value in state.items() if key != "_skae_layout"}
    training = dict(state["_training"])
    for key in ("layout", "network_params", "settings"):
        training.pop(key, None)
    training["architecture"] = (model.n_components, tuple(model.hidden_layer_sizes),
                                model.activation)
    state["_training"] = {"format": 1, **training}
    return state


def _saved_with_state(model, state, dumps=pickle.dumps):
    """``dumps(model)`` as a skae that writes ``state`` would have written it."""
    Estimator = type(model)
    real = Estimator.__dict__.get("__getstate__")
    Estimator.__getstate__ = lambda self: state
    try:
        return dumps(model)
    finally:
        if real is None:
            del Estimator.__getstate__
        else:
            Estimator.__getstate__ = real


def test_a_pickle_of_an_older_layout_is_refused_naming_both_layouts(data):
    X, _ = data
    ae = _fitted(AutoencoderTransformer, X, None)
    payload = _saved_with_state(ae, _old_layout_state(ae))
    with pytest.raises(ValueError, match=rf"layout 1\b.*reads layout {TrainingState.LAYOUT}\b"):
        pickle.loads(payload)


def test_a_pickle_of_the_first_layout_is_refused_not_loaded_unfitted(data):
    """Before the training state (3542f1b), the network's weights were pickled
    as ``module_``; such a file loaded as an unfitted estimator."""
    X, _ = data
    ae = _fitted(AutoencoderTransformer, X, None)
    state = {key: value for key, value in ae.__getstate__().items()
             if key not in ("_training", "_skae_layout")}
    state.update({"module_": {name: tensor.numpy() for name, tensor in
                              ae.module_.state_dict().items()},
                  "_optimizer": {}, "device_": "cpu", "n_iter_": ae.n_iter_})
    with pytest.raises(ValueError, match=rf"unnumbered.*reads layout {TrainingState.LAYOUT}\b"):
        pickle.loads(_saved_with_state(ae, state))


@pytest.mark.parametrize("fitted", [True, False])
def test_a_future_layout_is_refused_naming_both_layouts(data, fitted):
    X, _ = data
    ae = _fitted(AutoencoderTransformer, X, None) if fitted else _fast(AutoencoderTransformer)
    state = {**ae.__getstate__(), "_skae_layout": TrainingState.LAYOUT + 1}
    message = rf"layout {TrainingState.LAYOUT + 1}\b.*reads layout {TrainingState.LAYOUT}\b"
    with pytest.raises(ValueError, match=message):
        pickle.loads(_saved_with_state(ae, state))
    payload = _saved_with_state(ae, state, sio.dumps)  # a skops file from that future skae
    with pytest.raises(ValueError, match=message):
        sio.loads(payload, trusted=sio.get_untrusted_types(data=payload))


def test_the_layout_is_written_in_every_saved_model(data):
    X, y = data
    for model in (_fast(AutoencoderTransformer), _fitted(AutoencoderClassifier, X, y)):
        state = model.__getstate__()
        assert state["_skae_layout"] == TrainingState.LAYOUT
        loaded = pickle.loads(pickle.dumps(model))
        assert "_skae_layout" not in vars(loaded)
    unfitted = pickle.loads(pickle.dumps(_fast(AutoencoderTransformer)))
    assert not unfitted.__sklearn_is_fitted__()
