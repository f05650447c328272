"""The one training loop shared by every skae estimator.

An estimator hands the engine a built network, a loss function, an optimizer
and a source of batches (:mod:`skae._sources`); the engine knows nothing else
about it and speaks only of its own arguments. The loop is a chain of small
steps, as in skorch: :func:`fit_loop` runs epochs (train, validate, ask the
stopping rule of :mod:`skae._stopping`, tell the callbacks),
:meth:`Trainer.run_epoch` runs one pass over the batches of a source in a
seeded order, and :attr:`Trainer.train_step` does one optimizer step: through
autograd, or for a plain dense autoencoder through the hand-written step of
:mod:`skae._fastpath`. Ctrl-C is deferred to the end of a batch
(:func:`deferred_interrupts`).
"""

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field

import torch

from ._callbacks import EpochRecord, TrainingSummary
from ._fastpath import dense_step
from ._stopping import (
    CUT_LEARNING_RATE,
    STOP,
    DivergenceRule,
    StoppingRule,
    TrainingDivergedError,
)

__all__ = ["Trainer", "TrainingDivergedError", "Validation", "deferred_interrupts", "fit_loop",
           "resolve_batch_size"]


def resolve_batch_size(batch_size, n_rows, auto=200):
    """``"auto"`` is ``min(auto, n_rows)``; any size is clipped to ``n_rows``."""
    return min(auto if batch_size == "auto" else batch_size, n_rows)


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
        Rows per step (per replica with ``replicas``).
    shuffle_generator : torch.Generator or None
        CPU generator for the order of the rows in every epoch; None keeps
        the rows in order.
    noise_generator : torch.Generator or None
        Generator on the module's device, passed to ``loss_fn``.
    autocast_dtype : torch.dtype or None
        Run the forward pass and the loss under :func:`torch.autocast` with
        this dtype (``torch.bfloat16``); the weights, their gradients and the
        optimizer stay float32. None computes in float32.
    replicas : Replicas or None
        Train one model with the other processes of a torch.distributed
        group: this process steps on its shard of every epoch through
        DistributedDataParallel (whose gradient hooks need autograd), and
        the epoch's figures are summed over the replicas.
    fast_path : bool, default=True
        Let a network and loss that :func:`~skae._fastpath.dense_step`
        recognises train through its hand-written step; False always uses
        :meth:`autograd_step`. Both compute the same gradients to float
        rounding and draw the same random numbers. The hand-written step is
        never used under autocast or with replicas (DistributedDataParallel
        averages gradients through autograd's hooks). Should it fail (it calls
        private torch ops), that step and every later one run through
        :meth:`autograd_step`.

    Attributes
    ----------
    train_step : callable
        ``train_step(X_batch, y_batch) -> (loss, parts)``: one optimizer
        step, the hand-written one or :meth:`autograd_step`.
    """

    def __init__(self, module, loss_fn, optimizer, *, batch_size, shuffle_generator=None,
                 noise_generator=None, autocast_dtype=None, replicas=None, fast_path=True):
        self.module = module
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.shuffle_generator = shuffle_generator
        self.noise_generator = noise_generator
        self.autocast_dtype = autocast_dtype
        self.replicas = replicas
        self._replicated = None if replicas is None else replicas.wrap(module, loss_fn)
        #: The loss of the network as it was before its first step (on the
        #: first batch), and the mean square of that batch's values: the
        #: scales :class:`DivergenceRule` measures an epoch's loss against.
        self.starting_loss = self.data_scale = None
        self._penalty_rows = None
        # Batch normalisation has no statistics for a batch of one row.
        self._min_batch_rows = 2 if any(
            isinstance(submodule, torch.nn.modules.batchnorm._BatchNorm)
            for submodule in module.modules()) else 1
        self.train_step = (
            fast_path and replicas is None and autocast_dtype is None
            and dense_step(module, loss_fn, optimizer, noise_generator, self.autograd_step)
        ) or self.autograd_step

    def close(self):
        """Let go of the DistributedDataParallel wrapper now.

        Its reducer holds the process group, and the trainer sits in a
        reference cycle (``train_step`` may be its own bound method): left to
        the garbage collector, the wrapper would be freed at a random later
        moment, after the group was destroyed or a peer had exited, and the
        group's destructor would wait for that peer for ever.
        """
        self._replicated = None

    @property
    def learning_rate(self):
        return self.optimizer.param_groups[0]["lr"] if self.optimizer.param_groups else math.nan

    def scale_learning_rate(self, factor):
        for group in self.optimizer.param_groups:
            group["lr"] *= factor

    def set_learning_rate(self, value):
        for group in self.optimizer.param_groups:
            group["lr"] = value

    def _loss(self, X_batch, y_batch):
        if self._replicated is not None:
            return self._replicated(X_batch, y_batch, self.noise_generator)
        return self.loss_fn(self.module, X_batch, y_batch, self.noise_generator)

    def autograd_step(self, X_batch, y_batch):
        """One optimizer step through autograd: the reference every step matches."""
        self.optimizer.zero_grad()
        if self.autocast_dtype is None:
            loss, parts = self._loss(X_batch, y_batch)
        else:
            with torch.autocast(X_batch.device.type, dtype=self.autocast_dtype):
                loss, parts = self._loss(X_batch, y_batch)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), parts

    def run_epoch(self, source, stop_requested=lambda: False):
        """One pass over ``source``; returns the mean loss and parts.

        ``stop_requested()`` is asked after every batch; when it says yes the
        epoch ends there, and the means cover the rows it trained on. With
        replicas it is not asked (every replica must run the same steps; the
        loop asks them all together after the epoch), and the means are over
        the rows of every replica.
        """
        self.module.train()
        total = None
        part_totals = {}
        n_seen = 0
        shard = None if self.replicas is None else self.replicas.shard
        replicated = self.replicas is not None
        world_size = 1 if shard is None else self.replicas.world_size
        for X_batch, y_batch in source.batches(self.batch_size, self.shuffle_generator, shard):
            if X_batch.shape[0] < self._min_batch_rows:
                continue
            # The L2 penalty is per row of the batch (scikit-learn's alpha /
            # n_batch_rows); replicas average their gradients over them all.
            n_rows = X_batch.shape[0] * world_size
            if n_rows != self._penalty_rows:
                self.optimizer.scale_penalty(n_rows)
                self._penalty_rows = n_rows
            loss, parts = self.train_step(X_batch, y_batch)
            if self.starting_loss is None:  # the loss is computed before the step
                self.starting_loss = float(loss)
                self.data_scale = float(X_batch.detach().to(torch.float32).square().mean())
            weight = X_batch.shape[0]
            n_seen += weight
            total = loss * weight if total is None else total + loss * weight
            for name, value in parts.items():
                value = value.detach() * weight
                part_totals[name] = part_totals[name] + value if name in part_totals else value
            if not replicated and stop_requested():
                break
        self.module.eval()
        if total is None:
            raise ValueError(
                "Batch normalisation needs batches of at least 2 rows, and this epoch had "
                "none: give at least 2 training rows and batch_size >= 2, or set "
                "batch_norm=False.")
        # One synchronisation per epoch, not per step.
        if replicated:
            names = list(part_totals)
            sums = self.replicas.sum([total.item(), n_seen,
                                      *[part_totals[name].item() for name in names]])
            return sums[0] / sums[1], {name: value / sums[1]
                                       for name, value in zip(names, sums[2:])}
        mean_loss = total.item() / n_seen
        parts = {name: value.item() / n_seen for name, value in part_totals.items()}
        return mean_loss, parts


@dataclass
class Validation:
    """What early stopping scores each epoch on.

    ``score_fn(module, X_batch, y_batch, generator)`` returns one score per
    row (greater is better); the epoch's score is their mean over
    ``source``, computed in batches of ``batch_size`` rows without
    gradients. ``score_fn`` may instead return ``(scores, scored)``, with
    ``scored`` a boolean mask of the rows that have a score (a classifier's
    labelled rows among held-out unlabelled ones): the mean is then over
    those. ``generator`` is a new generator from ``generator_factory``
    at every scoring (None without one), so that a score drawing random
    numbers (a denoising error on corrupted rows) draws the same ones each
    epoch and the epochs are compared on equal terms. With ``replicas`` each
    replica scores its share of the rows and the sums are all-reduced, so
    that all get the same score.
    """

    score_fn: object
    source: object
    batch_size: int
    replicas: object = None
    generator_factory: object = None

    def score(self, module):
        module.eval()
        total, n_rows = 0.0, 0
        shard = None if self.replicas is None else self.replicas.shard_without_padding
        generator = None if self.generator_factory is None else self.generator_factory()
        with torch.inference_mode():
            for X_batch, y_batch in self.source.batches(self.batch_size, shard=shard):
                scores = self.score_fn(module, X_batch, y_batch, generator)
                if isinstance(scores, tuple):
                    scores, scored = scores
                    scores = scores[scored]
                total += float(scores.sum())
                n_rows += scores.shape[0]
        if self.replicas is not None:
            total, n_rows = self.replicas.sum([total, n_rows])
        if n_rows == 0:
            raise ValueError(
                "None of the held-out rows has a validation score (none of them is "
                "labelled): raise validation_fraction, or set early_stopping=False.")
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
    initial_validation_score: float | None = None
    n_epochs: int = 0
    stop_reason: str = "max_iter"
    message: str = ""


def _notify(callbacks, hook, *args, **kwargs):
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args, **kwargs)


def _check_finite(value, what, epoch):
    if not math.isfinite(value):
        raise TrainingDivergedError(f"The {what} became {value} (not finite) in epoch {epoch}.")


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def fit_loop(trainer, source, *, max_iter, tol, n_iter_no_change, validation=None,
             callbacks=(), first_epoch=1, phase="fit", name="model", single_call=False,
             lr_reductions=1, lr_factor=0.1, relative_tol=True, cosine=False):
    """Train for up to ``max_iter`` epochs, stopping once progress stalls.

    For each epoch: train on every batch (:meth:`Trainer.run_epoch`),
    validate, ask the rules, tell the callbacks. The criterion is minus the
    training loss, or with a :class:`Validation` its score (greater is
    better); a :class:`~skae._stopping.StoppingRule` with ``tol``,
    ``n_iter_no_change``, ``relative_tol`` and ``lr_reductions`` reads it
    and decides when to multiply the learning rate by ``lr_factor`` and when
    training has converged; a :class:`~skae._stopping.DivergenceRule` stops a
    loss that explodes. With a :class:`Validation`, the network as it is
    before the first epoch is scored too and counts as a candidate, and the
    weights of the best one are restored at the end: training never returns
    a network that scores worse on the held-out rows than the one it began
    with.

    With ``cosine``, the learning rate follows a cosine from its value at
    the call's start down towards zero at epoch ``max_iter`` (Loshchilov and
    Hutter's annealing, one cycle, set at the start of each epoch); the
    stopping rule then stops at the first stall instead of cutting the rate.

    Each callback is called as ``callback(EpochRecord)`` after every epoch; a
    truthy return value stops training. Callbacks with ``on_train_begin`` and
    ``on_train_end`` methods (see :class:`skae.Callback`) hear of the phase's
    start and end. ``single_call`` marks a one-epoch call (``partial_fit``):
    the records then say ``max_iter=None``.

    A first Ctrl-C (SIGINT) ends training after the current batch, keeping
    (with validation: restoring the best of) the weights so far; during the
    first epoch of the call it raises :class:`KeyboardInterrupt` instead.

    With ``trainer.replicas``, a Ctrl-C or a callback's stop on any replica
    stops them all at the end of the epoch, and the losses and scores the
    rules read are the replicas' common ones: every replica stops at the
    same epoch with the same weights.

    Raises
    ------
    TrainingDivergedError
        When the loss, the validation score or a weight is not finite, or
        the loss explodes (see :class:`~skae._stopping.DivergenceRule`).
    """
    history = History()
    divergence = DivergenceRule()
    module = trainer.module
    replicas = trainer.replicas
    last_epoch = first_epoch + max_iter - 1
    max_epoch = None if single_call else last_epoch
    _notify(callbacks, "on_train_begin", name=name, phase=phase, n_samples=source.n_rows,
            batch_size=trainer.batch_size, max_iter=max_epoch)
    best_state = None
    rule = StoppingRule(tol, n_iter_no_change, relative=relative_tol,
                        lr_reductions=0 if cosine else lr_reductions)
    base_rate = trainer.learning_rate
    if validation is not None:
        rule.best = validation.score(module)
        _check_finite(rule.best, "validation score", first_epoch - 1)
        history.initial_validation_score = history.best_validation_score = rule.best
        history.best_epoch = first_epoch - 1
        best_state = _weights(module)
    with deferred_interrupts() as interrupt:
        for epoch in range(first_epoch, last_epoch + 1):
            started = time.perf_counter()
            if cosine:
                done = (epoch - first_epoch) / max_iter
                trainer.set_learning_rate(base_rate * 0.5 * (1.0 + math.cos(math.pi * done)))
            # Train.
            loss, parts = trainer.run_epoch(source, lambda: interrupt.requested)
            if replicas is not None:
                interrupt.requested = replicas.any(interrupt.requested)
            if interrupt.requested and epoch == first_epoch:
                interrupt.requested = False
                raise KeyboardInterrupt
            _check_finite(loss, "training loss", epoch)
            if epoch == first_epoch:
                start = [trainer.starting_loss, trainer.data_scale]
                if replicas is not None:  # every replica must judge alike
                    start = [value / replicas.world_size for value in replicas.sum(start)]
                divergence.start(*start)
            divergence.check(loss, epoch)
            history.n_epochs += 1
            history.loss_curve.append(loss)
            for part, value in parts.items():
                history.parts_curves.setdefault(part, []).append(value)
            history.best_loss = min(history.best_loss, loss)
            # Validate.
            score = None
            if validation is not None:
                score = validation.score(module)
                _check_finite(score, "validation score", epoch)
                history.validation_scores.append(score)
            # Ask the rule.
            verdict = rule.update(-loss if score is None else score)
            if verdict.best:
                history.best_epoch = epoch
                if validation is not None:
                    history.best_validation_score = score
                    best_state = _weights(module)
            # Tell the callbacks.
            record = EpochRecord(
                phase=phase, epoch=epoch, max_iter=max_epoch, loss=loss, parts=dict(parts),
                validation_score=score, improved=verdict.improved,
                seconds=time.perf_counter() - started, learning_rate=trainer.learning_rate)
            stop_requested = any([bool(callback(record)) for callback in callbacks])
            if replicas is not None:
                stop_requested = replicas.any(stop_requested)
            n_done = epoch - first_epoch + 1
            if interrupt.requested:
                interrupt.requested = False  # honoured; an outer phase may go on
                history.stop_reason = "interrupted"
                history.message = f"interrupted (KeyboardInterrupt) after {n_done} epochs"
                break
            if verdict.action == CUT_LEARNING_RATE:
                trainer.scale_learning_rate(lr_factor)
            elif verdict.action == STOP:
                criterion = "training loss" if validation is None else "validation score"
                history.stop_reason = "converged"
                history.message = (f"converged after {n_done} epochs (the {criterion} "
                                   f"{rule.describe()} at learning rate "
                                   f"{trainer.learning_rate:.3g})")
                break
            if stop_requested:
                history.stop_reason = "callback"
                history.message = f"stopped by a callback after {n_done} epochs"
                break
        else:
            history.message = (f"one epoch over {source.n_rows} samples" if single_call else
                               f"max_iter={max_iter} reached after {max_iter} epochs")
            if cosine and not single_call:
                history.stop_reason = "annealed"
                history.message += " (the cosine schedule's end)"
    if cosine:
        trainer.set_learning_rate(base_rate)
    if best_state is not None:
        module.load_state_dict(best_state)
        kept = (f"epoch {history.best_epoch}" if history.best_epoch >= first_epoch
                else "the starting network")
        history.message += (f"; kept the weights of {kept} (best validation score "
                            f"{history.best_validation_score:.6g})")
    for parameter_name, parameter in module.named_parameters():
        if not torch.isfinite(parameter).all():
            raise TrainingDivergedError(
                f"The weights ({parameter_name}) stopped being finite by epoch "
                f"{first_epoch + history.n_epochs - 1}.")
    _notify(callbacks, "on_train_end", TrainingSummary(
        name=name, phase=phase, n_epochs=history.n_epochs, reason=history.stop_reason,
        message=history.message))
    return history
