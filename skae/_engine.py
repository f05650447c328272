"""The one training loop shared by every skae estimator.

An estimator hands the engine a built network, a loss function and an
optimizer; the engine knows nothing else about it. The loop is a chain of
small steps, as in skorch: :func:`fit_loop` runs epochs and decides when to
stop, :meth:`Trainer.run_epoch` runs one pass over index batches of a seeded
permutation, and :meth:`Trainer.train_step` does one optimizer step.

Data arrive as one float32 tensor already on the device; batches are taken by
indexing it, so there is no per-sample Python and no DataLoader.
"""

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite."""


@dataclass
class EpochInfo:
    """What a callback sees at the end of an epoch."""

    epoch: int
    loss: float
    parts: dict
    validation_score: float | None
    improved: bool


@dataclass
class History:
    """The record of one call of :func:`fit_loop`."""

    loss_curve: list = field(default_factory=list)
    parts_curves: dict = field(default_factory=dict)
    validation_scores: list = field(default_factory=list)
    best_loss: float = math.inf
    best_validation_score: float = -math.inf
    n_epochs: int = 0
    stopped_early: bool = False


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
        device = self.param_groups[0]["params"][0].device
        self._fused = hasattr(torch, "_fused_adam_") and device.type in ("cpu", "cuda", "mps")

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
                except NotImplementedError:
                    # No fused kernel for this device (e.g. older MPS builds):
                    # dispatch fails before anything is written, so the plain
                    # formula can take this step and every later one.
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
    """:class:`Adam` with L2 penalty ``alpha`` on weights (not biases or norms)."""
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        (decay if parameter.ndim > 1 and name.endswith("weight") else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": alpha, "decayed": True},
              {"params": no_decay, "weight_decay": 0.0, "decayed": False}]
    return Adam([group for group in groups if group["params"]], lr=learning_rate)


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
    optimizer : torch.optim.Optimizer
    batch_size : int
    shuffle : bool
    shuffle_generator : torch.Generator
        CPU generator for the batch permutation.
    noise_generator : torch.Generator
        Generator on the module's device, passed to ``loss_fn``.
    """

    def __init__(self, module, loss_fn, optimizer, *, batch_size, shuffle,
                 shuffle_generator, noise_generator):
        self.module = module
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.shuffle_generator = shuffle_generator
        self.noise_generator = noise_generator

    def train_step(self, X_batch, y_batch):
        self.optimizer.zero_grad()
        loss, parts = self.loss_fn(self.module, X_batch, y_batch, self.noise_generator)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), parts

    def run_epoch(self, X, y=None):
        """One pass over ``X`` (and ``y``); returns the mean loss and parts."""
        n_samples = X.shape[0]
        if self.shuffle:
            order = torch.randperm(n_samples, generator=self.shuffle_generator).to(X.device)
        else:
            order = None
        self.module.train()
        total = torch.zeros((), device=X.device)
        part_totals = {}
        for start in range(0, n_samples, self.batch_size):
            stop = min(start + self.batch_size, n_samples)
            if order is None:
                X_batch = X[start:stop]
                y_batch = None if y is None else y[start:stop]
            else:
                # index_select copies whole rows; X[index] is ~3x slower per batch.
                index = order[start:stop]
                X_batch = X.index_select(0, index)
                y_batch = None if y is None else y.index_select(0, index)
            loss, parts = self.train_step(X_batch, y_batch)
            weight = stop - start
            total += loss * weight
            for name, value in parts.items():
                value = value.detach() * weight
                part_totals[name] = part_totals[name] + value if name in part_totals else value
        self.module.eval()
        # One synchronisation per epoch, not per step.
        mean_loss = total.item() / n_samples
        parts = {name: value.item() / n_samples for name, value in part_totals.items()}
        if not math.isfinite(mean_loss):
            raise TrainingDivergedError(
                f"The training loss became {mean_loss} (not finite). Scale the "
                "input (e.g. with StandardScaler or MinMaxScaler) or lower "
                "learning_rate_init."
            )
        return mean_loss, parts


