"""RecurrentAutoencoder: 2-D and 3-D sequences, PCA start, anomaly ranking, persistence, errors."""

import pickle

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.decomposition import PCA
from sklearn.utils._param_validation import InvalidParameterError

from skae import RecurrentAutoencoder
from skae._fastpath import DenseStep, dense_inference, dense_step
from skae._modules import RNNAutoencoder, initialize_parameters, start_recurrent_at_pca
from skae._optim import make_optimizer

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N_TIMESTEPS = 12


def sines(n, n_timesteps=N_TIMESTEPS, seed=0):
    """Sine waves of random frequency and phase, one per row."""
    rng = np.random.RandomState(seed)
    t = np.linspace(0, 2 * np.pi, n_timesteps)
    frequency, phase = rng.uniform(1, 2, (n, 1)), rng.uniform(0, 2 * np.pi, (n, 1))
    return np.sin(frequency * t + phase)


def two_channels(n, seed=0):
    X = sines(n, seed=seed)
    return np.stack([X, np.roll(X, 3, axis=1)], axis=2)  # (n, 12, 2)


def tiny(**params):
    return RecurrentAutoencoder(**{"n_components": 2, "hidden_size": 4, "max_iter": 3,
                                   "random_state": 0, "device": "cpu", **params})


@pytest.fixture(scope="module")
def fitted_2d():
    X = sines(60)
    return tiny().fit(X), X


@pytest.fixture(scope="module")
def fitted_3d():
    X = two_channels(60)
    return tiny(cell="lstm", n_layers=2).fit(X), X


def test_shapes_of_2d_sequences(fitted_2d):
    model, X = fitted_2d
    codes = model.transform(X)
    assert codes.shape == (60, 2)
    assert model.inverse_transform(codes).shape == (60, N_TIMESTEPS)
    assert model.score_samples(X).shape == (60,)
    assert (model.n_timesteps_, model.n_channels_, model.n_features_in_) == (N_TIMESTEPS, 1,
                                                                              N_TIMESTEPS)
    # One-channel 3-D sequences are the same sequences.
    assert_allclose(model.transform(X[:, :, None]), codes, rtol=1e-6)


def test_shapes_of_3d_sequences(fitted_3d):
    model, X = fitted_3d
    codes = model.transform(X)
    assert codes.shape == (60, 2)
    assert model.inverse_transform(codes).shape == (60, N_TIMESTEPS, 2)
    assert model.score_samples(X).shape == (60,)
    assert (model.n_timesteps_, model.n_channels_, model.n_features_in_) == (N_TIMESTEPS, 2,
                                                                              2 * N_TIMESTEPS)
    # The flat form (time-major) is the same sequences.
    flat = X.reshape(60, -1)
    assert_allclose(model.transform(flat), codes, rtol=1e-6)
    assert_allclose(model.score_samples(flat), model.score_samples(X), rtol=1e-6)


def test_the_3d_reconstruction_is_the_sequence_not_a_transposition(fitted_3d):
    # score_samples is minus the mean squared error between each sequence and
    # inverse_transform(transform(.)) in the input's own layout.
    model, X = fitted_3d
    reconstruction = model.inverse_transform(model.transform(X))
    assert_allclose(-model.score_samples(X), ((reconstruction - X) ** 2).mean(axis=(1, 2)),
                    rtol=1e-4)


def test_the_network_starts_at_pca():
    X = sines(80).astype(np.float32)
    module = initialize_parameters(RNNAutoencoder((N_TIMESTEPS,), "gru", 6, 1, 3),
                                   torch.Generator().manual_seed(0))
    pca = PCA(3).fit(X)
    start_recurrent_at_pca(module, pca.mean_, pca.components_)
    with torch.no_grad():
        reconstruction = module(torch.from_numpy(X)).numpy()
    assert_allclose(reconstruction, pca.inverse_transform(pca.transform(X)), atol=1e-5)


def test_default_fit_is_at_least_as_good_as_pca_held_out():
    X, X_test = sines(200, seed=0), sines(100, seed=1)
    pca = PCA(2).fit(X)
    pca_error = ((pca.inverse_transform(pca.transform(X_test)) - X_test) ** 2).mean()
    model = RecurrentAutoencoder(2, hidden_size=16, max_iter=30, random_state=0).fit(X)
    assert -model.score(X_test) < 0.8 * pca_error


@pytest.mark.parametrize("anomaly", ["spike", "phase flip"])
def test_score_samples_ranks_an_anomalous_sequence_lowest(anomaly):
    rng = np.random.RandomState(0)
    t = np.linspace(0, 2 * np.pi, 24)
    X = np.sin(t + rng.uniform(0, 0.5, size=(150, 1)))  # nearly in phase
    model = RecurrentAutoencoder(2, hidden_size=8, max_iter=20, random_state=0).fit(X)
    normal = np.sin(t + rng.uniform(0, 0.5, size=(20, 1)))
    odd = normal[:1].copy()
    if anomaly == "spike":
        odd[0, 12] += 2.0
    else:
        odd[0, 12:] *= -1  # the second half upside down
    scores = model.score_samples(np.vstack([normal, odd]))
    assert scores.argmin() == 20


