"""The one training loop shared by every skae estimator.

An estimator hands the engine a built network, a loss function, an optimizer
and a source of batches; the engine knows nothing else about it and speaks
only of its own arguments. The loop is a chain of small steps, as in skorch:
:func:`fit_loop` runs epochs and decides when to stop, :meth:`Trainer.run_epoch`
runs one pass over the batches of a :class:`TensorSource` in a seeded order,
and :meth:`Trainer.train_step` does one optimizer step: through autograd, or for a
plain dense autoencoder through the hand-written step of :mod:`skae._fastpath`.

In-memory data arrive as one float32 tensor already on the device; batches are
taken by indexing it, so there is no per-sample Python and no DataLoader.
"""

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ._callbacks import EpochRecord, TrainingSummary
from ._fastpath import dense_step


class TrainingDivergedError(ValueError):
    """Training produced a loss, a validation score or weights that are not finite.

    Raised by ``fit`` and ``partial_fit``, which then leave the estimator as
    it was before the call. The usual causes are input that is not scaled
    (use :class:`~sklearn.preprocessing.StandardScaler` or
    :class:`~sklearn.preprocessing.MinMaxScaler`) and a learning rate that is
    too high (lower ``learning_rate_init``).
    """


class Adam:
    """Adam [1]_ with a coupled L2 penalty, as :class:`torch.optim.Adam` computes it.

    skae steps its own optimizer because every method of ``torch.optim``'s
    optimizers imports ``torch._dynamo`` on first use, which costs one to
    several seconds in a fresh process: longer than a whole fit of the digits.
    The update calls torch's fused Adam kernel where the device has one (the
    kernel ``torch.optim.Adam(fused=True)`` runs) and a plain tensor
    implementation of the same formula elsewhere.

    Parameters
    ----------
    param_groups : list of dict
        Each with ``"params"`` and ``"weight_decay"``; other keys are kept.
    lr : float
        Learning rate, stored per group as ``"lr"`` (change it there).
    betas : tuple of float, default=(0.9, 0.999)
    eps : float, default=1e-8

    References
    ----------
    .. [1] D. P. Kingma and J. Ba, "Adam: A method for stochastic
       optimization", ICLR 2015.
    """

    def __init__(self, param_groups, lr, betas=(0.9, 0.999), eps=1e-8):
        self.param_groups = [dict(group, lr=lr, params=list(group["params"]))
                             for group in param_groups]
        self.betas = betas
        self.eps = eps
        # Per group: step counts (one float32 vector, one entry a parameter),
        # first and second moments; built on the first step.
        self._moments = [None] * len(self.param_groups)
        self._plan = self._plan_key = None
        device = self.param_groups[0]["params"][0].device if self.param_groups else None
        self._fused = (hasattr(torch, "_fused_adam_") and device is not None
                       and device.type in ("cpu", "cuda", "mps"))

    def zero_grad(self):
        for group in self.param_groups:
            for parameter in group["params"]:
                parameter.grad = None

    def _init_moments(self, params):
        return (
            torch.zeros(len(params), dtype=torch.float32, device=params[0].device),
            [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
            [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
        )

    def _make_plan(self, active):
        """Kernel calls for this step: one per distinct (lr, weight_decay).

        Each call costs microseconds, about as much as the whole update of a
        small network, so groups with equal hyper-parameters (e.g. weights and
        biases when alpha=0) share one. ``active[i]`` lists the indices of the
        parameters of group ``i`` that have a gradient.
        """
        calls = {}
        for index, group in enumerate(self.param_groups):
            if not active[index]:
                continue
            if self._moments[index] is None:
                self._moments[index] = self._init_moments(group["params"])
            step_counts, exp_avgs, exp_avg_sqs = self._moments[index]
            # 0-d views into the group's step vector: the fused kernel reads
            # one tensor a parameter, and one add_ advances them all.
            steps = step_counts.unbind()
            call = calls.setdefault((group["lr"], group["weight_decay"]), ([], [], [], []))
            for i in active[index]:
                call[0].append(group["params"][i])
                call[1].append(exp_avgs[i])
                call[2].append(exp_avg_sqs[i])
                call[3].append(steps[i])
        return list(calls.items())

    @torch.no_grad()
    def step(self):
        groups = self.param_groups
        everything = all(p.grad is not None for group in groups for p in group["params"])
        key = tuple((group["lr"], group["weight_decay"]) for group in groups)
        if everything and self._plan_key == key:
            plan = self._plan
        else:
            # Parameters that took no part in the loss are not moved and their
            # step counts do not advance (as in torch.optim).
            active = [[i for i, p in enumerate(group["params"]) if p.grad is not None]
                      for group in groups]
            plan = self._make_plan(active)
            self._plan, self._plan_key = (plan, key) if everything else (None, None)
        if everything:
            for step_counts, _, _ in self._moments:
                step_counts.add_(1)
        else:
            for _, (_, _, _, steps) in plan:
                for step in steps:
                    step.add_(1)
        beta1, beta2 = self.betas
        for (lr, weight_decay), (params, exp_avgs, exp_avg_sqs, steps) in plan:
            grads = [p.grad for p in params]
            if self._fused:
                try:
                    torch._fused_adam_(
                        params, grads, exp_avgs, exp_avg_sqs, [], steps,
                        lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
                        eps=self.eps, amsgrad=False, maximize=False,
                    )
                    continue
                except Exception:  # noqa: BLE001 - any failure of a private op
                    # No fused kernel for this device or torch build (older
                    # releases, MPS), or a changed private signature: the op
                    # checks its arguments before it writes anything, so the
                    # plain formula can take this step and every later one.
                    self._fused = False
            self._reference_step(params, grads, exp_avgs, exp_avg_sqs, steps, lr, weight_decay)

    def _reference_step(self, params, grads, exp_avgs, exp_avg_sqs, steps, lr, weight_decay):
        beta1, beta2 = self.betas
        for param, grad, exp_avg, exp_avg_sq, step in zip(
                params, grads, exp_avgs, exp_avg_sqs, steps):
            if weight_decay:
                grad = grad.add(param, alpha=weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            count = float(step)
            bias_correction1 = 1 - beta1 ** count
            bias_correction2 = 1 - beta2 ** count
            denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)

    def state_dict(self):
        """Hyper-parameters and moments (tensors on their device, not copied)."""
        return {
            "param_groups": [{k: v for k, v in group.items() if k != "params"}
                             for group in self.param_groups],
            "moments": [None if moments is None
                        else (moments[0].detach(), *[[t.detach() for t in seq]
                                                     for seq in moments[1:]])
                        for moments in self._moments],
        }

    def load_state_dict(self, state):
        for group, saved in zip(self.param_groups, state["param_groups"]):
            group.update(saved)
        self._moments = []
        for group, moments in zip(self.param_groups, state["moments"]):
            if moments is None:
                self._moments.append(None)
                continue
            device = group["params"][0].device
            step_counts, exp_avgs, exp_avg_sqs = moments
            self._moments.append((
                step_counts.to(device, dtype=torch.float32, copy=True),
                [t.to(device, copy=True) for t in exp_avgs],
                [t.to(device, copy=True) for t in exp_avg_sqs],
            ))
        self._plan = self._plan_key = None


def make_optimizer(module, learning_rate, alpha):
    """:class:`Adam` over the trainable parameters, with L2 penalty ``alpha`` on
    weights (not on biases or normalisation parameters)."""
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.ndim > 1 and name.endswith("weight") else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": alpha, "decayed": True},
              {"params": no_decay, "weight_decay": 0.0, "decayed": False}]
    return Adam([group for group in groups if group["params"]], lr=learning_rate)


# --------------------------------------------------------------------------- #
# Loop helpers.

def n_held_out(n_rows, fraction):
    """Rows held out for validation: ``ceil(fraction * n_rows)``."""
    return math.ceil(fraction * n_rows)


def split_rows(n_rows, fraction, generator):
    """A seeded split into ``(kept, held_out)`` row indices (CPU tensors)."""
    order = torch.randperm(n_rows, generator=generator)
    n_validation = n_held_out(n_rows, fraction)
    return order[n_validation:], order[:n_validation]


def resolve_batch_size(batch_size, n_rows, auto=200):
    """``"auto"`` is ``min(auto, n_rows)``; any size is clipped to ``n_rows``."""
    return min(auto if batch_size == "auto" else batch_size, n_rows)


class TensorSource:
    """Training rows held as one tensor on the device (and targets), batched by index.

    Parameters
    ----------
    X : torch.Tensor of shape (n_rows, ...)
    y : torch.Tensor of shape (n_rows, ...) or None
    """

    def __init__(self, X, y=None):
        self.X = X
        self.y = y

    @property
    def n_rows(self):
        return self.X.shape[0]

    def take(self, index):
        """The rows at ``index`` (a CPU index tensor), as a new source."""
        index = index.to(self.X.device)
        return TensorSource(self.X.index_select(0, index),
                            None if self.y is None else self.y.index_select(0, index))

    def batches(self, batch_size, generator=None):
        """``(X_batch, y_batch)`` pairs covering every row once, in a random
        order drawn from ``generator``, or in order when it is None."""
        X, y, n_rows = self.X, self.y, self.n_rows
        order = None if generator is None else torch.randperm(
            n_rows, generator=generator).to(X.device)
        for start in range(0, n_rows, batch_size):
            stop = min(start + batch_size, n_rows)
            if order is None:
                yield X[start:stop], None if y is None else y[start:stop]
            else:
                # index_select copies whole rows; X[index] is ~3x slower per batch.
                index = order[start:stop]
                yield X.index_select(0, index), None if y is None else y.index_select(0, index)


# --------------------------------------------------------------------------- #
# One step, one epoch.

class Trainer:
    """Runs minibatch training of one module with one loss.

    Parameters
    ----------
    module : torch.nn.Module
        The network, already on its device.
    loss_fn : callable
        ``loss_fn(module, X_batch, y_batch, generator) -> (loss, parts)``
        where ``loss`` is a scalar tensor (mean over the batch) and ``parts``
        a dict of named scalar tensors to record per epoch (may be empty).
        ``generator`` is a device generator for any noise the loss draws.
    optimizer : Adam
    batch_size : int
    shuffle_generator : torch.Generator or None
        CPU generator for the order of the rows in every epoch; None keeps
        the rows in order.
    noise_generator : torch.Generator or None
        Generator on the module's device, passed to ``loss_fn``.
    fast_path : bool, default=True
        Let a network and loss that :func:`~skae._fastpath.dense_step`
        recognises train through its hand-written step; False always uses
        :meth:`autograd_step` (needed by anything that relies on autograd's
        hooks, such as DistributedDataParallel). Both steps compute the same
        gradients to float rounding and draw the same random numbers.
    cuda_graph : bool, default=False
        Replay the hand-written step from a CUDA graph for full batches
        (:class:`~skae._fastpath.GraphedStep`; opt-in, experimental).

    Attributes
    ----------
    train_step : callable
        ``train_step(X_batch, y_batch) -> (loss, parts)``: one optimizer
        step, the hand-written one or :meth:`autograd_step`.
    """

    def __init__(self, module, loss_fn, optimizer, *, batch_size, shuffle_generator=None,
                 noise_generator=None, fast_path=True, cuda_graph=False):
        self.module = module
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.shuffle_generator = shuffle_generator
        self.noise_generator = noise_generator
        self.train_step = (fast_path and dense_step(
            module, loss_fn, optimizer, noise_generator, cuda_graph=cuda_graph,
            batch_size=batch_size)) or self.autograd_step

    @property
    def learning_rate(self):
        return self.optimizer.param_groups[0]["lr"] if self.optimizer.param_groups else math.nan

    def autograd_step(self, X_batch, y_batch):
        """One optimizer step through autograd: the reference every step matches."""
        self.optimizer.zero_grad()
        loss, parts = self.loss_fn(self.module, X_batch, y_batch, self.noise_generator)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), parts

    def run_epoch(self, source, stop_requested=lambda: False):
        """One pass over ``source``; returns the mean loss and parts.

        ``stop_requested()`` is asked after every batch; when it says yes the
        epoch ends there, and the means cover the rows it trained on.
        """
        self.module.train()
        total = None
        part_totals = {}
        n_seen = 0
        for X_batch, y_batch in source.batches(self.batch_size, self.shuffle_generator):
            loss, parts = self.train_step(X_batch, y_batch)
            weight = X_batch.shape[0]
            n_seen += weight
            total = loss * weight if total is None else total + loss * weight
            for name, value in parts.items():
                value = value.detach() * weight
                part_totals[name] = part_totals[name] + value if name in part_totals else value
            if stop_requested():
                break
        self.module.eval()
        # One synchronisation per epoch, not per step.
        mean_loss = total.item() / n_seen
        parts = {name: value.item() / n_seen for name, value in part_totals.items()}
        return mean_loss, parts