def fit_loop(trainer, X, y=None, *, max_iter, tol, n_iter_no_change,
             validation=None, callbacks=(), first_epoch=1):
    """Train for up to ``max_iter`` epochs, stopping as scikit-learn's MLP does.

    Without ``validation``, training stops once the training loss has not
    improved by at least ``tol`` for ``n_iter_no_change`` consecutive epochs.
    With ``validation=(score_fn, X_val, y_val)`` the same rule applies to the
    validation score (greater is better), and the weights of the best epoch
    are restored at the end.

    Each callback is called as ``callback(EpochInfo)`` at the end of every
    epoch; a truthy return value stops training.
    """
    history = History()
    best_state = None
    no_improvement = 0
    best_criterion = -math.inf
    for epoch in range(first_epoch, first_epoch + max_iter):
        loss, parts = trainer.run_epoch(X, y)
        history.n_epochs += 1
        history.loss_curve.append(loss)
        for name, value in parts.items():
            history.parts_curves.setdefault(name, []).append(value)
        history.best_loss = min(history.best_loss, loss)
        if validation is not None:
            score_fn, X_val, y_val = validation
            score = float(score_fn(trainer.module, X_val, y_val))
            if not math.isfinite(score):
                raise TrainingDivergedError(
                    f"The validation score became {score} (not finite). Scale the "
                    "input or lower learning_rate_init."
                )
            history.validation_scores.append(score)
            criterion = score
        else:
            score = None
            criterion = -loss
        improved = criterion > best_criterion + tol
        if criterion > best_criterion:
            best_criterion = criterion
            if validation is not None:
                history.best_validation_score = score
                best_state = {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}
        no_improvement = 0 if improved else no_improvement + 1
        info = EpochInfo(epoch, loss, parts, score, improved)
        stop_requested = any([bool(callback(info)) for callback in callbacks])
        if no_improvement > n_iter_no_change:
            history.stopped_early = True
            break
        if stop_requested:
            history.stopped_early = True
            break
    if best_state is not None:
        trainer.module.load_state_dict(best_state)
    return history


# Row results of CPU BLAS (MKL) depend on more than the row: very few rows, or
# odd row counts under threads, take other kernels; and in narrow layers a row
# whose address is not 16-byte aligned sums in another order, so that a row's
# result changed (by up to 2e-4 relative, measured) with its position in the
# batch whenever the row stride was not a multiple of 4 floats. Inference
# therefore pads each chunk to a multiple of 8 rows, and gives every dense
# layer on the CPU an input whose row stride is a multiple of 4 floats (a view
# into a zero-padded copy). Both were measured to give bitwise the same row
# results for any chunking, row order and memory offset.
_ROW_ALIGN = 8
_FLOATS_PER_16_BYTES = 4


def _align_rows(module, args):
    (X,) = args
    if X.ndim != 2 or X.stride(0) % _FLOATS_PER_16_BYTES == 0 or X.stride(1) != 1:
        return None
    width = X.shape[1]
    padded = torch.nn.functional.pad(X, (0, -width % _FLOATS_PER_16_BYTES))
    return (padded[:, :width],)


@contextlib.contextmanager
def row_invariant_inference(module, device):
    """Eval mode, no autograd, and (on the CPU) row-aligned dense layer inputs."""
    handles = []
    if torch.device(device).type == "cpu":
        handles = [layer.register_forward_pre_hook(_align_rows)
                   for layer in module.modules() if isinstance(layer, torch.nn.Linear)]
    module.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for handle in handles:
            handle.remove()


def predict_in_chunks(function, X, device, chunk_size, out_dtype, *, module=None):
    """Apply ``function`` to row chunks of the array ``X`` without gradients.

    ``function`` maps a float32 tensor of rows on ``device`` to a tensor with
    one row per input row; ``module`` is the network it runs (by default
    ``function`` itself, or the module a bound method belongs to). Results are
    gathered on the CPU into one NumPy array of ``out_dtype``. Each chunk is
    copied into a buffer zero-padded to a multiple of ``_ROW_ALIGN`` rows and
    run under :func:`row_invariant_inference`, so that a row's result does
    not depend on the chunk it was computed in nor on its place there.
    """
    if module is None:
        module = function if isinstance(function, torch.nn.Module) else function.__self__
    n_samples = X.shape[0]
    chunk_size = max(_ROW_ALIGN, chunk_size - chunk_size % _ROW_ALIGN)
    staging_rows = min(chunk_size, n_samples + -n_samples % _ROW_ALIGN)
    staging = torch.zeros((staging_rows, *X.shape[1:]), dtype=torch.float32)
    out = None
    with row_invariant_inference(module, device):
        for start in range(0, n_samples, chunk_size):
            rows = X[start:start + chunk_size]
            n_rows = rows.shape[0]
            chunk = staging[:n_rows + -n_rows % _ROW_ALIGN]
            chunk.numpy()[:n_rows] = rows  # one copy, converting to float32
            chunk[n_rows:] = 0.0
            result = function(chunk.to(device))[:n_rows].to("cpu")
            if out is None:
                out = np.empty((n_samples, *result.shape[1:]), dtype=out_dtype)
            out[start:start + n_rows] = result.numpy()
    return out
