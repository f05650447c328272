"""Tied weights (``tied_weights=True``) and the greedy layer-wise start (``init="greedy"``)
of the dense autoencoders."""

import copy
import pickle

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

import skae._fastpath
from skae import AutoencoderTransformer, Callback, DenoisingAutoencoder
from skae._autoencoder import CodeReconstruction, greedy_epochs
from skae._engine import Trainer
from skae._fastpath import DenseStep, ReconstructionLoss
from skae._modules import (
    ACTIVATIONS,
    MLPAutoencoder,
    TiedLinear,
    greedy_stages,
    initialize_parameters,
    start_at_pca,
)
from skae._optim import make_optimizer
from skae._sources import TensorSource

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

DENSE = [AutoencoderTransformer, DenoisingAutoencoder]


@pytest.fixture(scope="module")
def digits():
    return load_digits().data / 16.0


def _tied(n_features, hidden, n_components, activation, seed=0, **kwargs):
    module = MLPAutoencoder(n_features, hidden, n_components, activation, tied_weights=True,
                            **kwargs)
    return initialize_parameters(module, torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- #
# The network.

def test_each_decoder_layer_is_the_transpose_of_its_mirror_with_its_own_bias():
    module = _tied(10, (8, 6), 3, "relu")
    encoder = [layer for layer in module.encoder if isinstance(layer, nn.Linear)]
    decoder = [layer for layer in module.decoder if isinstance(layer, TiedLinear)]
    assert len(decoder) == len(encoder) == 3
    for layer, mirror in zip(decoder, encoder[::-1], strict=True):
        assert layer.mirror is mirror
        assert layer.weight.data_ptr() == mirror.weight.data_ptr()  # a view, not a copy
        assert_array_equal(layer.weight.detach(), mirror.weight.detach().T)
        assert layer.bias.shape == (mirror.in_features,)
    # The weights are parameters once: the decoder holds biases only.
    names = [name for name, _ in module.named_parameters()]
    assert [name for name in names if name.startswith("decoder")] == \
        ["decoder.0.bias", "decoder.2.bias", "decoder.4.bias"]
    assert list(module.state_dict()) == names


def test_about_half_the_weights(digits):
    counts = {tied: sum(p.numel() for p in AutoencoderTransformer(
        8, tied_weights=tied, max_iter=1, random_state=0).fit(digits[:60]).module_.parameters())
        for tied in (False, True)}
    # 64-128-8: 2 * (64 * 128 + 128 * 8) weights untied, half of them tied.
    assert counts[False] - counts[True] == 64 * 128 + 128 * 8
    assert counts[True] / counts[False] < 0.52


def test_a_copy_on_another_dtype_stays_tied():
    module = _tied(6, (5,), 2, "tanh")
    twin = copy.deepcopy(module).to(torch.float64)
    assert twin.decoder[0].mirror is twin.encoder[2]
    assert twin.decoder[0].weight.dtype == torch.float64
    with torch.no_grad():
        twin.encoder[2].weight.add_(1.0)
    assert_array_equal(twin.decoder[0].weight.detach(), twin.encoder[2].weight.detach().T)


def test_batch_norm_layers_are_not_tied():
    module = _tied(10, (8, 6), 3, "relu", batch_norm=True)
    norms = [layer for layer in module.modules() if isinstance(layer, nn.BatchNorm1d)]
    assert len(norms) == 4 and len({id(layer) for layer in norms}) == 4
    assert {id(n.weight) for n in norms}.isdisjoint(
        {id(p) for p in module.encoder.parameters()} & {id(p) for p in module.decoder.parameters()})


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "identity"])
@pytest.mark.parametrize("hidden", [(), (9,), (12, 8)])
def test_the_pca_start_is_exact_with_tied_weights(activation, hidden):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 10)) @ rng.normal(size=(10, 10))
    mean = X.mean(axis=0)
    components = np.linalg.svd(X - mean, full_matrices=False)[2][:3]
    module = start_at_pca(_tied(10, hidden, 4, activation), mean, components, activation)
    with torch.no_grad():
        output = module(torch.as_tensor(X, dtype=torch.float32)).double().numpy()
    expected = (X - mean) @ components.T @ components + mean
    assert_allclose(output, expected, atol=1e-4 * np.abs(X).max())