@dataclass
class Validation:
    """What early stopping scores each epoch on.

    ``score_fn(module, X_batch, y_batch)`` returns one score per row
    (greater is better); the epoch's score is their mean over ``source``,
    computed in batches of ``batch_size`` rows without gradients.
    """

    score_fn: object
    source: TensorSource
    batch_size: int

    def score(self, module):
        module.eval()
        total, n_rows = 0.0, 0
        with torch.inference_mode():
            for X_batch, y_batch in self.source.batches(self.batch_size):
                total += float(self.score_fn(module, X_batch, y_batch).sum())
                n_rows += X_batch.shape[0]
        return total / n_rows


# --------------------------------------------------------------------------- #
# Interrupts.

class _InterruptFlag:
    requested = False


_active_flag = None


@contextlib.contextmanager
def deferred_interrupts():
    """Turn Ctrl-C (SIGINT) into a request that the loop honours between batches.

    Yields a flag whose ``requested`` becomes True on the first SIGINT; a
    second one raises :class:`KeyboardInterrupt` at once. Only the main
    thread receives signals, and only torch's default handler is replaced
    (a handler installed by the user or a framework is left alone); nested
    loops share the outer flag.
    """
    global _active_flag
    if _active_flag is not None or threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield _active_flag or _InterruptFlag()
        return
    flag = _InterruptFlag()

    def handler(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    _active_flag = flag
    try:
        yield flag
    finally:
        _active_flag = None
        signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------- #
# The epoch loop.

@dataclass
class History:
    """The record of one call of :func:`fit_loop`."""

    loss_curve: list = field(default_factory=list)
    parts_curves: dict = field(default_factory=dict)
    validation_scores: list = field(default_factory=list)
    best_loss: float = math.inf
    best_validation_score: float = -math.inf
    best_epoch: int | None = None
    n_epochs: int = 0
    stop_reason: str = "max_iter"
    message: str = ""

    @property
    def stopped_early(self):
        return self.stop_reason != "max_iter"


def _notify(callbacks, hook, *args, **kwargs):
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args, **kwargs)


