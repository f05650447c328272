"""The hand-written dense step against autograd, its reference.

Gradients, losses and random draws of :class:`skae._fastpath.DenseStep` must
equal those of :meth:`skae._engine.Trainer.autograd_step` to float rounding
(not bitwise: the two may multiply the same matrices with other
transpositions, and BLAS kernels round by shape and CPU).
"""

import copy

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from torch import nn

import skae._fastpath
from skae import AutoencoderTransformer, ConvolutionalAutoencoder, DenoisingAutoencoder
from skae._engine import Trainer
from skae._fastpath import DenseStep, ReconstructionLoss, dense_step
from skae._modules import (
    ACTIVATIONS,
    ConvAutoencoder,
    MLPAutoencoder,
    MLPVariationalAutoencoder,
)
from skae._optim import make_optimizer
from skae._sources import TensorSource

GRADIENT_TOLERANCE = dict(rtol=1e-5, atol=1e-6)


class _GradientRecorder:
    """An optimizer that records the gradients it is asked to apply."""

    def __init__(self, module):
        self.parameters = list(module.parameters())
        self.steps = []

    def zero_grad(self):
        for parameter in self.parameters:
            parameter.grad = None

    def step(self):
        self.steps.append([parameter.grad.clone() for parameter in self.parameters])


def _twins(n_features, hidden, n_components, activation, seed=0):
    torch.manual_seed(seed)  # tests may use the global generator
    module = MLPAutoencoder(n_features, hidden, n_components, activation)
    return module, copy.deepcopy(module)


def _trainers(module, twin, loss, optimizers, batch_size=16, seed=3):
    fast = Trainer(module, loss, optimizers[0], batch_size=batch_size,
                   noise_generator=torch.Generator().manual_seed(seed))
    reference = Trainer(twin, loss, optimizers[1], batch_size=batch_size,
                        noise_generator=torch.Generator().manual_seed(seed), fast_path=False)
    assert isinstance(fast.train_step, DenseStep)
    assert fast.train_step != reference.train_step == reference.autograd_step
    return fast, reference


NOISES = [ReconstructionLoss(), ReconstructionLoss("gaussian", 0.3),
          ReconstructionLoss("dropout", 0.3)]


