"""A training step for dense autoencoders with gradients written by hand.

For the small dense networks skae trains, an autograd step costs three times
its matrix products: recording the graph, walking it back, allocating every
intermediate and the gradients, a dozen small elementwise kernels. Those are
per-operation costs, not arithmetic. :class:`DenseStep` takes the same step for
a network that is a plain stack of :class:`torch.nn.Linear` layers (tied or not) and
elementwise activations (:class:`~skae._modules.MLPAutoencoder`) trained on a
:class:`ReconstructionLoss`: the forward pass, the loss and its gradient, and
both products of every layer's backward pass, each with the kernel autograd
would call (``addmm``, ``threshold_backward``, ``mse_loss_backward``...), into
buffers allocated once per batch size, on tensors that record no graph; then
the same optimizer step.

:func:`dense_step` decides, once per training call, whether a network and a
loss qualify; the engine's :class:`~skae._engine.Trainer` asks it and keeps
the autograd step (the reference) otherwise. No scikit-learn imports here.

The step and :class:`DenseInference` call private torch entry points
(``torch._C._nn.*``, the ``grad_input`` overloads of ``torch.ops.aten``, an
overload's ``_op``), which another torch release may rename or change. Any
failure of them is caught: a network whose rules cannot be bound keeps
autograd (and the modules for inference), and the first step that fails is
taken again through autograd, as every later one (see :class:`DenseStep`).
"""

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ._losses import LIKELIHOODS
from ._modules import MLPAutoencoder, TiedLinear, corrupt

_aten = torch.ops.aten
_MEAN = 1  # torch's Reduction::Mean
# The likelihoods whose gradient the hand-written step writes; others take autograd.
_CANONICAL = ("squared_error", "log_loss", "poisson")


@dataclass(frozen=True)
class ReconstructionLoss:
    """The loss of a network's output against its clean input, under a likelihood.

    ``loss`` names the likelihood of :mod:`skae._losses` (``"squared_error"``:
    the mean squared error); training minimises its
    :meth:`~skae._losses.Likelihood.training_loss`.

    The input is first corrupted by ``noise`` of strength ``noise_level``
    (see :func:`~skae._modules.corrupt`; ``None`` or ``0`` for none), drawn
    from the generator the engine passes. An instance is a loss function of
    the engine, ``loss(module, X, y, generator) -> (loss, parts)``, computed
    through autograd; being declared rather than written, it also lets the
    engine compute it and its gradients by hand (:func:`dense_step`).

    Parameters
    ----------
    noise : {"gaussian", "dropout"} or None, default=None
    noise_level : float, default=0.0
    loss : {"squared_error", "log_loss", "poisson"}, default="squared_error"
    """

    noise: str | None = None
    noise_level: float = 0.0
    loss: str = "squared_error"

    @property
    def noisy(self):
        return self.noise is not None and self.noise_level != 0

    def __call__(self, module, X, y, generator):
        noisy = corrupt(X, self.noise, self.noise_level, generator)
        # Every row has the same width, so the batch mean of the per-row
        # losses is one fused loss (mse_loss for the squared error).
        return LIKELIHOODS[self.loss].training_loss(module(noisy), X), {}


# --------------------------------------------------------------------------- #
# Activations. For each, ``forward(pre, post)`` gives the call that writes the
# activation of ``pre`` into ``post``, and ``backward(grad, pre, post)`` the one
# that turns the gradient with respect to ``post`` into the gradient with
# respect to ``pre``, in place, with the kernel of torch's own derivative
# formula. Where the derivative can be read from the result (``in_place``),
# ``pre`` and ``post`` are one buffer and the forward runs in place. The calls
# are bound once per batch size, so a step makes no Python call of its own.


@dataclass(frozen=True)
class _Activation:
    in_place: bool
    forward: object
    backward: object


def _kernel(overload):
    """The C++ callable behind an ``torch.ops.aten`` overload (one Python frame less)."""
    return getattr(overload, "_op", overload)