def _check_finite(value, what, epoch):
    if not math.isfinite(value):
        raise TrainingDivergedError(f"The {what} became {value} (not finite) in epoch {epoch}.")


def fit_loop(trainer, source, *, max_iter, tol, n_iter_no_change, validation=None,
             callbacks=(), first_epoch=1, phase="fit", name="model", single_call=False):
    """Train for up to ``max_iter`` epochs, stopping as scikit-learn's MLP does.

    Without ``validation``, training stops once the training loss has not
    improved by more than ``tol`` for ``n_iter_no_change`` consecutive
    epochs. With a :class:`Validation` the same rule applies to its score
    (greater is better), and the weights of the best epoch are restored at
    the end.

    Each callback is called as ``callback(EpochRecord)`` after every epoch; a
    truthy return value stops training. Callbacks with ``on_train_begin`` and
    ``on_train_end`` methods (see :class:`skae.Callback`) hear of the phase's
    start and end. ``single_call`` marks a one-epoch call (``partial_fit``):
    the records then say ``max_iter=None``.

    A first Ctrl-C (SIGINT) ends training after the current batch, keeping
    (with validation: restoring the best of) the weights so far; during the
    first epoch of the call it raises :class:`KeyboardInterrupt` instead.

    Raises
    ------
    TrainingDivergedError
        When the loss, the validation score or a weight is not finite.
    """
    history = History()
    module = trainer.module
    best_state = None
    best_criterion = -math.inf
    no_improvement = 0
    last_epoch = first_epoch + max_iter - 1
    criterion_name = "training loss" if validation is None else "validation score"
    _notify(callbacks, "on_train_begin", name=name, phase=phase, n_samples=source.n_rows,
            batch_size=trainer.batch_size, max_iter=None if single_call else last_epoch)
    with deferred_interrupts() as interrupt:
        for epoch in range(first_epoch, last_epoch + 1):
            started = time.perf_counter()
            loss, parts = trainer.run_epoch(source, lambda: interrupt.requested)
            if interrupt.requested and epoch == first_epoch:
                interrupt.requested = False
                raise KeyboardInterrupt
            _check_finite(loss, "training loss", epoch)
            history.n_epochs += 1
            history.loss_curve.append(loss)
            for part, value in parts.items():
                history.parts_curves.setdefault(part, []).append(value)
            history.best_loss = min(history.best_loss, loss)
            score = None
            criterion = -loss
            if validation is not None:
                score = validation.score(module)
                _check_finite(score, "validation score", epoch)
                history.validation_scores.append(score)
                criterion = score
            improved = criterion > best_criterion + tol
            if criterion > best_criterion:
                best_criterion = criterion
                history.best_epoch = epoch
                if validation is not None:
                    history.best_validation_score = score
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            no_improvement = 0 if improved else no_improvement + 1
            record = EpochRecord(
                phase=phase, epoch=epoch, max_iter=None if single_call else last_epoch,
                loss=loss, parts=dict(parts), validation_score=score, improved=improved,
                seconds=time.perf_counter() - started, learning_rate=trainer.learning_rate)
            stop_requested = any([bool(callback(record)) for callback in callbacks])
            n_done = epoch - first_epoch + 1
            if interrupt.requested:
                interrupt.requested = False  # honoured; an outer phase may go on
                history.stop_reason = "interrupted"
                history.message = f"interrupted (KeyboardInterrupt) after {n_done} epochs"
                break
            if no_improvement > n_iter_no_change:
                history.stop_reason = "converged"
                history.message = (
                    f"converged after {n_done} epochs (the {criterion_name} did not improve "
                    f"by more than tol={tol:g} for {n_iter_no_change} epochs)")
                break
            if stop_requested:
                history.stop_reason = "callback"
                history.message = f"stopped by a callback after {n_done} epochs"
                break
        else:
            history.message = (f"one epoch over {source.n_rows} samples" if single_call else
                               f"max_iter={max_iter} reached after {max_iter} epochs")
    if best_state is not None:
        module.load_state_dict(best_state)
        history.message += (f"; kept the weights of epoch {history.best_epoch} (best "
                            f"validation score {history.best_validation_score:.6g})")
    for parameter_name, parameter in module.named_parameters():
        if not torch.isfinite(parameter).all():
            raise TrainingDivergedError(
                f"The weights ({parameter_name}) stopped being finite by epoch "
                f"{first_epoch + history.n_epochs - 1}.")
    _notify(callbacks, "on_train_end", TrainingSummary(
        name=name, phase=phase, n_epochs=history.n_epochs, reason=history.stop_reason,
        message=history.message))
    return history