def test_init_pca_with_tied_weights_starts_at_pca(digits):
    from sklearn.decomposition import PCA

    X = digits[:400]
    # No training epoch: the network as the PCA start made it.
    model = AutoencoderTransformer(5, tied_weights=True, init="pca", early_stopping=False,
                                   learning_rate_init=1e-12, max_iter=1, random_state=0).fit(X)
    pca = PCA(5).fit(X)
    assert_allclose(model.inverse_transform(model.transform(X)),
                    pca.inverse_transform(pca.transform(X)), atol=1e-4)


# --------------------------------------------------------------------------- #
# The hand-written step takes tied layers, summing the gradients of both uses.

class _GradientRecorder:
    def __init__(self, module):
        self.parameters = list(module.parameters())
        self.steps = []

    def zero_grad(self):
        for parameter in self.parameters:
            parameter.grad = None

    def step(self):
        self.steps.append([parameter.grad.clone() for parameter in self.parameters])


NOISES = [ReconstructionLoss(), ReconstructionLoss("gaussian", 0.3),
          ReconstructionLoss("dropout", 0.3), ReconstructionLoss(loss="log_loss")]


@pytest.mark.parametrize("loss", NOISES, ids=["clean", "gaussian", "dropout", "log_loss"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("shape", [(13, (9, 7), 3), (6, (), 2), (20, (24,), 30)])
def test_tied_gradients_equal_autograd(shape, activation, loss):
    module = _tied(*shape, activation)
    twin = copy.deepcopy(module)
    fast = Trainer(module, loss, _GradientRecorder(module), batch_size=16,
                   noise_generator=torch.Generator().manual_seed(3))
    reference = Trainer(twin, loss, _GradientRecorder(twin), batch_size=16,
                        noise_generator=torch.Generator().manual_seed(3), fast_path=False)
    assert isinstance(fast.train_step, DenseStep)
    X = torch.rand(37, shape[0], generator=torch.Generator().manual_seed(1))
    for batch in (X[:16], X[16:32], X[32:], X[:1], X[:16]):
        fast_loss, _ = fast.train_step(batch, None)
        reference_loss, _ = reference.train_step(batch, None)
        torch.testing.assert_close(fast_loss, reference_loss.detach(), rtol=1e-5, atol=1e-6)
    for got_step, expected_step in zip(fast.optimizer.steps, reference.optimizer.steps,
                                       strict=True):
        for got, expected in zip(got_step, expected_step, strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert not fast.train_step.failed


def test_tied_epochs_of_adam_steps_equal_autograd():
    module = _tied(10, (8,), 3, "tanh")
    twin = copy.deepcopy(module)
    trainers = [Trainer(m, ReconstructionLoss("gaussian", 0.2), make_optimizer(m, 0.01, 0.01),
                        batch_size=16, shuffle_generator=torch.Generator().manual_seed(5),
                        noise_generator=torch.Generator().manual_seed(3), fast_path=fast)
                for m, fast in ((module, True), (twin, False))]
    assert isinstance(trainers[0].train_step, DenseStep)
    source = TensorSource(torch.randn(70, 10, generator=torch.Generator().manual_seed(2)))
    for _ in range(4):
        losses = [trainer.run_epoch(source)[0] for trainer in trainers]
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for got, expected in zip(module.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # Still tied after training: the decoder reads the trained encoder.
    assert_array_equal(module.decoder[0].weight.detach(), module.encoder[2].weight.detach().T)


@pytest.mark.parametrize("Estimator", DENSE)
def test_tied_estimators_fit_alike_on_both_paths(Estimator, monkeypatch):
    steps = []
    original = DenseStep.__call__
    monkeypatch.setattr(DenseStep, "__call__",
                        lambda self, *args: steps.append(self) or original(self, *args))
    X = np.random.RandomState(0).normal(size=(150, 12)).astype(np.float32)
    fitted = []
    for fast_path in (True, False):
        monkeypatch.setattr(Estimator, "_fast_path", fast_path)
        fitted.append(Estimator(3, hidden_layer_sizes=(16,), tied_weights=True, batch_size=32,
                                max_iter=6, random_state=0, device="cpu").fit(X))
    assert steps and not any(step.failed for step in steps)
    fast, reference = fitted
    assert_allclose(fast.loss_curve_, reference.loss_curve_, rtol=1e-5)
    assert_allclose(fast.transform(X), reference.transform(X), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tied_dense_inference_equals_the_modules(dtype):
    module = _tied(9, (12, 6), 3, "relu").to(dtype)
    fast = skae._fastpath.dense_inference(module)
    assert isinstance(fast, skae._fastpath.DenseInference)
    X = torch.randn(40, 9, dtype=dtype)
    with torch.inference_mode():
        for rows in (X, X[:7]):
            assert_allclose(fast(rows).clone(), module(rows), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- #
# The estimators.

ROUND_TRIPS = {
    "pickle": lambda model: pickle.loads(pickle.dumps(model)),
    "skops": lambda model: _skops_round_trip(model),
}


def _skops_round_trip(model):
    sio = pytest.importorskip("skops.io")
    payload = sio.dumps(model)
    return sio.loads(payload, trusted=sio.get_untrusted_types(data=payload))


@pytest.mark.parametrize("how", ROUND_TRIPS)
@pytest.mark.parametrize("init", ["random", "greedy"])
@pytest.mark.parametrize("Estimator", DENSE)
def test_a_saved_tied_model_is_the_fitted_one(digits, Estimator, init, how):
    X = digits[:120]
    model = Estimator(4, hidden_layer_sizes=(12,), tied_weights=True, init=init, max_iter=3,
                      random_state=0).fit(X)
    expected = (model.transform(X), model.score_samples(X))
    model.set_params(tied_weights=False, hidden_layer_sizes=(5,))
    loaded = ROUND_TRIPS[how](model)
    assert isinstance(loaded.module_.decoder[0], TiedLinear)
    assert loaded.module_.decoder[0].mirror is loaded.module_.encoder[2]
    assert_array_equal(loaded.transform(X), expected[0])
    assert_array_equal(loaded.score_samples(X), expected[1])


def test_warm_start_refuses_a_change_of_tied_weights(digits):
    model = AutoencoderTransformer(3, tied_weights=True, max_iter=2, warm_start=True,
                                   random_state=0).fit(digits[:100])
    model.set_params(tied_weights=False)
    with pytest.raises(ValueError, match=r"tied_weights=False \(fitted with True\)"):
        model.fit(digits[:100])


@pytest.mark.parametrize(("init", "ratio"), [("random", 1.0), ("auto", 1.05)])
def test_tied_weights_is_about_as_good_as_untied_on_few_rows(digits, init, ratio):
    # 300 training rows, the other 1497 held out, three splits and seeds.
    # Measured (mean held-out squared error): from a random start 0.0210
    # tied, 0.0233 untied; from PCA's (the default) 0.0188 tied, 0.0185 untied.
    errors = {False: [], True: []}
    for seed in range(3):
        X_train, X_test = train_test_split(digits, train_size=300, random_state=seed)
        for tied in (False, True):
            model = AutoencoderTransformer(8, tied_weights=tied, init=init,
                                           random_state=seed).fit(X_train)
            errors[tied].append(-model.score(X_test))
    assert np.mean(errors[True]) <= ratio * np.mean(errors[False]), errors


def test_the_docstrings_describe_both_parameters():
    for Estimator in DENSE:
        assert "tied_weights : bool, default=False" in Estimator.__doc__
        assert '"greedy"' in Estimator.__doc__


# --------------------------------------------------------------------------- #
# One layer at a time.

def test_the_greedy_stages_stack_into_the_network():
    module = _tied(10, (8, 6), 3, "relu", batch_norm=True)
    stages = greedy_stages(module)
    assert len(stages) == 3
    X = torch.randn(5, 10)
    module.eval()
    with torch.no_grad():
        codes = X
        for inputs, shallow in stages:
            assert_allclose(inputs(X), codes)  # each stage's input: the codes before it
            codes = shallow[0](codes)
        assert_allclose(codes, module.encoder(X))
    # The shallow autoencoders share the network's parameters.
    shared = {id(p) for _, shallow in stages for p in shallow.parameters()}
    assert shared == {id(p) for p in module.parameters()}


def test_a_later_stage_trains_its_layer_only():
    module = _tied(10, (8, 6), 3, "relu")
    inputs, shallow = greedy_stages(module)[1]
    loss, _ = CodeReconstruction(inputs)(shallow, torch.randn(7, 10), None, None)
    loss.backward()
    assert module.encoder[0].weight.grad is None  # the layer before it is fixed
    assert module.encoder[2].weight.grad is not None


def test_greedy_epochs_follow_a_step_budget():
    assert greedy_epochs(200, 1617, 200) == 112  # 9 steps an epoch: ~1000 steps
    assert greedy_epochs(200, 60_000, 200) == 5  # 300 steps an epoch: at least 5 epochs
    assert greedy_epochs(3, 1617, 200) == 3  # never more than max_iter


class _Phases(Callback):
    def __init__(self):
        self.begun, self.epochs = [], []

    def on_train_begin(self, *, name, phase, n_samples, batch_size, max_iter):
        self.begun.append((phase, max_iter))

    def __call__(self, record):
        self.epochs.append(record.phase)


@pytest.mark.parametrize("Estimator", DENSE)
@pytest.mark.parametrize("tied", [False, True])
def test_greedy_trains_one_phase_per_layer_then_the_network(digits, Estimator, tied):
    phases = _Phases()
    model = Estimator(4, hidden_layer_sizes=(16, 8), init="greedy", tied_weights=tied,
                      max_iter=3, callbacks=[phases], random_state=0).fit(digits[:200])
    assert phases.begun == [("greedy layer 1", 3), ("greedy layer 2", 3),
                            ("greedy layer 3", 3), ("fit", 3)]
    assert phases.epochs == ["greedy layer 1"] * 3 + ["greedy layer 2"] * 3 + \
        ["greedy layer 3"] * 3 + ["fit"] * 3
    assert model.n_iter_ == 3 and len(model.loss_curve_) == 3  # fine-tuning epochs only
    # A deep network that does not start at PCA: batch-normalised by default.
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.module_.modules()) == 4


class _StopAtFirstFitEpoch(Callback):
    def __call__(self, record):
        return record.phase == "fit"


@pytest.mark.parametrize("loss", ["squared_error", "log_loss"])
def test_the_greedy_start_is_better_than_a_random_one(digits, loss):
    X_train, X_test = train_test_split(digits, train_size=1000, random_state=0)
    errors = {}
    for init in ("random", "greedy"):
        model = AutoencoderTransformer(
            8, hidden_layer_sizes=(64, 32), init=init, batch_norm=False, loss=loss,
            max_iter=30, callbacks=[_StopAtFirstFitEpoch()], random_state=0).fit(X_train)
        assert model.n_iter_ == 1
        errors[init] = -model.score(X_test)
    assert errors["greedy"] < 0.8 * errors["random"], errors


def test_a_greedy_start_that_no_epoch_beat_is_not_trained_again(digits, monkeypatch):
    model = AutoencoderTransformer(4, hidden_layer_sizes=(8,), init="greedy", max_iter=2,
                                   random_state=0).fit(digits[:100])
    monkeypatch.setattr(type(model), "_train_greedily",
                        lambda *args: pytest.fail("the greedy start ran again"))
    model._restart_from_data(model._training, None, None)


def test_greedy_with_batch_norm_and_noise(digits):
    model = DenoisingAutoencoder(4, hidden_layer_sizes=(16, 8), init="greedy", batch_norm=True,
                                 noise="dropout", noise_level=0.2, max_iter=3,
                                 random_state=0).fit(digits[:200])
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.module_.modules()) == 4
    assert np.isfinite(model.score(digits))


@parametrize_with_checks([
    AutoencoderTransformer(tied_weights=True, init="greedy", hidden_layer_sizes=(8, 4),
                           max_iter=5, random_state=0),
    DenoisingAutoencoder(tied_weights=True, max_iter=5, random_state=0),
])
def test_tied_and_greedy_estimators_pass_scikit_learn_checks(estimator, check):
    check(estimator)
