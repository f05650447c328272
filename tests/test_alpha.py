"""alpha has scikit-learn's meaning: the gradient of MLPRegressor's objective."""

import numpy as np
import pytest
import torch
from sklearn.neural_network import MLPClassifier, MLPRegressor

from skae import (
    AutoencoderTransformer,
    ConvolutionalAutoencoder,
    DenoisingAutoencoder,
    VariationalAutoencoder,
)
from skae._engine import Trainer
from skae._optim import make_optimizer
from skae._sources import TensorSource


def _captured_gradients(estimator, X, batch_size, fast_path):
    """Per batch, what Adam steps on: every parameter's gradient plus its
    weight decay times the parameter, in the order of ``parameters()``; the
    weights do not move (the step is replaced by the capture)."""
    module = estimator.module_
    optimizer = make_optimizer(module, 1e-3, estimator._optimizer_settings()[1])
    captured = []

    def capture():
        by_parameter = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                by_parameter[p] = (p.grad + group["weight_decay"] * p).detach().double().clone()
        captured.append([by_parameter[p] for p in module.parameters()])

    optimizer.step = capture
    trainer = Trainer(module, estimator._loss(estimator._training), optimizer,
                      batch_size=batch_size, fast_path=fast_path)
    trainer.run_epoch(TensorSource(torch.as_tensor(X)))
    return captured


_SKLEARN_OUTPUT = {"squared_error": ("squared_error", "identity"),
                   "poisson": ("poisson", "exp"),
                   "log_loss": ("log_loss", "logistic")}  # MLPClassifier's multilabel output


def _mlp_regressor_gradients(module, X, alpha, loss="squared_error"):
    """MLPRegressor's gradients (``_backprop``) for the same linear network
    (for log_loss, MLPClassifier's, whose ``_backprop`` is the same method,
    on a multilabel logistic output)."""
    linears = [layer for half in (module.encoder, module.decoder) for layer in half
               if isinstance(layer, torch.nn.Linear)]
    mlp = MLPRegressor(hidden_layer_sizes=[layer.out_features for layer in linears[:-1]],
                       activation="identity", alpha=alpha)
    mlp.coefs_ = [layer.weight.detach().double().numpy().T.copy() for layer in linears]
    mlp.intercepts_ = [layer.bias.detach().double().numpy().copy() for layer in linears]
    mlp.n_layers_ = len(linears) + 1
    mlp.n_outputs_ = X.shape[1]
    mlp.loss, mlp.out_activation_ = _SKLEARN_OUTPUT[loss]
    X = X.astype(np.float64)
    activations = [X] + [None] * len(linears)
    deltas = [None] * len(linears)
    coef_grads = [np.empty_like(c) for c in mlp.coefs_]
    intercept_grads = [np.empty_like(b) for b in mlp.intercepts_]
    _, coef_grads, intercept_grads = mlp._backprop(X, X, None, activations, deltas,
                                                   coef_grads, intercept_grads)
    # In the order of module.parameters(): weight (out, in), bias, per layer.
    return [g for c, b in zip(coef_grads, intercept_grads) for g in (c.T, b)]


@pytest.mark.parametrize("loss, factor", [("squared_error", 2.0), ("log_loss", 1.0),
                                          ("poisson", 1.0)])
@pytest.mark.parametrize("fast_path", [True, False], ids=["hand-written", "autograd"])
@pytest.mark.parametrize("estimator_class", [AutoencoderTransformer, DenoisingAutoencoder])
def test_gradient_is_mlp_regressors_up_to_a_constant(estimator_class, fast_path, loss, factor):
    """Every batch's gradient (a short last one too) is MLPRegressor's on the same
    rows (half the squared error, half the Poisson deviance; MLPClassifier's
    binary log loss), times a constant (factor / n_features: the training loss
    is a mean over the features, and the squared error not halved), for
    weights and biases alike: the same objective, which Adam minimises alike."""
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(23, 6)).astype(np.float32)
    alpha = 0.7  # large, so that a penalty wrongly scaled shows
    kwargs = {"noise_level": 0.0} if estimator_class is DenoisingAutoencoder else {}
    estimator = estimator_class(n_components=2, hidden_layer_sizes=(4,), activation="identity",
                                alpha=alpha, max_iter=2, early_stopping=False, init="random",
                                loss=loss,
                                random_state=0, **kwargs)
    estimator.fit(X)
    batches = _captured_gradients(estimator, X, batch_size=10, fast_path=fast_path)
    assert len(batches) == 3  # 10, 10 and 3 rows
    for start, got in zip((0, 10, 20), batches):
        expected = _mlp_regressor_gradients(estimator.module_, X[start:start + 10], alpha, loss)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g.numpy(), factor / X.shape[1] * e, rtol=2e-4, atol=1e-6)


