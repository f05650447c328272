"""Epoch records, the callback protocol and the built-in progress display.

Torch-free and estimator-free: the engine calls these, estimators only pass
them through. A callback is any callable taking an :class:`EpochRecord`; a
truthy return value stops training. A :class:`Callback` subclass may also
hear when a training phase begins and ends.
"""

import dataclasses
import math
import sys
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EpochRecord:
    """What a callback sees at the end of every epoch.

    Attributes
    ----------
    phase : str
        The training phase: ``"fit"``, ``"partial_fit"``, ``"greedy layer
        1"``, ``"greedy layer 2"``... before ``"fit"`` with ``init="greedy"``,
        or for :class:`~skae.AutoencoderClassifier` ``"pretraining"`` and
        ``"classifier head"``.
    epoch : int
        The epoch's number, counted over every call that trained the same
        network (``warm_start``, ``partial_fit``), from 1.
    max_iter : int or None
        The last epoch this call may run, or None when the call runs one
        epoch (``partial_fit``).
    loss : float
        Mean training loss of the epoch.
    parts : dict of str to float
        Named parts of the loss (e.g. ``"reconstruction"`` and ``"kl"`` of a
        variational autoencoder), means over the epoch; may be empty.
    validation_score : float or None
        Score on the held-out rows (greater is better) when the estimator
        uses early stopping, else None.
    improved : bool
        Whether the epoch improved the stopping criterion by more than
        ``tol``.
    seconds : float
        Wall-clock duration of the epoch (validation included).
    learning_rate : float
        The optimizer's learning rate during the epoch.
    """

    phase: str
    epoch: int
    max_iter: int | None
    loss: float
    parts: dict = field(default_factory=dict)
    validation_score: float | None = None
    improved: bool = False
    seconds: float = 0.0
    learning_rate: float = math.nan


@dataclass(frozen=True)
class TrainingSummary:
    """Why and where one training phase ended, handed to :meth:`Callback.on_train_end`.

    Attributes
    ----------
    name : str
        The estimator's class name.
    phase : str
        As in :class:`EpochRecord`.
    n_epochs : int
        Epochs run in this phase.
    reason : str
        ``"converged"``, ``"max_iter"``, ``"annealed"`` (the cosine learning-rate
        schedule ran its ``max_iter`` epochs), ``"callback"`` or ``"interrupted"``.
    message : str
        One sentence saying why training stopped, e.g. ``"converged after 37
        epochs (no improvement of the loss by more than tol=0.0001 for 10
        epochs)"``.
    """

    name: str
    phase: str
    n_epochs: int
    reason: str
    message: str


class Callback:
    """Base class for callbacks that want to hear more than each epoch.

    Any callable taking an :class:`EpochRecord` is a callback; subclass this
    one to also be told when a phase begins (:meth:`on_train_begin`) and
    ends (:meth:`on_train_end`). Pass callbacks to an estimator's
    ``callbacks`` parameter.

    Examples
    --------
    >>> from skae import AutoencoderTransformer, Callback
    >>> class StopBelow(Callback):
    ...     def __init__(self, threshold):
    ...         self.threshold = threshold
    ...     def __call__(self, record):
    ...         return record.loss < self.threshold  # True stops training
    >>> import numpy as np
    >>> X = np.random.RandomState(0).normal(size=(200, 5))
    >>> ae = AutoencoderTransformer(callbacks=[StopBelow(0.5)], random_state=0).fit(X)
    >>> bool(ae.loss_curve_[-1] < 0.5)
    True
    """

    def on_train_begin(self, *, name, phase, n_samples, batch_size, max_iter):
        """Called before the first epoch of a phase.

        Parameters
        ----------
        name : str
            The estimator's class name.
        phase : str
            As in :class:`EpochRecord`.
        n_samples : int
            Rows trained on (held-out validation rows excluded).
        batch_size : int
            Rows per minibatch.
        max_iter : int or None
            The last epoch this call may run (None for ``partial_fit``).
        """

    def __call__(self, record):
        """Called after every epoch; return True to stop training."""
        return False

    def on_train_end(self, summary):
        """Called once the phase has stopped, with a :class:`TrainingSummary`."""


class InPhase(Callback):
    """Pass a callback's records on under another phase name.

    :class:`~skae.AutoencoderClassifier` wraps its callbacks in this for the
    autoencoder it pretrains, so that they see ``phase="pretraining"``.
    """

    def __init__(self, callback, phase):
        self.callback = callback
        self.phase = phase

    def on_train_begin(self, **info):
        hook = getattr(self.callback, "on_train_begin", None)
        if hook is not None:
            hook(**{**info, "phase": self.phase})

    def __call__(self, record):
        return self.callback(dataclasses.replace(record, phase=self.phase))

    def on_train_end(self, summary):
        hook = getattr(self.callback, "on_train_end", None)
        if hook is not None:
            hook(dataclasses.replace(summary, phase=self.phase))