def test_lstm_and_gru_both_train(fitted_2d):
    X = fitted_2d[1]
    lstm = tiny(cell="lstm").fit(X)
    assert isinstance(lstm.encoder_.rnn, torch.nn.LSTM)
    assert isinstance(fitted_2d[0].encoder_.rnn, torch.nn.GRU)
    assert np.isfinite(lstm.score_samples(X)).all()


def test_the_fast_path_declines_it(monkeypatch):
    module = RNNAutoencoder((N_TIMESTEPS,), "gru", 4, 1, 2)
    loss = RecurrentAutoencoder()._training_loss
    assert dense_step(module, loss, make_optimizer(module, 1e-3, 0.0), None, None) is None
    assert dense_inference(module) is module
    monkeypatch.setattr(DenseStep, "__call__", None)  # would fail if called
    assert np.isfinite(tiny().fit(sines(30)).loss_curve_).all()


@pytest.mark.parametrize("fixture", ["fitted_2d", "fitted_3d"])
def test_pickle_round_trip_is_bitwise(fixture, request):
    model, X = request.getfixturevalue(fixture)
    loaded = pickle.loads(pickle.dumps(model))
    codes = model.transform(X)
    assert_array_equal(loaded.transform(X), codes)
    assert_array_equal(loaded.inverse_transform(codes), model.inverse_transform(codes))
    assert loaded.n_channels_ == model.n_channels_


def test_skops_round_trip_is_bitwise(fitted_3d, tmp_path):
    skops_io = pytest.importorskip("skops.io")
    from skae import persistence

    model, X = fitted_3d
    path = tmp_path / "rae.skops"
    skops_io.dump(model, path)
    assert persistence.untrusted_types(path) == []
    loaded = persistence.load(path)
    assert_array_equal(loaded.score_samples(X), model.score_samples(X))


def test_partial_fit_and_warm_start_continue_the_network(fitted_3d):
    X = two_channels(40)
    model = tiny().partial_fit(X)
    model.partial_fit(X)
    assert model.n_iter_ == 2 and model.inverse_transform(model.transform(X)).shape == X.shape
    model.set_params(hidden_size=5)
    with pytest.raises(ValueError, match="hidden_size=5"):
        model.partial_fit(X)


def test_a_sequence_of_other_length_or_channels_is_refused(fitted_3d):
    model, X = fitted_3d
    with pytest.raises(ValueError, match="n_timesteps=6, .*n_timesteps_=12"):
        model.transform(X[:, :6])
    with pytest.raises(ValueError, match="n_channels=1, .*n_channels_=2"):
        model.score_samples(X[:, :, :1])
    with pytest.raises(ValueError, match="n_timesteps=24, .*n_timesteps_=12"):
        model.transform(X.reshape(60, 24, 1))  # as many values, read otherwise
    with pytest.raises(ValueError, match="12 features"):
        model.transform(X[:, :, 0])  # flat rows of the wrong width
    with pytest.raises(ValueError, match="n_components=2"):
        model.inverse_transform(np.zeros((3, 5)))


def test_a_failed_fit_leaves_the_model_as_it_was(fitted_2d):
    model, X = fitted_2d
    model = pickle.loads(pickle.dumps(model))
    before = model.transform(X)
    with pytest.raises(ValueError, match="4 dimensions"):
        model.set_params(warm_start=True).fit(X.reshape(60, 2, 3, 2))
    assert_array_equal(model.transform(X), before)


@pytest.mark.parametrize("params, match", [
    ({"cell": "rnn"}, "'cell' parameter"),
    ({"hidden_size": 0}, "'hidden_size' parameter"),
    ({"n_layers": 0}, "'n_layers' parameter"),
    ({"init": "greedy"}, "'init' parameter"),
])
def test_invalid_parameters_are_named(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        tiny(**params).fit(sines(20))


def test_input_of_the_wrong_dimensions_is_refused():
    with pytest.raises(ValueError, match="4 dimensions.*n_timesteps, n_channels"):
        tiny().fit(np.zeros((5, 2, 3, 4)))
    with pytest.raises(ValueError, match="n_timesteps and n_channels must be at least 1"):
        tiny().fit(np.zeros((5, 3, 0)))


def test_3d_memmaps_and_float64_sequences(tmp_path, fitted_3d):
    model, X = fitted_3d
    X = X.astype(np.float32)
    memmap = np.memmap(tmp_path / "sequences.dat", dtype=np.float32, mode="w+", shape=X.shape)
    memmap[:] = X
    memmap.flush()
    memmap = np.memmap(tmp_path / "sequences.dat", dtype=np.float32, mode="r", shape=X.shape)
    assert_array_equal(model.transform(memmap), model.transform(X))
    on_disk = tiny().fit(memmap)
    assert_allclose(on_disk.transform(X), tiny().fit(X).transform(X), rtol=1e-5, atol=1e-6)
    codes = model.transform(X.astype(np.float64))
    assert codes.dtype == np.float64
    assert_allclose(codes, model.transform(X), rtol=1e-4, atol=1e-5)