def _result_based(forward, backward, *arguments):
    """An activation computed in place, whose derivative ``backward(grad, result,
    *arguments)`` reads the result."""
    backward = _kernel(backward)
    return _Activation(
        True, lambda pre, post: partial(forward, post),
        lambda grad, pre, post: partial(backward, grad, post, *arguments, grad_input=grad))


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _activation(module):
    """The rule for an activation module, or None for one this step does not know."""
    kind = type(module)
    if kind is nn.ReLU:
        return _result_based(torch.relu_, _aten.threshold_backward.grad_input, 0)
    if kind is nn.Tanh:
        return _result_based(torch.tanh_, _aten.tanh_backward.grad_input)
    if kind is nn.Sigmoid:
        return _result_based(torch.sigmoid_, _aten.sigmoid_backward.grad_input)
    if kind is nn.LeakyReLU and module.negative_slope > 0:
        # With a positive slope the sign of the result is the sign of the input.
        slope = module.negative_slope
        return _result_based(partial(torch._C._nn.leaky_relu_, negative_slope=slope),
                             _aten.leaky_relu_backward.grad_input, slope, True)
    if kind in (nn.ELU, nn.SELU) and getattr(module, "alpha", 1.0) > 0:
        # elu_backward(grad, alpha, scale, input_scale, is_result, result)
        alpha, scale = (_SELU_ALPHA, _SELU_SCALE) if kind is nn.SELU else (module.alpha, 1.0)
        backward = _kernel(_aten.elu_backward.grad_input)
        return _Activation(
            True, lambda pre, post: partial(torch._C._nn.elu_, post, alpha, scale),
            lambda grad, pre, post: partial(backward, grad, alpha, scale, 1.0, True, post,
                                            grad_input=grad))
    if kind is nn.GELU:
        approximate = module.approximate
        backward = _kernel(_aten.gelu_backward.grad_input)
        return _Activation(
            False, lambda pre, post: partial(torch._C._nn.gelu, pre, approximate=approximate,
                                             out=post),
            lambda grad, pre, post: partial(backward, grad, pre, approximate=approximate,
                                            grad_input=grad))
    if kind is nn.Softplus:
        beta, threshold = module.beta, module.threshold
        backward = _kernel(_aten.softplus_backward.grad_input)
        return _Activation(
            False, lambda pre, post: partial(torch._C._nn.softplus, pre, beta, threshold,
                                             out=post),
            lambda grad, pre, post: partial(backward, grad, pre, beta, threshold,
                                            grad_input=grad))
    return None


def _has_hooks(module):
    return any(getattr(submodule, name, None)
               for submodule in module.modules()
               for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                            "_backward_pre_hooks"))


def _half_layers(half):
    """``[(linear, activation or None), ...]`` through an encoder or decoder, or None."""
    if type(half) is not nn.Sequential:
        return None
    layers = []
    for submodule in half:
        if (type(submodule) is nn.Linear and submodule.bias is not None) or \
                type(submodule) is TiedLinear:
            layers.append([submodule, None])
            continue
        rule = _activation(submodule)
        if rule is None or not layers or layers[-1][1] is not None:
            return None
        layers[-1][1] = rule
    return [tuple(layer) for layer in layers] or None


def _dense_halves(module):
    """The layers of an MLPAutoencoder's encoder and decoder (see
    :func:`_half_layers`), or None.

    Only the exact layer types are accepted: a subclass, a parametrisation or
    a hook may change what a layer computes. A decoder layer may be a
    :class:`~skae._modules.TiedLinear` of its mirror in the encoder (tied
    weights): the step writes the sum of the gradients of the weight's two
    uses.
    """
    if type(module) is not MLPAutoencoder or _has_hooks(module):
        return None
    encoder, decoder = _half_layers(module.encoder), _half_layers(module.decoder)
    return None if encoder is None or decoder is None else (encoder, decoder)


def _dense_layers(module):
    """``[(linear, activation or None), ...]`` through an MLPAutoencoder, or None."""
    halves = _guarded(_dense_halves, module)
    return None if halves is None else halves[0] + halves[1]


def _guarded(find_layers, module):
    """``find_layers(module)``, or None when binding the rules fails: a private
    torch entry point they name is missing or changed in this torch."""
    try:
        return find_layers(module)
    except Exception:  # noqa: BLE001 - any failure of a private entry point
        return None