def _tqdm_class():
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return None
    return tqdm


def _format(value):
    return "-" if value is None else f"{value:.6g}"


class ProgressBar(Callback):
    """Show training progress: a progress bar on a terminal, a table elsewhere.

    This is what ``verbose=True`` shows. On a terminal, with `tqdm
    <https://tqdm.github.io>`_ installed, it draws one bar per phase with the
    epoch, loss, validation score and an estimate of the time left (against
    ``max_iter``; training often stops sooner). Otherwise (logs, CI,
    notebooks without tqdm) it prints one table row per epoch, marked ``*``
    when the epoch improved the stopping criterion. Either way, a last line
    says why training stopped.

    Parameters
    ----------
    mode : {"auto", "bar", "table"}, default="auto"
        ``"auto"`` draws a bar when tqdm is installed and ``file`` (or
        standard error) is a terminal, and a table otherwise.
    file : file-like or None, default=None
        Where to write; None means ``sys.stderr`` for a bar and
        ``sys.stdout`` for a table.
    label : str or None, default=None
        Shown instead of the phase name.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> from skae import AutoencoderTransformer, ProgressBar
    >>> X = np.random.RandomState(0).normal(size=(100, 4))
    >>> ae = AutoencoderTransformer(max_iter=2, random_state=0,
    ...                             callbacks=[ProgressBar(mode="table")])
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # two epochs do not converge
    ...     _ = ae.fit(X)  # doctest: +ELLIPSIS
    AutoencoderTransformer (fit): 90 samples, batch size 90, up to 2 epochs
      epoch train loss valid score ...
    -------...
          1 ...
          2 ...
    AutoencoderTransformer (fit): max_iter=2 reached after 2 epochs; kept the weights of ...
    """

    def __init__(self, mode="auto", file=None, label=None):
        self.mode = mode
        self.file = file
        self.label = label

    def __deepcopy__(self, memo):
        # clone() deep-copies parameters; the output stream is shared, not copied.
        return type(self)(mode=self.mode, file=self.file, label=self.label)

    def __repr__(self):
        arguments = [f"{name}={value!r}" for name, value, default in
                     (("mode", self.mode, "auto"), ("file", self.file, None),
                      ("label", self.label, None)) if value != default]
        return f"ProgressBar({', '.join(arguments)})"

    def _use_bar(self, stream):
        if self.mode not in ("auto", "bar", "table"):
            raise ValueError(f"ProgressBar mode must be 'auto', 'bar' or 'table', "
                             f"got {self.mode!r}.")
        if self.mode == "table" or _tqdm_class() is None:
            return False
        return self.mode == "bar" or bool(getattr(stream, "isatty", lambda: False)())

    def on_train_begin(self, *, name, phase, n_samples, batch_size, max_iter):
        self._title = f"{name} ({self.label or phase})"
        self._bar = self._columns = None
        bar_stream = self.file or sys.stderr
        if self._use_bar(bar_stream):
            self._stream = bar_stream
            self._bar = _tqdm_class()(total=max_iter or 1, desc=self._title, unit="epoch",
                                      file=bar_stream, leave=True, dynamic_ncols=True)
            return
        self._stream = self.file or sys.stdout
        epochs = "1 epoch" if max_iter is None else f"up to {max_iter} epochs"
        self._print(f"{self._title}: {n_samples} samples, batch size {batch_size}, {epochs}")

    def _print(self, line):
        print(line, file=self._stream, flush=True)

    def __call__(self, record):
        if getattr(self, "_stream", None) is None:  # used without on_train_begin
            self.on_train_begin(name="training", phase=record.phase, n_samples="?",
                                batch_size="?", max_iter=record.max_iter)
        if self._bar is not None:
            postfix = {"loss": f"{record.loss:.4g}"}
            if record.validation_score is not None:
                postfix["valid"] = f"{record.validation_score:.4g}"
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(1)
            return False
        if self._columns is None:
            self._columns = ["train loss", *record.parts, "valid score", "lr", "time"]
            self._widths = [max(len(name), 10) for name in self._columns]
            self._print("  epoch" + "".join(f" {name:>{width}}" for name, width
                                            in zip(self._columns, self._widths)))
            self._print("-------" + "".join(" " + "-" * width for width in self._widths))
        values = [_format(record.loss),
                  *(_format(record.parts.get(name)) for name in self._columns[1:-3]),
                  _format(record.validation_score), _format(record.learning_rate),
                  f"{record.seconds:.2f}s"]
        row = f"{record.epoch:>7}" + "".join(f" {value:>{width}}" for value, width
                                             in zip(values, self._widths))
        self._print(row + (" *" if record.improved else ""))
        return False

    def on_train_end(self, summary):
        if getattr(self, "_stream", None) is None:
            return
        if self._bar is not None:
            self._bar.close()
        self._print(f"{self._title}: {summary.message}")
        self._stream = None