@pytest.mark.parametrize("loss", NOISES, ids=["clean", "gaussian", "dropout"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("shape", [(13, (9, 7), 3), (6, (), 2), (20, (24,), 30), (1, (), 1)])
def test_gradients_and_losses_equal_autograd(shape, activation, loss):
    module, twin = _twins(*shape, activation)
    fast, reference = _trainers(module, twin, loss,
                                (_GradientRecorder(module), _GradientRecorder(twin)))
    X = torch.randn(37, shape[0], generator=torch.Generator().manual_seed(1))
    # Full batches, the last short one, a single row, and a full one again
    # (a second plan, then the first one reused).
    for batch in (X[:16], X[16:32], X[32:], X[:1], X[:16]):
        fast_loss, fast_parts = fast.train_step(batch, None)
        reference_loss, reference_parts = reference.train_step(batch, None)
        torch.testing.assert_close(fast_loss, reference_loss.detach(), **GRADIENT_TOLERANCE)
        assert fast_parts == reference_parts == {}
        assert not fast_loss.requires_grad
    for fast_grads, reference_grads in zip(fast.optimizer.steps, reference.optimizer.steps,
                                           strict=True):
        for got, expected in zip(fast_grads, reference_grads, strict=True):
            torch.testing.assert_close(got, expected, **GRADIENT_TOLERANCE)
    # The same numbers were drawn: both generators are in the same state.
    assert torch.equal(fast.noise_generator.get_state(), reference.noise_generator.get_state())
    # The batch was not modified in place.
    assert torch.equal(X, torch.randn(37, shape[0], generator=torch.Generator().manual_seed(1)))
    # The hand-written step itself ran: it did not fall back to autograd (on
    # another torch, .ci/floor's, its private ops must still hold).
    assert not fast.train_step.failed


@pytest.mark.parametrize("alpha", [0.0, 0.01])
@pytest.mark.parametrize("loss", NOISES, ids=["clean", "gaussian", "dropout"])
def test_epochs_of_adam_steps_equal_autograd(alpha, loss):
    module, twin = _twins(10, (8,), 3, "tanh")
    fast, reference = _trainers(module, twin, loss, (make_optimizer(module, 0.01, alpha),
                                                     make_optimizer(twin, 0.01, alpha)))
    for trainer in (fast, reference):
        trainer.shuffle_generator = torch.Generator().manual_seed(5)
    source = TensorSource(torch.randn(70, 10, generator=torch.Generator().manual_seed(2)))
    for _ in range(4):
        fast_loss, _ = fast.run_epoch(source)
        reference_loss, _ = reference.run_epoch(source)
        assert fast_loss == pytest.approx(reference_loss, rel=1e-5)
    for got, expected in zip(module.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert not fast.train_step.failed


def _fit_both(Estimator, X, monkeypatch, method="fit", **params):
    fitted = []
    for fast_path in (True, False):
        monkeypatch.setattr(Estimator, "_fast_path", fast_path)
        estimator = Estimator(**params)
        if method == "fit":
            estimator.fit(X)
        else:
            for block in np.array_split(X, 3):
                estimator.partial_fit(block)
        fitted.append(estimator)
    return fitted


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("Estimator, params, method", [
    (AutoencoderTransformer, dict(alpha=0.0), "fit"),
    (AutoencoderTransformer, dict(alpha=1e-3, activation="gelu"), "fit"),
    (AutoencoderTransformer, dict(hidden_layer_sizes=(), activation="identity"), "fit"),
    (AutoencoderTransformer, dict(early_stopping=True, n_iter_no_change=2), "fit"),
    (AutoencoderTransformer, dict(), "partial_fit"),
    (DenoisingAutoencoder, dict(noise="gaussian", noise_level=0.2), "fit"),
    (DenoisingAutoencoder, dict(noise="dropout", noise_level=0.2, alpha=1e-3), "fit"),
])
def test_estimators_fit_alike_on_both_paths(Estimator, params, method, monkeypatch):
    steps = []
    original = DenseStep.__call__
    monkeypatch.setattr(DenseStep, "__call__",
                        lambda self, *args: steps.append(self) or original(self, *args))
    X = np.random.RandomState(0).normal(size=(150, 12)).astype(np.float32)
    params = dict(dict(n_components=3, hidden_layer_sizes=(16,), batch_size=32, max_iter=6,
                       random_state=0, device="cpu"), **params)
    fast, reference = _fit_both(Estimator, X, monkeypatch, method, **params)
    assert steps, "the fast path was not taken"
    assert not any(step.failed for step in steps), "the fast path fell back to autograd"
    assert fast.n_iter_ == reference.n_iter_
    assert_allclose(fast.loss_curve_, reference.loss_curve_, rtol=1e-5)
    if fast.validation_scores_ is not None:
        assert_allclose(fast.validation_scores_, reference.validation_scores_, rtol=1e-5)
    for (name, got), expected in zip(fast.module_.state_dict().items(),
                                     reference.module_.state_dict().values(), strict=True):
        assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
    assert_allclose(fast.transform(X), reference.transform(X), rtol=1e-4, atol=1e-5)


def test_convolutional_autoencoder_keeps_autograd_with_the_declared_loss(monkeypatch):
    monkeypatch.setattr(DenseStep, "__call__", None)  # would fail if called
    X = np.random.RandomState(0).uniform(size=(20, 16)).astype(np.float32)
    model = ConvolutionalAutoencoder(2, channels=(2,), hidden_layer_sizes=(), max_iter=2,
                                     noise="gaussian", random_state=0, device="cpu")
    assert model._training_loss == ReconstructionLoss("gaussian", 0.1)
    with pytest.warns(Warning):
        model.fit(X)
    assert np.isfinite(model.loss_curve_).all()


def _adam(module):
    return make_optimizer(module, 1e-3, 0.0)


def _never(X_batch, y_batch):
    raise AssertionError("the dense step fell back to autograd")


def test_only_plain_dense_stacks_and_the_declared_loss_qualify():
    loss = ReconstructionLoss()
    module = MLPAutoencoder(6, (4,), 2, "relu")
    assert isinstance(dense_step(module, loss, _adam(module), None, _never), DenseStep)
    # A loss written as a function, though equal, is not recognised.
    assert dense_step(module, lambda *args: loss(*args), _adam(module), None, _never) is None
    others = [
        MLPVariationalAutoencoder(6, (4,), 2, "relu"),
        ConvAutoencoder((1, 4, 4), (2,), 3, (), 2, "relu"),
        nn.Sequential(nn.Linear(6, 2), nn.Linear(2, 6)),  # not an MLPAutoencoder
        MLPAutoencoder(6, (4,), 2, "relu").double(),
    ]
    frozen = MLPAutoencoder(6, (4,), 2, "relu")
    frozen.encoder[0].weight.requires_grad_(False)
    hooked = MLPAutoencoder(6, (4,), 2, "relu")
    hooked.decoder[0].register_forward_hook(lambda *args: None)
    unknown = MLPAutoencoder(6, (4,), 2, "relu")
    unknown.encoder[1] = nn.Hardswish()
    extra = MLPAutoencoder(6, (4,), 2, "relu")
    extra.encoder.append(nn.Dropout(0.5))
    biasless = MLPAutoencoder(6, (4,), 2, "relu")
    biasless.encoder[0] = nn.Linear(6, 4, bias=False)
    for other in [*others, frozen, hooked, unknown, extra, biasless]:
        assert dense_step(other, loss, _adam(other), None, _never) is None, other


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_forcing_autograd(monkeypatch):
    module = MLPAutoencoder(6, (4,), 2, "relu")
    trainer = Trainer(module, ReconstructionLoss(), _adam(module), batch_size=4,
                      fast_path=False)
    assert trainer.train_step == trainer.autograd_step
    X = np.random.RandomState(0).normal(size=(30, 6))
    monkeypatch.setattr(DenseStep, "__call__", None)  # would fail if called
    monkeypatch.setattr(AutoencoderTransformer, "_fast_path", False)
    AutoencoderTransformer(2, max_iter=2, device="cpu").fit(X)


class _FailingOp:
    """Stands for a ``torch.ops.aten`` op whose ``grad_input`` overload raises
    from its ``n_good + 1``-th call on, as a private op changed in another
    torch release would."""

    def __init__(self, op, n_good):
        self.op, self.n_good, self.calls = op, n_good, 0

    @property
    def grad_input(self):
        def call(*args, **kwargs):
            self.calls += 1
            if self.calls > self.n_good:
                raise RuntimeError("this overload changed in this torch")
            return self.op.grad_input(*args, **kwargs)
        return call


def _assert_same_model(got, expected, X):
    assert got.n_iter_ == expected.n_iter_
    assert_allclose(got.loss_curve_, expected.loss_curve_, rtol=1e-5)
    for (name, value), reference in zip(got.module_.state_dict().items(),
                                        expected.module_.state_dict().values(), strict=True):
        assert_allclose(value.numpy(), reference.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
    assert_allclose(got.transform(X), expected.transform(X), rtol=1e-4, atol=1e-5)
    assert_allclose(got.score_samples(X), expected.score_samples(X), rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("Estimator, params, n_good", [
    (AutoencoderTransformer, dict(), 0),
    (DenoisingAutoencoder, dict(noise="gaussian", noise_level=0.2), 7),
    (DenoisingAutoencoder, dict(noise="dropout", noise_level=0.2, alpha=1e-3), 7),
])
def test_a_failing_private_op_hands_training_to_autograd_for_good(Estimator, params, n_good,
                                                                  monkeypatch):
    """The step that fails (the first, or one in the second epoch, after its
    noise was drawn) is taken through autograd, as every later one: the same
    model as autograd's, no step lost or taken twice, the op never retried."""
    X = np.random.RandomState(0).normal(size=(150, 12)).astype(np.float32)
    params = dict(dict(n_components=3, hidden_layer_sizes=(16,), batch_size=32, max_iter=6,
                       random_state=0, device="cpu"), **params)
    with monkeypatch.context() as patch:
        patch.setattr(Estimator, "_fast_path", False)
        reference = Estimator(**params).fit(X)
    failing = _FailingOp(torch.ops.aten.mse_loss_backward, n_good)
    monkeypatch.setattr(torch.ops.aten, "mse_loss_backward", failing)
    model = Estimator(**params).fit(X)
    assert failing.calls == n_good + 1
    _assert_same_model(model, reference, X)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("breakage", ["raises", "missing"])
def test_a_broken_private_activation_falls_back_in_training_and_inference(breakage,
                                                                           monkeypatch):
    """``torch._C._nn.leaky_relu_`` (the fast path's, not nn.LeakyReLU's) fails
    when called, or is missing when the rules are bound: training and
    inference run through the modules and give the fast path's results."""
    X = np.random.RandomState(0).normal(size=(150, 12)).astype(np.float32)
    params = dict(n_components=3, hidden_layer_sizes=(16,), activation="leaky_relu",
                  batch_size=32, max_iter=4, early_stopping=False, random_state=0,
                  device="cpu")
    reference = AutoencoderTransformer(**params).fit(X)
    calls = []
    if breakage == "raises":
        def broken(*args, **kwargs):
            calls.append(args)
            raise RuntimeError("this op changed in this torch")

        monkeypatch.setattr(torch._C._nn, "leaky_relu_", broken)
    else:
        monkeypatch.delattr(torch._C._nn, "leaky_relu_")
    model = AutoencoderTransformer(**params).fit(X)
    # Tried once in training, never again there; then once by each half of the
    # one inference pass fit makes (score's density, skae._likelihood): an
    # inference call tries its fast forward once.
    assert len(calls) == 3 * (breakage == "raises")
    _assert_same_model(model, reference, X)


def test_unknown_noise_is_refused_by_the_reference_and_not_taken_by_the_fast_path():
    loss = ReconstructionLoss("salt", 0.1)
    module = MLPAutoencoder(6, (4,), 2, "relu")
    assert dense_step(module, loss, _adam(module), None, _never) is None
    with pytest.raises(ValueError, match="noise must be"):
        loss(module, torch.zeros(2, 6), None, None)


def test_batch_sizes_that_come_and_go_step_as_autograd():
    """The step keeps buffers for two batch sizes (the full batch and a short
    one): a third size replaces them, and sizes that come back are rebuilt."""
    module, twin = _twins(6, (4,), 2, "relu")
    fast, reference = _trainers(module, twin, ReconstructionLoss("dropout", 0.3),
                                (_GradientRecorder(module), _GradientRecorder(twin)))
    generator = torch.Generator().manual_seed(4)
    for n_rows in (8, 3, 8, 5, 8, 3, 5):
        batch = torch.randn(n_rows, 6, generator=generator)
        torch.testing.assert_close(fast.train_step(batch, None)[0],
                                   reference.train_step(batch, None)[0].detach(),
                                   **GRADIENT_TOLERANCE)
    for fast_grads, reference_grads in zip(fast.optimizer.steps, reference.optimizer.steps,
                                           strict=True):
        for got, expected in zip(fast_grads, reference_grads, strict=True):
            torch.testing.assert_close(got, expected, **GRADIENT_TOLERANCE)
    assert not fast.train_step.failed


def test_no_dense_step_under_autocast():
    module = MLPAutoencoder(6, (4,), 2, "relu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert dense_step(module, ReconstructionLoss(), _adam(module), None, _never) is None
    assert dense_step(module, ReconstructionLoss(), _adam(module), None, _never) is not None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("loss", NOISES, ids=["clean", "gaussian", "dropout"])
def test_gradients_equal_autograd_on_cuda(loss):
    module, twin = _twins(13, (9, 7), 3, "relu")
    module, twin = module.cuda(), twin.cuda()
    fast = Trainer(module, loss, _GradientRecorder(module), batch_size=16,
                   noise_generator=torch.Generator("cuda").manual_seed(3))
    reference = Trainer(twin, loss, _GradientRecorder(twin), batch_size=16,
                        noise_generator=torch.Generator("cuda").manual_seed(3),
                        fast_path=False)
    assert isinstance(fast.train_step, DenseStep)
    X = torch.randn(37, 13, device="cuda")
    for batch in (X[:16], X[32:]):
        fast.train_step(batch, None)
        reference.train_step(batch, None)
    for fast_grads, reference_grads in zip(fast.optimizer.steps, reference.optimizer.steps):
        for got, expected in zip(fast_grads, reference_grads):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert not fast.train_step.failed


def test_module_has_no_sklearn_imports():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(skae._fastpath))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert not any(name.startswith("sklearn") for name in imported)


# --------------------------------------------------------------------------- #
# Inference into preallocated buffers.

@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dense_inference_equals_the_modules(activation, dtype):
    torch.manual_seed(0)
    module = MLPAutoencoder(9, (12, 6), 3, activation).to(dtype)
    fast = skae._fastpath.dense_inference(module)
    assert isinstance(fast, skae._fastpath.DenseInference)
    X = torch.randn(40, 9, dtype=dtype)
    tolerance = dict(rtol=1e-6, atol=1e-7) if dtype == torch.float32 else {}
    with torch.inference_mode():
        # A first, larger call sizes the buffers; smaller ones use their views.
        for rows in (X, X[:7], X[3:40], X[:1]):
            codes = fast.encoder(rows).clone()
            assert_allclose(codes, module.encoder(rows), **tolerance)
            assert_allclose(fast.decoder(codes).clone(), module.decoder(codes), **tolerance)
            assert_allclose(fast(rows).clone(), module(rows), **tolerance)
    assert not fast.encoder.failed and not fast.decoder.failed  # no fallback to the modules


def test_dense_inference_keeps_other_networks():
    torch.manual_seed(0)
    for module in (MLPVariationalAutoencoder(6, (8,), 2, "relu"),
                   ConvAutoencoder((1, 8, 8), (4,), 3, (), 2, "relu")):
        assert skae._fastpath.dense_inference(module) is module
    hooked = MLPAutoencoder(6, (8,), 2, "relu")
    hooked.encoder[0].register_forward_hook(lambda *args: None)
    assert skae._fastpath.dense_inference(hooked) is hooked


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_transform_goes_through_dense_inference(monkeypatch):
    X = np.random.RandomState(0).normal(size=(300, 8))
    model = AutoencoderTransformer(2, hidden_layer_sizes=(6,), max_iter=3, tol=0,
                                   random_state=0, device="cpu").fit(X)
    with torch.inference_mode():
        expected = model.module_.encoder(torch.as_tensor(X, dtype=torch.float32)).numpy()
    calls = []
    original = skae._fastpath.DenseInference.__init__

    def record(self, *halves):
        calls.append(halves)
        original(self, *halves)

    monkeypatch.setattr(skae._fastpath.DenseInference, "__init__", record)
    assert_allclose(model.transform(X.astype(np.float32)), expected, rtol=1e-5, atol=1e-6)
    assert len(calls) == 1