class _DenseForward:
    """``half(X)`` for an encoder or decoder of dense layers, with no allocation
    per call: each layer's ``addmm`` writes into a buffer made at the first
    call (sized by its rows, the most any later call may pass) and the
    activation runs in it in place, where ``nn.Sequential`` allocates a new
    output for every layer and activation. The result is a view of the last
    buffer, overwritten by the next call: the caller copies it out first.
    The same kernels as :class:`torch.nn.Linear` and the activation modules.

    If a call fails (a private op of an activation), it and every later one
    run ``half``, the modules themselves.
    """

    def __init__(self, layers, half):
        self._layers = [(linear.weight.detach(), linear.bias.detach(), rule)
                        for linear, rule in layers]
        self._buffers = None
        self.half = half
        self.failed = False

    def __call__(self, X):
        if not self.failed:
            try:
                return self._forward(X)
            except Exception:  # noqa: BLE001 - any failure of a private op
                self.failed = True
                self._buffers = None
        return self.half(X)

    def _forward(self, X):
        n_rows = X.shape[0]
        if self._buffers is None or self._buffers[0][0].shape[0] < n_rows \
                or self._buffers[0][0].dtype != X.dtype:
            self._buffers = []
            for weight, _, rule in self._layers:
                pre = X.new_empty((n_rows, weight.shape[0]))
                post = pre if rule is None or rule.in_place else torch.empty_like(pre)
                self._buffers.append((pre, post))
        for (weight, bias, rule), (pre, post) in zip(self._layers, self._buffers):
            pre, post = pre[:n_rows], post[:n_rows]
            torch.addmm(bias, X, weight.t(), out=pre)
            if rule is not None:
                rule.forward(pre, post)()
            X = post
        return X


class DenseInference:
    """An :class:`~skae._modules.MLPAutoencoder`'s ``encoder`` and ``decoder``
    for inference in chunks, without per-chunk allocations (see
    :class:`_DenseForward`). Build one per inference call: its buffers belong
    to that call (calls from several threads must not share them).
    """

    def __init__(self, module, encoder_layers, decoder_layers):
        self.encoder = _DenseForward(encoder_layers, module.encoder)
        self.decoder = _DenseForward(decoder_layers, module.decoder)
        self.likelihood = module.likelihood

    def forward(self, X):
        return self.decoder(self.encoder(X))

    __call__ = forward


def dense_inference(module):
    """A :class:`DenseInference` of ``module``, or ``module`` itself when it is
    not a plain :class:`~skae._modules.MLPAutoencoder` (another network, hooks,
    an activation the table above does not know, a private torch entry point
    this torch lacks)."""
    halves = _guarded(_dense_halves, module)
    return module if halves is None else DenseInference(module, *halves)


def _autocast_enabled(device_type):
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" \
            else torch.is_autocast_enabled()


def dense_step(module, loss_fn, optimizer, noise_generator, fallback):
    """A :class:`DenseStep` for this network and loss, or None when they do not qualify.

    ``fallback(X_batch, y_batch)`` takes the step through autograd when the
    hand-written one fails.

    They qualify when ``loss_fn`` is a :class:`ReconstructionLoss` (of any
    likelihood of :mod:`skae._losses`), the
    network an :class:`~skae._modules.MLPAutoencoder` of float32 parameters
    that all train, on one CPU or CUDA device, with no hooks, and no autocast
    is active (the step computes in float32 whatever autocast asks).
    """
    if type(loss_fn) is not ReconstructionLoss:
        return None
    if loss_fn.noise not in (None, "gaussian", "dropout") or loss_fn.loss not in _CANONICAL:
        return None
    layers = _dense_layers(module)
    if not layers:
        return None
    parameters = list(module.parameters())
    device = parameters[0].device
    if device.type not in ("cpu", "cuda") or _autocast_enabled(device.type) or any(
            p.dtype != torch.float32 or p.device != device or not p.requires_grad
            for p in parameters):
        return None
    return DenseStep(layers, loss_fn, optimizer, noise_generator, fallback)