# --------------------------------------------------------------------------- #
# Inference.

def widest_row(module, n_features):
    """The most values one input row occupies in the input or any layer's output.

    Found by running one zero row through ``module`` (in eval mode, without
    gradients) and recording every submodule's output; used to size the
    row chunks of inference.
    """
    widths = [n_features]

    def record(_module, _inputs, output):
        for tensor in output if isinstance(output, tuple) else (output,):
            if isinstance(tensor, torch.Tensor) and tensor.ndim > 0:
                widths.append(tensor[0].numel())

    device = next(module.parameters()).device
    was_training = module.training
    handles = [submodule.register_forward_hook(record) for submodule in module.modules()]
    try:
        module.eval()
        with torch.inference_mode():
            module(torch.zeros(1, n_features, device=device))
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    return max(widths)


def predict_in_chunks(function, X, device, chunk_size, dtype):
    """Apply ``function`` to row chunks of the array ``X`` without gradients.

    ``function`` maps a tensor of rows on ``device`` to a tensor with one row
    per input row. Each chunk is converted to ``dtype`` (float32 or float64)
    once, on its way to the device; results are gathered on the CPU into one
    NumPy array of ``dtype``.

    Rows do not depend on the other rows of their chunk, so results agree
    whatever the chunk size to rounding: not bitwise, because BLAS kernels
    (MKL's among them) pick their summation order by matrix size and CPU.
    """
    dtype = np.dtype(dtype)
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    n_samples = X.shape[0]
    out = buffer = None
    with torch.inference_mode():
        for start in range(0, n_samples, chunk_size):
            rows = X[start:start + chunk_size]
            if buffer is None:
                # One copy of each chunk into memory torch allocated, converting
                # the dtype on the way: aligned alike in every call, so that a
                # repeated call repeats its result bitwise. The buffer serves
                # every chunk, so its pages are faulted in once, and a chunk
                # the size of a cache stays in it from the copy to the product.
                buffer = torch.empty((rows.shape[0], *X.shape[1:]), dtype=torch_dtype)
            chunk = buffer[:rows.shape[0]]
            chunk.numpy()[...] = rows
            result = function(chunk.to(device)).to("cpu")
            if out is None:
                out = np.empty((n_samples, *result.shape[1:]), dtype=dtype)
            out[start:start + rows.shape[0]] = result.numpy()
    return out