def _weight_decays_of_a_fit(monkeypatch, estimator, *args):
    """The weight decay of the penalised weights at every step of a fit."""
    from skae._optim import Adam

    decays = []
    step = Adam.step

    def recording_step(self):
        decays.append([g["weight_decay"] for g in self.param_groups if g.get("decayed")])
        return step(self)

    monkeypatch.setattr(Adam, "step", recording_step)
    estimator.fit(*args)
    return decays


def test_variational_penalty_is_alpha_over_batch_rows(monkeypatch):
    """The VAE's loss is per row and summed over features (scikit-learn's scale):
    its weight decay is alpha / n_batch_rows, a short last batch's too."""
    X = np.random.RandomState(0).normal(size=(20, 5)).astype(np.float32)
    vae = VariationalAutoencoder(n_components=2, hidden_layer_sizes=(4,), alpha=0.5,
                                 max_iter=1, batch_size=8, early_stopping=False,
                                 shuffle=False, random_state=0)
    decays = _weight_decays_of_a_fit(monkeypatch, vae, X)
    assert decays == [[0.5 / 8], [0.5 / 8], [0.5 / 4]]


def test_convolutional_penalty_is_two_alpha_over_rows_and_pixels(monkeypatch):
    X = np.random.RandomState(0).uniform(size=(12, 36)).astype(np.float32)
    conv = ConvolutionalAutoencoder(n_components=2, image_shape=(6, 6), channels=(2,),
                                    kernel_size=3, hidden_layer_sizes=(), alpha=0.5,
                                    max_iter=1, early_stopping=False, random_state=0)
    decays = _weight_decays_of_a_fit(monkeypatch, conv, X)
    assert decays == [[pytest.approx(2 * 0.5 / (12 * 36))]]


def test_classifier_penalty_is_mlp_classifiers(monkeypatch):
    """The classifier's cross-entropy is per row, as MLPClassifier's: its weight
    decay is alpha / n_batch_rows, the gradient of MLPClassifier's penalty."""
    from skae import AutoencoderClassifier

    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 4))
    y = np.arange(40) % 3
    alpha = 0.9
    classifier = AutoencoderClassifier(pretrain=False, freeze_encoder=False, alpha=alpha,
                                       batch_size=16, max_iter=1, early_stopping=False,
                                       random_state=0)
    decays = _weight_decays_of_a_fit(monkeypatch, classifier, X, y)
    assert [d[0] for d in decays] == [alpha / 16, alpha / 16, alpha / 8]
    # MLPClassifier's gradient of a softmax layer is the mean cross-entropy's
    # plus (alpha / n_rows) * W.
    mlp = MLPClassifier(hidden_layer_sizes=(), alpha=alpha, max_iter=1).fit(X, y)
    W = torch.tensor(mlp.coefs_[0], requires_grad=True)
    b = torch.tensor(mlp.intercepts_[0], requires_grad=True)
    torch.nn.functional.cross_entropy(torch.as_tensor(X) @ W + b, torch.as_tensor(y)).backward()
    coef_grads, intercept_grads = [np.empty_like(mlp.coefs_[0])], [np.empty_like(b.detach())]
    _, coef_grads, _ = mlp._backprop(X, np.eye(3)[y], None, [X, None], [None],
                                     coef_grads, intercept_grads)
    np.testing.assert_allclose(coef_grads[0], W.grad.numpy() + alpha / len(X) * mlp.coefs_[0],
                               rtol=1e-6)