class _Plan:
    """The buffers of one step at one batch size, and the calls that fill them.

    ``forward`` holds, per layer, ``(bias, weight.T, affine output, activated
    output, activation call)``; ``backward``, from the last layer to the
    first, ``(gradient w.r.t. the layer's affine output, its transpose, the
    layer's input, weight, weight.grad, bias.grad, gradient w.r.t. the input,
    the previous activation's backward call, how to write weight.grad)``.
    The first layer's input is the batch, known only per step (None here),
    and takes no gradient.
    """

    def __init__(self, n_rows, layers, n_features, noisy, device):
        def empty(width, dtype=torch.float32):
            return torch.empty((n_rows, width), dtype=dtype, device=device)

        self.noise = empty(n_features) if noisy else None
        self.noisy = empty(n_features) if noisy else None
        self.keep = empty(n_features, torch.bool) if noisy else None
        pre, post = [], []  # each layer's affine output, and after its activation
        self.forward = []
        for layer in layers:
            pre.append(empty(layer.weight.shape[0]))
            in_place = layer.activation is None or layer.activation.in_place
            post.append(pre[-1] if in_place else empty(layer.weight.shape[0]))
            activation = None if layer.activation is None else \
                layer.activation.forward(pre[-1], post[-1])
            self.forward.append((layer.bias, layer.weight_t, pre[-1], post[-1], activation))
        self.output = post[-1]
        self.flat_output = self.output.view(-1)
        # grads[i]: the gradient with respect to layer i's output; the last
        # one is the output buffer itself (the loss's gradient overwrites it).
        grads = [empty(layer.weight.shape[0]) for layer in layers[:-1]] + [self.output]
        self.backward = []
        for i, layer in enumerate(layers):
            previous = layers[i - 1] if i else None
            activation = None if previous is None or previous.activation is None else \
                previous.activation.backward(grads[i - 1], pre[i - 1], post[i - 1])
            self.backward.append((grads[i], grads[i].t(), post[i - 1] if i else None,
                                  layer.weight, layer.weight_grad, layer.bias_grad,
                                  grads[i - 1] if i else None, activation, layer.write))
        self.backward.reverse()


# How a layer's backward pass writes its weight's gradient, ``grad.T @ input``:
_SET = 0  # into .grad (the weight's only use)
_ADD = 1  # added to .grad (a weight whose tied mirror, later in the stack, wrote first)
_SET_TRANSPOSED = 2  # into .grad as ``input.T @ grad`` (a tied layer: .grad is its mirror's)


@dataclass(frozen=True)
class _Layer:
    weight: torch.Tensor  # aliases of the parameters that record no graph
    weight_t: torch.Tensor
    bias: torch.Tensor
    weight_grad: torch.Tensor  # the parameters' .grad
    bias_grad: torch.Tensor
    activation: _Activation | None
    write: int = _SET


class DenseStep:
    """One optimizer step of a dense stack on :class:`ReconstructionLoss`, without autograd.

    Called as the engine's step, ``step(X_batch, y_batch) -> (loss, {})``.
    Gradients are written into each parameter's ``.grad`` (allocated here),
    then ``optimizer.step()`` runs as after ``backward()``. Noise is drawn
    from ``noise_generator`` with the calls of :func:`~skae._modules.corrupt`,
    in the same order, so both steps draw the same numbers.

    The first step that raises, whatever the exception (a private torch op
    missing or changed), is taken again by ``fallback`` (the engine's
    autograd step, same signature) from the same noise state, and so is
    every later step: none is lost or taken twice.
    """

    def __init__(self, layers, loss, optimizer, noise_generator, fallback):
        self.loss = loss
        self.optimizer = optimizer
        self.noise_generator = noise_generator
        self.fallback = fallback
        self.failed = False
        self.layers = []
        mirrored = {id(linear.mirror) for linear, _ in layers if type(linear) is TiedLinear}
        for linear, activation in layers:
            bias = linear.bias
            bias.grad = torch.empty_like(bias)
            if type(linear) is TiedLinear:
                # The mirror's weight, transposed; its .grad was made with it
                # (the encoder comes first), and this layer writes it first
                # (the backward pass runs from the output).
                weight_data = linear.mirror.weight.detach()
                self.layers.append(_Layer(weight_data.t(), weight_data, bias.detach(),
                                          linear.mirror.weight.grad, bias.grad, activation,
                                          _SET_TRANSPOSED))
                continue
            weight = linear.weight
            # The optimizer reads .grad; these are overwritten every step.
            weight.grad = torch.empty_like(weight)
            weight_data = weight.detach()
            self.layers.append(_Layer(weight_data, weight_data.t(), bias.detach(), weight.grad,
                                      bias.grad, activation,
                                      _ADD if id(linear) in mirrored else _SET))
        self.n_features = layers[0][0].in_features
        self.device = layers[0][0].weight.device
        self.grad_output = torch.ones((), device=self.device)
        self._plans = {}

    def _plan(self, n_rows):
        plan = self._plans.get(n_rows)
        if plan is None:
            if len(self._plans) >= 2:  # the full batch and one short one
                self._plans = {}
            plan = self._plans[n_rows] = _Plan(n_rows, self.layers, self.n_features,
                                               self.loss.noisy, self.device)
        return plan

    def _corrupted(self, X, plan):
        """``corrupt(X, noise, noise_level, generator)``, op for op, into the plan's buffers."""
        loss, generator = self.loss, self.noise_generator
        if not loss.noisy:
            return X
        noise, noisy = plan.noise, plan.noisy
        if loss.noise == "gaussian":
            torch.randn(noise.shape, generator=generator, out=noise)
            noise.mul_(loss.noise_level)
            return torch.add(X, noise, out=noisy)
        torch.rand(noise.shape, generator=generator, out=noise)
        torch.ge(noise, loss.noise_level, out=plan.keep)
        torch.mul(X, plan.keep, out=noisy)
        return noisy.div_(1.0 - loss.noise_level)

    def __call__(self, X_batch, y_batch):
        if self.failed:
            return self.fallback(X_batch, y_batch)
        # Noise is drawn before any private op runs: a step retaken through
        # autograd must draw it again from the same state.
        noise_state = self.noise_generator.get_state() if self.loss.noisy else None
        try:
            loss = self._gradients(X_batch)
        except Exception:  # noqa: BLE001 - any failure of a private op
            # Only .grad and the plan's buffers were written: the optimizer
            # has not stepped, and the autograd step overwrites .grad.
            self.failed = True
            self._plans = {}
            if noise_state is not None:
                self.noise_generator.set_state(noise_state)
            return self.fallback(X_batch, y_batch)
        self.optimizer.step()
        return loss, {}

    def _loss_and_its_gradient(self, plan, X_batch):
        """The loss of the raw output (``plan.output``), which its gradient
        then overwrites."""
        likelihood = self.loss.loss
        if likelihood == "squared_error":
            # The gradient, 2 (output - X) / n; the loss, the mean of
            # (output - X) ** 2, is n / 4 times the sum of its squares: one
            # pass over the gradient, where mse_loss takes two.
            _aten.mse_loss_backward.grad_input(self.grad_output, plan.output, X_batch, _MEAN,
                                               grad_input=plan.output)
            flat = plan.flat_output
            return torch.dot(flat, flat).mul_(flat.shape[0] / 4)
        # The canonical links: the gradient of the mean loss is
        # (link(output) - X) / n, sigmoid for log_loss, exp for poisson.
        loss = LIKELIHOODS[likelihood].training_loss(plan.output, X_batch)
        link = torch.sigmoid if likelihood == "log_loss" else torch.exp
        link(plan.output, out=plan.output)
        plan.output.sub_(X_batch).div_(plan.flat_output.shape[0])
        return loss

    def _gradients(self, X_batch):
        """The loss of this batch, its gradients written into every ``.grad``."""
        plan = self._plan(X_batch.shape[0])
        first_input = layer_input = self._corrupted(X_batch, plan)
        for bias, weight_t, affine, activated, activation in plan.forward:
            torch.addmm(bias, layer_input, weight_t, out=affine)
            if activation is not None:
                activation()
            layer_input = activated
        loss = self._loss_and_its_gradient(plan, X_batch)
        for (grad, grad_t, layer_input, weight, weight_grad, bias_grad, input_grad,
             activation, write) in plan.backward:
            layer_input = first_input if layer_input is None else layer_input
            if write == _SET:
                torch.mm(grad_t, layer_input, out=weight_grad)
            elif write == _SET_TRANSPOSED:
                torch.mm(layer_input.t(), grad, out=weight_grad)
            else:
                weight_grad.addmm_(grad_t, layer_input)
            torch.sum(grad, 0, out=bias_grad)
            if input_grad is not None:  # the batch itself takes no gradient
                torch.mm(grad, weight, out=input_grad)
                if activation is not None:
                    activation()
        return loss
