"""The estimator core every skae estimator stands on.

:class:`NetworkEstimator` is the one layer between scikit-learn's API and the
training engine, for the autoencoders and the classifier alike: parameter and
data validation, device and threads, building a network from its fitted
architecture, training through the engine (:mod:`skae._engine`, one
``_train`` for fit, warm start and partial_fit), committing the fitted state,
restore-on-error, tags and pickling. Everything training produces lives in
one :class:`~skae._state.TrainingState`; the fitted attributes
(``module_``, ``n_iter_``, ``loss_curve_``...) are views of it.

:class:`BaseAutoencoder` adds what every autoencoder shares: ``fit``,
``partial_fit``, ``transform``, ``inverse_transform``, ``score_samples``,
``score``, ``interpolate`` (:mod:`skae._interpolation`) and ``to_onnx``
(:mod:`skae._onnx`), and the public hook :meth:`BaseAutoencoder.encoder_factory` that
:class:`~skae.AutoencoderClassifier` builds on.

A concrete estimator says only which network it trains
(``_network_architecture``), with which loss (``_training_loss``: a method, or a
declared :class:`~skae._fastpath.ReconstructionLoss`), and, where it differs
from plain reconstruction, what its outputs are.
"""

import contextlib
import dataclasses
import math
import os
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._callbacks import ProgressBar
from ._device import (
    MAX_THREADS,
    check_memory,
    flush_denormal,
    in_parallel_worker,
    resolve_device,
    seed_from_random_state,
    torch_threads,
)
from ._distributed import Replicas, launched_by_a_launcher, launcher_process_group
from ._engine import Trainer, TrainingDivergedError, Validation, fit_loop, resolve_batch_size
from ._fastpath import ReconstructionLoss, dense_inference
from ._inference import chunk_rows, predict_in_chunks, row_footprint, widest_row
from ._interpolation import interpolate
from ._likelihood import code_statistics, log_likelihood, parameters, pool
from ._losses import LIKELIHOODS
from ._modules import (
    ACTIVATIONS,
    corrupt,
    materialize,
)
from ._onnx import export_onnx
from ._optim import make_optimizer
from ._sources import (
    LazyRows,
    block_rows,
    checked_csr,
    largest_magnitude,
    make_source,
    n_held_out,
    reads_in_blocks,
    validate_rows,
)
from ._state import RandomStreams, TrainingState, build_network, check_layout


def validate_numeric(estimator, X, y="no_validation", *, reset, **kwargs):
    """:func:`~sklearn.utils.validation.validate_data` to float32/float64, with
    messages that name the columns at fault and say what to do."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is not None and hasattr(dtypes, "items"):
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        bad = [str(name) for name, dtype in dtypes.items()
               if not (is_numeric_dtype(dtype) or is_bool_dtype(dtype))]
        if bad:
            raise ValueError(
                f"X has non-numeric columns {bad}; {type(estimator).__name__} needs numbers. "
                "Encode them first (e.g. OneHotEncoder or OrdinalEncoder in a "
                "ColumnTransformer) or drop them.")
    try:
        validated = validate_data(estimator, X, y, reset=reset, dtype=[np.float32, np.float64],
                                  accept_sparse="csr", **kwargs)
    except ValueError as error:
        if "could not convert" not in str(error).lower() and \
                "unable to convert" not in str(error).lower():
            raise
        raise ValueError(
            f"{error}. {type(estimator).__name__} needs numeric input: encode text or "
            "categories first (e.g. OneHotEncoder or OrdinalEncoder).") from None
    X = validated[0] if isinstance(validated, tuple) else validated
    if sp.issparse(X):
        X = checked_csr(X)
        validated = (X, validated[1]) if isinstance(validated, tuple) else X
    return validated


# --------------------------------------------------------------------------- #
# The core of every estimator.

# Float32 weight, gradient and Adam's two moments: what training holds for
# each parameter, at the least.
_TRAINING_BYTES_PER_PARAMETER = 16

# The parameters that size a network, named when one is too large.
_SIZE_PARAMETERS = ("hidden_layer_sizes", "channels", "kernel_size", "n_components")

_TRAINING_CONSTRAINTS = {
    "alpha": [Interval(Real, 0, None, closed="left")],
    "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
    "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
    "learning_rate": [StrOptions({"constant", "adaptive", "cosine"})],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
    "early_stopping": [StrOptions({"auto"}), "boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "shuffle": ["boolean"],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "callbacks": [None, list, tuple],
    "device": [str, torch.device],
    "n_threads": [None, Interval(Integral, 1, MAX_THREADS, closed="both")],
    "precision": [StrOptions({"float32", "bfloat16"})],
    "distributed": ["boolean"],
}


def _left_its_start(history, gap=0.01):
    """Whether every epoch of a fit scored worse than its starting network, by
    more than ``gap`` of that score.

    Then training moved away from its start and never came back (a learning
    rate too high: 39% and 115% worse at learning_rate_init=0.1 on the
    digits and on breast cancer). A start already at the optimum (a linear
    autoencoder set up as PCA) is not: its epochs stay within a fraction of
    a percent of it (0.05-0.3%, measured), training has converged there,
    and keeping it needs no warning.
    """
    start = history.initial_validation_score
    best_epoch = max(history.validation_scores, default=-math.inf)
    return start - best_epoch > gap * abs(start)


class NetworkEstimator(BaseEstimator, metaclass=ABCMeta):
    """Base class of every skae estimator. Not meant to be used directly.

    Subclasses supply ``_network_architecture`` (the network),
    ``_training_loss`` (its loss) and ``_validation_scores`` (per-row scores
    for early stopping); fitting goes through :meth:`_train`, inference
    through :meth:`_predict`.
    """

    _parameter_constraints: dict = dict(_TRAINING_CONSTRAINTS)

    #: Let the engine train a network and loss it recognises through its
    #: hand-written step (see :mod:`skae._fastpath`); False forces autograd.
    _fast_path = True
    #: ``tol`` is relative to the best criterion so far (reconstruction
    #: errors have the data's scale); False makes it absolute.
    _relative_tol = True

    # ------------------------------------------------------------------ #
    # What a concrete estimator supplies.

    @abstractmethod
    def _network_architecture(self, n_features, row_shape=None):
        """The network a new fit builds for rows of ``n_features``, as a dict
        of plain values for :func:`build_network` (parameters resolved).

        ``row_shape`` is the shape of one row as the data gave it (an
        array of images), or None for flat rows.
        """

    @abstractmethod
    def _training_loss(self, module, X, y, generator):
        """``(loss, parts)`` for one batch; see :class:`skae._engine.Trainer`.

        An estimator whose loss is the reconstruction error declares it
        instead, as a :class:`ReconstructionLoss` attribute (or property):
        the same callable, which the engine may compute without autograd.
        """

    @abstractmethod
    def _validation_scores(self, module, X, y, generator):
        """Per-row scores of held-out rows (greater is better), for early stopping.

        ``generator`` draws any random numbers the score needs; it is seeded
        alike at every epoch (see :class:`skae._engine.Validation`).
        """

    def _network_params(self):
        """The parameters that chose the network, as ``{name: normalised value}``.

        Kept in the training state: a warm start or ``partial_fit`` continues
        the fitted network only while these are unchanged.
        """
        return {}

    def _loss(self, state):
        """The loss that trains ``state``: ``_training_loss``, unless the loss
        depends on what training measured (see :class:`TrainingState`)."""
        return self._training_loss

    def _optimizer_settings(self):
        """Adam's ``(learning rate, L2 penalty)`` for training (parameters resolved).

        The penalty is ``alpha`` on the scale of the training loss, per row
        of a batch (see :mod:`skae._optim`): the weight decay of a batch of
        ``n`` rows is ``penalty / n``.
        """
        return self.learning_rate_init, self.alpha * self._penalty_scale()

    def _schedule(self):
        """The learning-rate schedule's arguments of :func:`~skae._engine.fit_loop`."""
        schedule = getattr(self, "learning_rate", "adaptive")
        return {"lr_reductions": 0 if schedule == "constant" else 1,
                "cosine": schedule == "cosine"}

    def _penalty_scale(self):
        """The training loss over scikit-learn's per-row loss (the sum over
        outputs of half the squared error, or of the log loss), averaged over
        rows: what turns ``alpha`` into the penalty on the training loss.

        1 for a loss that is scikit-learn's (a cross-entropy per row).
        """
        return 1.0

    def _start_from_data(self, state, source, generator):
        """Set up a new network (``state.module``) from training rows (``source``).

        Called once, before the first epoch of a new network, to set its
        starting weights or settings measured on the data (kept in
        ``state.settings``). Returns whether it changed the weights; the
        default does nothing.
        """
        return False

    def _restart_from_data(self, state, source, generator):
        """Set up the network again from every training row (``source``), when
        no epoch beat the start :meth:`_start_from_data` made on the held-out
        rows; the default repeats that start on them (an estimate from more rows)."""
        self._start_from_data(state, source, generator)

    #: The name callbacks hear for a fit's training phase.
    _phase = "fit"

    def _prepare_training(self, state, X, y, infer):
        """Prepare a new network before its first epoch; return what it trains on.

        The hook for an estimator whose network starts from more than its
        initialisation (the classifier: a pretrained encoder, the statistics
        of its codes). ``state`` is the new :class:`TrainingState`;
        ``infer(function, rows, dtype)`` computes ``function(module, chunk)``
        over row chunks of the array ``rows`` with the network as it is now,
        as a NumPy array of ``dtype``. Returns ``(X, y)``, the rows and
        targets to train on; the default returns them unchanged.
        """
        return X, y

    def _is_linear(self):
        """Whether the network is linear (its best fit to the rows is PCA's)."""
        return False

    def _resolve_early_stopping(self):
        """``early_stopping_``: ``"auto"`` holds rows out unless the network is linear.

        A linear autoencoder's best fit to the training rows is their PCA,
        which cannot overfit where PCA does not: holding out rows would only
        fit it to fewer of them. A nonlinear network on a small table
        overfits without them (held-out error 1.20 times PCA's on the wine
        data, against 0.94 with them).
        """
        if self.early_stopping == "auto":
            return not self._is_linear()
        return bool(self.early_stopping)

    def _check_params(self):
        """Checks beyond ``_parameter_constraints``; raise before any training."""
        for callback in self.callbacks or ():
            if not callable(callback):
                raise TypeError(
                    f"callbacks must be a list of callables taking an EpochRecord; "
                    f"{callback!r} is not callable.")

    def _check_distributed(self):
        dist = torch.distributed
        if in_parallel_worker():
            raise ValueError(
                "distributed=True cannot train inside a parallel search or a joblib/Dask "
                "worker: every process of the torch.distributed group must make the same "
                "fit calls together. Search with distributed=False (one model per worker), "
                "then refit the best parameters with distributed=True.")
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "distributed=True trains one model on all the processes of a "
                "torch.distributed process group, and none is initialised in this process, "
                "which no launcher started (its RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT "
                "and LOCAL_RANK are not all set). Launch the script with torchrun, which "
                "lets skae start the group for each fit, or call "
                "torch.distributed.init_process_group('gloo') (CPUs) or ('nccl') (GPUs) "
                "before fit; or set distributed=False.")

    @contextlib.contextmanager
    def _process_group(self):
        """Under ``distributed=True`` in a process a launcher (torchrun) started
        with no process group, one for the duration of the call: NCCL when
        training goes to the GPUs, else gloo. A group the script made is left
        alone."""
        if not self.distributed or in_parallel_worker() or not launched_by_a_launcher():
            yield
            return
        try:
            on_gpu = torch.cuda.is_available() and (
                self.device == "auto" or torch.device(self.device).type == "cuda")
        except (RuntimeError, TypeError):  # not a device: fit says so, naming it
            on_gpu = False
        with launcher_process_group("nccl" if on_gpu else "gloo"):
            yield

    # ------------------------------------------------------------------ #
    # Fitted attributes: views of the training state.

    def __sklearn_is_fitted__(self):
        return "_training" in self.__dict__

    @property
    def module_(self):
        """The trained network."""
        return self._training.module

    @property
    def device_(self):
        """The device the network lives on."""
        return self._training.device

    @property
    def batch_size_(self):
        """The minibatch size used in the last training call."""
        return self._training.batch_size

    @property
    def n_iter_(self):
        """Epochs run, over every call that trained this network."""
        return self._training.n_iter

    @property
    def loss_curve_(self):
        """Mean training loss of every epoch."""
        return list(self._training.loss_curve)

    @property
    def best_loss_(self):
        """Lowest value in ``loss_curve_``."""
        return self._training.best_loss

    @property
    def validation_scores_(self):
        """Validation score of every epoch with early stopping, else None."""
        scores = self._training.validation_scores
        return None if scores is None else list(scores)

    @property
    def best_validation_score_(self):
        """Best of ``validation_scores_``, or None."""
        return self._training.best_validation_score

    @property
    def early_stopping_(self):
        """Whether the last training call held rows out (``early_stopping`` resolved)."""
        return self._training.early_stopping

    # ------------------------------------------------------------------ #
    # Training.

    @contextlib.contextmanager
    def _restored_on_error(self):
        """Put every attribute back as it was if the block raises.

        Each ``fit`` and ``partial_fit`` runs inside: whatever fails (bad
        data, bad parameters, divergence, Ctrl-C in the first epoch), a
        fitted estimator stays exactly as it was. Training never mutates the
        committed :class:`TrainingState` (a continued fit trains a copy), so
        restoring the attribute dictionary restores everything.
        """
        saved = dict(self.__dict__)
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _callbacks(self):
        callbacks = list(self.callbacks or ())
        # Under distributed=True only the first process shows progress.
        if self.verbose and not (self.distributed and torch.distributed.is_initialized()
                                 and torch.distributed.get_rank() != 0):
            callbacks.append(ProgressBar())
        return callbacks

    def _resolve_device(self):
        """``device_`` for a new network; every training call starts here.

        Under ``distributed=True`` (checked to be usable here), ``"auto"`` and
        ``"cuda"`` mean this process's GPU, ``cuda:LOCAL_RANK`` (torchrun and
        most launchers set ``LOCAL_RANK``), when the process group runs NCCL
        (or ``"cuda"`` was asked for), else the CPU.
        """
        if not self.distributed:
            return resolve_device(self.device)
        self._check_distributed()
        backend = str(torch.distributed.get_backend())
        local = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        if isinstance(self.device, str) and self.device in ("auto", "cuda"):
            if self.device == "cuda" or ("nccl" in backend and torch.cuda.is_available()):
                return resolve_device(local)
            return torch.device("cpu")
        device = resolve_device(self.device)
        if "nccl" in backend and "gloo" not in backend and device.type != "cuda":
            raise ValueError(
                f"device={self.device!r} with distributed=True: the process group runs "
                "NCCL, which needs a GPU; use device='auto' (this process's GPU, from "
                "LOCAL_RANK) or a 'gloo' process group for CPUs.")
        return device

    def _draw_seed(self):
        """A seed from ``random_state``; the first process's under distributed=True."""
        seed = seed_from_random_state(self.random_state)
        if self.distributed:
            seed = Replicas(self._resolve_device()).broadcast(seed)
        return seed

    def _autocast_dtype(self, device):
        if self.precision == "float32":
            return None
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(
                f"precision='bfloat16' was requested but {torch.cuda.get_device_name(device)} "
                "does not compute in bfloat16; use precision='float32'.")
        return torch.bfloat16

    def _check_enough_rows(self, n_rows, what="samples"):
        """With early stopping, the held-out rows must leave some to train on."""
        if self._resolve_early_stopping() and \
                n_rows - n_held_out(n_rows, self.validation_fraction) < 1:
            raise ValueError(
                f"early_stopping={self.early_stopping!r} holds out validation_fraction="
                f"{self.validation_fraction} of {n_rows} {what}, leaving none to train on; "
                f"pass more {what} or set early_stopping=False.")

    def _check_network_fits(self, factory, n_features, device):
        """Refuse, before torch allocates, a network that ``device`` cannot train.

        Its parameters are counted on torch's ``meta`` device (shapes only,
        no memory, no random draws); training holds each one four times
        in float32 (weight, gradient and Adam's two moments).
        """
        try:
            with torch.device("meta"):
                n_parameters = sum(p.numel() for p in factory().parameters())
        except (NotImplementedError, RuntimeError):  # a module that needs real values
            return
        # The classifier's network is its autoencoder's encoder and a head.
        names = self._size_parameters() or ["autoencoder"]
        sizes = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        check_memory(
            _TRAINING_BYTES_PER_PARAMETER * n_parameters, device,
            f"{type(self).__name__} with {sizes} on {n_features} features has "
            f"{n_parameters:,} parameters; training them",
            f"make {' or '.join(names)} smaller")

    @classmethod
    def _size_parameters(cls):
        """Names of this estimator's parameters that size its network."""
        names = cls._get_param_names()
        return [name for name in _SIZE_PARAMETERS if name in names]

    def _check_batch_fits(self, module, batch_size, per_row, device):
        """Refuse, before the first step, batches that ``device`` cannot train.

        A step keeps every layer's output for its backward pass: at least
        ``batch_size`` times the ``per_row`` values one row takes in them
        (:func:`~skae._inference.row_footprint`), beside the network's parameters.
        """
        n_parameters = sum(p.numel() for p in module.parameters())
        names = self._size_parameters()
        value_bytes = 2 if self.precision == "bfloat16" else 4
        check_memory(
            _TRAINING_BYTES_PER_PARAMETER * n_parameters + value_bytes * batch_size * per_row,
            device,
            f"{type(self).__name__} with batch_size={self.batch_size!r} trains on {batch_size} "
            f"rows a step, each taking {per_row:,} values in the network's layers (beside its "
            f"{n_parameters:,} parameters); a step",
            f"lower batch_size, or make {' or '.join(names)} smaller" if names
            else "lower batch_size")

    def _new_state(self, architecture, device, seed=None):
        """A fresh :class:`TrainingState`: the network ``architecture`` describes,
        initialised from the seed's init stream, and a new optimizer."""
        seed = self._draw_seed() if seed is None else seed
        factory = lambda: build_network(architecture)  # noqa: E731
        self._check_network_fits(factory, self.n_features_in_, device)
        generator = RandomStreams(seed).generator(RandomStreams.INIT)
        module = materialize(factory, generator, device)
        optimizer = make_optimizer(module, *self._optimizer_settings())
        return TrainingState(module, optimizer, seed, architecture, self._network_params())

    def _continued_state(self, device, incremental):
        """A copy of the fitted state to train further, following ``set_params``.

        Training settings may change between calls; the parameters that
        chose the network may not (a ValueError names them).
        """
        state = self._training
        now = self._network_params()
        changed = [f"{name}={now.get(name)!r} (fitted with {value!r})"
                   for name, value in state.network_params.items() if now.get(name) != value]
        if changed:
            how = ("partial_fit continues the fitted network: call fit with warm_start=False"
                   if incremental else
                   "warm_start=True continues the fitted network: set warm_start=False")
            raise ValueError(
                f"The network's shape changed since it was fitted: {', '.join(changed)}. "
                f"{how}, or clone the estimator, to train a new network; or set the "
                "parameter back to continue training this one.")
        learning_rate, penalty = self._optimizer_settings()
        state = state.copy(device)
        for group in state.optimizer.param_groups:
            group["lr"] = learning_rate
            if group["decayed"]:
                group["weight_decay"] = group["penalty"] = penalty
        return state

    def _train(self, X, y=None, *, warm_start=False, incremental=False, row_shape=None):
        """Train through the engine and commit: the one path for every fit.

        Trains a copy of the fitted state when continuing (``partial_fit``, or
        ``warm_start``), else a new network for rows of ``row_shape`` (see
        :meth:`_network_architecture`), prepared by :meth:`_prepare_training`.
        The result becomes the fitted state only once training has succeeded.
        """
        device = self._resolve_device()
        replicas = Replicas(device) if self.distributed else None
        continuing = self.__sklearn_is_fitted__() and (incremental or warm_start)
        validating = self._resolve_early_stopping() and not incremental
        if validating:
            self._check_enough_rows(X.shape[0])
        if replicas is not None and not replicas.agree(X.shape[0]):
            raise ValueError(
                "distributed=True: the processes passed different numbers of rows. Every "
                "process passes the same rows (all of them); each trains on its share.")
        with torch_threads(self.n_threads), flush_denormal():
            new = not continuing
            if continuing:
                state = self._continued_state(device, incremental)
            else:
                state = self._new_state(self._network_architecture(X.shape[1], row_shape),
                                        device)
                X, y = self._prepare_training(
                    state, X, y, lambda function, rows, dtype: self._infer(
                        state, function, rows, dtype, cached=False))
            per_row = None
            if not continuing:  # also sizes inference chunks (and validation's)
                state.row_width, per_row = row_footprint(state.module, self.n_features_in_)
            streams = RandomStreams(state.seed, state.n_iter)
            every_row = source = make_source(X, y, device)
            validation = None
            if validating:
                source, held_out = source.split(self.validation_fraction,
                                                streams.generator(RandomStreams.SPLIT))
                validation = Validation(
                    self._validation_scores, held_out, self._chunk_rows(state), replicas,
                    generator_factory=lambda: streams.generator(
                        RandomStreams.VALIDATION, device,
                        0 if replicas is None else replicas.rank))
            started = new and self._start_from_data(
                state, source, streams.generator(RandomStreams.START))
            n_rows = (source.n_rows if replicas is None
                      else math.ceil(source.n_rows / replicas.world_size))
            batch_size = resolve_batch_size(self.batch_size, n_rows)
            if per_row is not None:
                self._check_batch_fits(state.module, batch_size, per_row, device)
            if self.verbose and self.batch_size != "auto" and batch_size < self.batch_size:
                print(f"{type(self).__name__}: batch_size={self.batch_size} is larger than "
                      f"the {n_rows} training samples; using {batch_size}.", flush=True)
            trainer = Trainer(
                state.module, self._loss(state), state.optimizer, batch_size=batch_size,
                shuffle_generator=(streams.generator(RandomStreams.SHUFFLE)
                                   if self.shuffle else None),
                noise_generator=streams.generator(
                    RandomStreams.NOISE, device, 0 if replicas is None else replicas.rank),
                autocast_dtype=self._autocast_dtype(device), replicas=replicas,
                fast_path=self._fast_path,
            )
            try:
                history = fit_loop(
                    trainer, source, max_iter=1 if incremental else self.max_iter, tol=self.tol,
                    n_iter_no_change=self.n_iter_no_change, validation=validation,
                    callbacks=self._callbacks(), first_epoch=state.n_iter + 1,
                    phase="partial_fit" if incremental else self._phase,
                    name=type(self).__name__, single_call=incremental,
                    relative_tol=self._relative_tol, **self._schedule())
            except TrainingDivergedError as error:
                raise TrainingDivergedError(
                    f"{error} Scale the input (e.g. with StandardScaler or MinMaxScaler) or "
                    f"lower learning_rate_init (now {self._optimizer_settings()[0]}).") from None
            finally:
                trainer.close()
            untrained = validating and history.best_epoch < state.n_iter + 1
            if started and untrained:
                # No epoch beat the data-dependent start on the held-out rows:
                # start from every row instead, the fit's best estimate.
                self._restart_from_data(state, every_row,
                                        streams.generator(RandomStreams.START))
            state.record(history, validating=validating, incremental=incremental,
                         batch_size=batch_size)
        self._training = state  # the commit
        if history.stop_reason == "interrupted":
            warnings.warn(f"{type(self).__name__}: training was {history.message}; the model "
                          "is fitted with the weights reached so far.", UserWarning)
        elif history.stop_reason == "max_iter" and not incremental:
            warnings.warn(
                f"{type(self).__name__}: max_iter={self.max_iter} epochs were reached "
                "and the optimisation hasn't converged yet; raise max_iter or tol.",
                ConvergenceWarning)
        elif (untrained and history.stop_reason in ("converged", "annealed")
              and _left_its_start(history)):
            # Early stopping kept the network training started from when
            # training ended by itself: say so, since the model is then what
            # no epoch of training made. (A callback that stops training
            # early asked for the epochs it got.)
            start = ("set up from the data before training" if started else
                     "as the earlier fit left it" if continuing else "as it was built")
            warnings.warn(
                f"{type(self).__name__}: none of the {history.n_epochs} epochs improved the "
                f"validation score of the network training started from "
                f"({history.initial_validation_score:.6g}), so that network is kept ({start}). "
                f"If training should improve on it, lower learning_rate_init (now "
                f"{self._optimizer_settings()[0]:g}).", ConvergenceWarning)

    # ------------------------------------------------------------------ #
    # Inference.

    def _chunk_rows(self, state=None):
        state = self._training if state is None else state
        if state.row_width is None:
            state.row_width = widest_row(state.module, self.n_features_in_)
        return chunk_rows(state.row_width)

    def _predict(self, function, X, out_dtype=None):
        """``function(module, rows)`` over row chunks of a validated array, as NumPy.

        Rows are computed with the fitted network in ``X``'s precision
        (float32 or float64) and returned as ``out_dtype`` (default: ``X``'s
        dtype).
        """
        return self._infer(self._training, function, X, out_dtype, cached=True)

    def _infer(self, state, function, X, out_dtype, cached):
        """:meth:`_predict` with the network of ``state`` (as it is now when
        not ``cached``: one still being prepared)."""
        module = state.inference_module(X.dtype, cached=cached)
        dtype = X.dtype if module is not state.module else np.float32
        chunk_rows = self._chunk_rows(state)
        if isinstance(X, LazyRows):
            # Reads from disk in chunks of a few blocks: larger chunks buy no
            # speed and cost memory (their activations, and the heap's slack).
            chunk_rows = min(chunk_rows, 4 * block_rows(X))
        # A plain dense autoencoder infers into buffers made for this call.
        module = dense_inference(module)
        with torch_threads(self.n_threads):
            result = predict_in_chunks(lambda chunk: function(module, chunk), X, state.device,
                                       chunk_rows, dtype)
        # A finite float64 sum proves every value finite without a mask the
        # size of the output.
        if not np.isfinite(result.sum(dtype=np.float64)) and not np.isfinite(result).all():
            raise ValueError(
                f"{type(self).__name__} computed values that are not finite for this input "
                f"(largest |value| in it: {largest_magnitude(X):.3g}): it lies far outside the "
                "range the model was trained on. Scale it as the training data were.")
        return result.astype(X.dtype if out_dtype is None else out_dtype, copy=False)

    # ------------------------------------------------------------------ #
    # Tags and pickling.

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = True
        return tags

    def __getstate__(self):
        # A saved estimator holds NumPy arrays and plain values only: no torch
        # object (a torch.device parameter is saved as its string), so that
        # skops loads it trusting skae's classes alone.
        state = dict(super().__getstate__())  # may be self.__dict__ itself
        if "_training" in state:
            state["_training"] = self._training.to_portable()
        if isinstance(state.get("device"), torch.device):
            state["device"] = str(state["device"])
        state["_skae_layout"] = TrainingState.LAYOUT
        return state

    def __setstate__(self, state):
        check_layout(state, type(self).__name__)
        portable = state.get("_training")
        super().__setstate__({key: value for key, value in state.items()
                              if key not in ("_training", "_skae_layout")})
        if portable is not None:
            self._training = TrainingState.from_portable(portable, type(self).__name__)


# --------------------------------------------------------------------------- #
# What every autoencoder shares.

class BaseAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, NetworkEstimator):
    """Base class for skae autoencoders. Not meant to be used directly."""

    _parameter_constraints: dict = {
        **NetworkEstimator._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "loss": [StrOptions(set(LIKELIHOODS))],
        "warm_start": ["boolean"],
    }

    def _network_params(self):
        return {"n_components": int(self.n_components),
                "hidden_layer_sizes": self._hidden_layer_sizes(),
                "activation": self._activation(), "loss": self.loss}

    def _activation(self):
        """``activation`` resolved: the name of the hidden layers' activation."""
        return self.activation

    def _row_shape(self, X):
        """The shape of one row as ``X`` gives it before validation flattens
        it (see :meth:`_network_architecture`); None: rows are flat."""
        return None

    def _hidden_layer_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, Integral) else tuple(sizes)
        for size in sizes:
            if not isinstance(size, Integral) or isinstance(size, bool) or size < 1:
                raise ValueError(
                    "hidden_layer_sizes must be a sequence of positive integers "
                    f"(or () for no hidden layer), got {self.hidden_layer_sizes!r}.")
        return tuple(int(size) for size in sizes)

    def _check_params(self):
        super()._check_params()
        self._hidden_layer_sizes()

    def _is_linear(self):
        return self._activation() == "identity"

    def _loss(self, state):
        # A declared reconstruction loss is computed under the likelihood of
        # the network it trains (the one ``loss`` chose for it).
        loss = super()._loss(state)
        if isinstance(loss, ReconstructionLoss):
            loss = dataclasses.replace(loss, loss=state.module.likelihood.name)
        return loss

    def _penalty_scale(self):
        # The training loss is a mean over the features: e.g. the mean squared
        # error is 2 / n_features times half the squared error summed over them.
        return LIKELIHOODS[self.loss].penalty_factor / self.n_features_in_

    def _check_values(self, X, likelihood):
        """Refuse values outside the support of the reconstruction likelihood
        (arrays read from disk in blocks are not read here)."""
        if not isinstance(X, LazyRows):
            likelihood.check(X)

    def _can_learn_identity(self):
        """Whether nothing in training (noise, a KL term) keeps an overcomplete
        code from copying its input."""
        return True

    def _warn_if_overcomplete(self, n_features):
        if self.n_components >= n_features and self._can_learn_identity():
            warnings.warn(
                f"{type(self).__name__}: n_components={self.n_components} is not smaller "
                f"than the {n_features} input features; such a code can learn to copy its "
                "input and find no structure. Use fewer components, or a "
                "DenoisingAutoencoder (noise makes copying useless).", UserWarning)

    # ------------------------------------------------------------------ #
    # The network's parts; an autoencoder whose encoder differs overrides these.

    @property
    def encoder_(self):
        """The trained encoder, ``module_.encoder``."""
        return self.module_.encoder

    @property
    def decoder_(self):
        """The trained decoder, ``module_.decoder``."""
        return self.module_.decoder

    def _encode(self, module, X):
        return module.encoder(X)

    def _decode(self, module, Z):
        # The reconstruction on the data's scale: the likelihood's link of
        # the decoder's raw output.
        return module.likelihood.link(module.decoder(Z))

    def _score_samples_tensor(self, module, X):
        """Per-row score (greater is better): minus the per-row loss."""
        return -module.likelihood.per_row_loss(module.decoder(self._encode(module, X)), X)

    def _validation_scores(self, module, X, y, generator):
        # Early stopping judges what training minimises: a denoising
        # autoencoder's error on held-out rows corrupted by its training
        # noise (the same draw every epoch), else the score of the clean rows.
        loss = self._training_loss
        if isinstance(loss, ReconstructionLoss) and loss.noisy:
            noisy = corrupt(X, loss.noise, loss.noise_level, generator)
            return -module.likelihood.per_row_loss(
                module.decoder(self._encode(module, noisy)), X)
        return self._score_samples_tensor(module, X)

    def encoder_factory(self, n_features=None):
        """How to build this autoencoder's encoder, and the width of its codes.

        The public hook that :class:`~skae.AutoencoderClassifier` builds on:
        it needs a network with this autoencoder's encoder layers, not the
        autoencoder itself.

        Parameters
        ----------
        n_features : int or None, default=None
            Width of the rows the encoder reads, for an encoder of the
            current parameters; None means the fitted network's encoder
            (the autoencoder must then be fitted), whatever ``set_params``
            changed since.

        Returns
        -------
        build : callable
            ``build()`` returns a new, untrained :class:`torch.nn.Module`
            with the encoder's architecture, mapping float32 rows of
            ``n_features`` to codes of ``n_codes`` (or, for a variational
            autoencoder, to a tuple whose first element is the codes). To
            use trained weights, load ``encoder_.state_dict()`` into it.
        n_codes : int
            The width of the codes, ``n_components``.

        Examples
        --------
        >>> import numpy as np, torch
        >>> from skae import AutoencoderTransformer
        >>> X = np.random.RandomState(0).normal(size=(50, 6)).astype(np.float32)
        >>> build, n_codes = AutoencoderTransformer(n_components=3).encoder_factory(6)
        >>> encoder = build()
        >>> encoder(torch.zeros(2, 6)).shape, n_codes
        (torch.Size([2, 3]), 3)
        """
        if n_features is None:
            check_is_fitted(self)
            architecture = self._training.architecture  # the fitted one
        else:
            self._validate_params()
            self._check_params()
            architecture = self._network_architecture(int(n_features))

        def build():
            return build_network(architecture).encoder

        return build, architecture["n_components"]

    # ------------------------------------------------------------------ #
    # Data.

    def _validate_X(self, X, *, reset):
        if reads_in_blocks(X):
            return validate_rows(self, X, reset=reset)
        return validate_numeric(self, X, reset=reset)

    def _validate_codes(self, Z):
        Z = check_array(Z, dtype=[np.float32, np.float64], accept_sparse="csr", input_name="Z")
        if sp.issparse(Z):
            Z = checked_csr(Z, input_name="Z")
        if Z.shape[1] != self._n_features_out:
            raise ValueError(
                f"Z has {Z.shape[1]} columns, but {type(self).__name__} has "
                f"n_components={self._n_features_out}; pass codes as returned by transform.")
        return Z

    @property
    def _n_features_out(self):
        """Width of the fitted network's codes (names the output features)."""
        return self._training.architecture["n_components"]

    # ------------------------------------------------------------------ #
    # The scikit-learn API.

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the autoencoder on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        with self._process_group(), self._restored_on_error():
            self._check_params()
            continuing = self.warm_start and self.__sklearn_is_fitted__()
            row_shape = self._row_shape(X)
            X = self._validate_X(X, reset=not continuing)
            self._check_values(X, LIKELIHOODS[self.loss])
            self._warn_if_overcomplete(X.shape[1])
            self._train(X, warm_start=self.warm_start, row_shape=row_shape)
            self._fit_density(X, incremental=False)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train for one epoch over ``X``, building the network on the first call.

        The optimizer state is kept between calls, so a stream of blocks
        trains as epochs over the whole data would.
        Later calls continue the fitted network, so the parameters that chose
        it must be as they were on the first call (a ValueError names the one
        that changed); training parameters may change between calls.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            One block of training data.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : object
            The updated estimator.
        """
        with self._process_group(), self._restored_on_error():
            self._check_params()
            first_call = not self.__sklearn_is_fitted__()
            row_shape = self._row_shape(X)
            X = self._validate_X(X, reset=first_call)
            self._check_values(X, LIKELIHOODS[self.loss])
            if first_call:
                self._warn_if_overcomplete(X.shape[1])
            self._train(X, incremental=True, row_shape=row_shape)
            self._fit_density(X, incremental=not first_call)
        return self

    def fit_transform(self, X, y=None):
        """Fit to ``X`` and return its codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            The codes of ``X``, the same as ``fit(X).transform(X)``.
        """
        return self.fit(X, y).transform(X)

    def transform(self, X):
        """Encode ``X`` into its latent codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to encode.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            The codes, float32 for float32 input and float64 otherwise.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._predict(self._encode, X)

    def inverse_transform(self, X):
        """Decode latent codes back to the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Codes, as returned by :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
            The reconstructions, on the data's scale: probabilities for
            ``loss="log_loss"``, rates for ``loss="poisson"``.
        """
        check_is_fitted(self)
        Z = self._validate_codes(X)
        return self._predict(self._decode, Z)

    # ------------------------------------------------------------------ #
    # The score: a Gaussian log-likelihood around the autoencoder (see
    # skae/_likelihood.py) for the squared error, minus the loss otherwise.

    #: Whether a squared-error fit scores rows by the Gaussian density of
    #: :mod:`skae._likelihood` (the estimators whose code size a search
    #: chooses); the others score minus the loss.
    _density_score = False

    def _scores_by_density(self):
        """Whether :meth:`score_samples` is the Gaussian log-likelihood of
        :mod:`skae._likelihood`: for an estimator that asks for it
        (``_density_score``) and a squared-error reconstruction (the Gaussian
        it extends); another likelihood has no noise to estimate."""
        return self._density_score and self._training.module.likelihood.name == "squared_error"

    def _fit_density(self, X, *, incremental):
        """Estimate the density :meth:`score_samples` reports on the training
        rows ``X`` (pooled with the earlier blocks' for ``partial_fit``), and
        keep it with what training measured."""
        state = self._training
        density = state.settings.get("density") if incremental else None
        if self._scores_by_density():
            def statistics(module, rows):
                return code_statistics(lambda chunk: self._encode(module, chunk),
                                       module.decoder, rows)

            # Block by block, as training read them: a block's statistics are
            # pooled into the others', so the pass holds one block at a time.
            step = block_rows(X) if isinstance(X, LazyRows) else 1 << 16
            for start in range(0, X.shape[0], step):
                density = pool(self._predict(statistics, X[start:start + step],
                                             out_dtype=np.float64),
                               math.prod(X.shape[1:]), density)
        # A new dictionary: a continued state shares its settings with the
        # state it was copied from, which must stay as it was.
        state.settings = {**state.settings, "density": density}

    def _log_likelihood(self, X, density):
        mean, covariance, noise_variance = parameters(density)
        # The decoder's Jacobian needs autograd through the network itself,
        # not the buffers of the dense inference path.
        module = self._training.inference_module(X.dtype)
        return self._predict(lambda _, rows: log_likelihood(
            lambda chunk: self._encode(module, chunk), module.decoder, rows, mean,
            covariance, noise_variance), X)

    def score_samples(self, X):
        """Per-row score (greater is better): a log-likelihood, or minus the loss.

        With ``loss="squared_error"``, the log-density of the row, in nats,
        under probabilistic PCA built around the autoencoder: the code's
        distribution (a Gaussian of the training codes' mean and covariance)
        carried onto the decoder's surface, plus isotropic Gaussian noise,
        its variance estimated from the training rows' residuals, in the
        directions the code leaves out. For a linear autoencoder that spans
        PCA's subspace it equals :meth:`sklearn.decomposition.PCA.score_samples`.
        A held-out row pays for every code dimension the data do not need, so
        :meth:`score` peaks at the code size a search should keep (the user
        guide's "Choosing the size of the code").

        With ``loss="log_loss"`` or ``loss="poisson"``, minus the row's mean
        binary cross-entropy or mean Poisson deviance of the reconstruction
        (those likelihoods have no noise level to estimate, and keep
        improving with a wider code).

        Either way the lowest scores mark the rows the model explains worst,
        which makes this usable for anomaly ranking. A row's score does not
        depend on the other rows passed with it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            The score of each row.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        self._check_values(X, self._training.module.likelihood)
        density = self._training.settings.get("density")
        if density is not None:
            return self._log_likelihood(X, density)
        return self._predict(self._score_samples_tensor, X)

    def score(self, X, y=None):
        """Mean of :meth:`score_samples` over ``X`` (greater is better).

        With ``loss="squared_error"`` the mean log-likelihood of the rows,
        whose cross-validated maximum over ``n_components`` is the code size
        to keep: ``GridSearchCV(estimator, {"n_components": [...]})`` picks
        it as scikit-learn's searches pick :class:`~sklearn.decomposition.PCA`'s.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.
        y : None
            Ignored.

        Returns
        -------
        score : float
            The mean score.
        """
        return float(np.mean(self.score_samples(X), dtype=np.float64))

    def interpolate(self, X_from, X_to, n_steps=8):
        """Decode evenly spaced codes between the codes of two sets of rows.

        Row ``i`` of ``X_from`` and row ``i`` of ``X_to`` are encoded (a
        variational autoencoder takes its posterior means), and ``n_steps``
        codes evenly spaced on the segment between them, both ends included,
        are decoded: the first step is the reconstruction of ``X_from[i]``
        (``inverse_transform(transform(X_from))``), the last that of
        ``X_to[i]``. See :ref:`interpolation`.

        Parameters
        ----------
        X_from : array-like of shape (m, n_features)
            The rows the paths start from; an array of images where
            :meth:`transform` takes one.
        X_to : array-like of the same shape as ``X_from``
            The rows the paths end at, one per row of ``X_from``.
        n_steps : int, default=8
            Points on each path, both ends included; at least 2.

        Returns
        -------
        paths : ndarray of shape (m, n_steps, n_features)
            The decoded paths; for an array of images, ``(m, n_steps,
            *image_shape)`` with each image as ``X_from`` gives it. Float32
            for float32 input and float64 otherwise.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.datasets import load_digits
        >>> from skae import AutoencoderTransformer
        >>> X = load_digits().data[:500] / 16.0
        >>> ae = AutoencoderTransformer(n_components=4, random_state=0).fit(X)
        >>> paths = ae.interpolate(X[:3], X[3:6], n_steps=5)
        >>> paths.shape
        (3, 5, 64)
        >>> bool(np.allclose(paths[:, 0], ae.inverse_transform(ae.transform(X[:3]))))
        True
        """
        return interpolate(self, X_from, X_to, n_steps)

    def to_onnx(self, path, method="transform"):
        """Write one inference method as an ONNX model, to run without torch.

        The model computes ``method`` as the fitted estimator does, in
        float32, for any number of rows: ``transform`` (a variational
        autoencoder's posterior means), ``inverse_transform`` or
        ``score_samples``. onnxruntime (or any ONNX runtime) runs it without
        torch or skae. Needs the ``onnx`` extra (``pip install
        'skae[onnx]'``). See :ref:`onnx-export`.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (its folder must exist); overwritten if present.
        method : {"transform", "inverse_transform", "score_samples"}, default="transform"
            The method to export. The model's input is ``"X"``, float32 rows
            flattened to ``(n_samples, n_features_in_)`` (``"Z"``, codes of
            ``(n_samples, n_components)``, for ``inverse_transform``); its
            output is ``"codes"``, ``"reconstruction"`` or ``"scores"``.

        Returns
        -------
        path : str or os.PathLike
            ``path``, as given.

        Raises
        ------
        NotImplementedError
            When the network computes ``method`` with an operation ONNX lacks
            (the log-gamma of ``score_samples`` for a variational autoencoder
            with ``loss="poisson"``); the message names it.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> import onnxruntime
        >>> from sklearn.datasets import load_digits
        >>> from skae import AutoencoderTransformer
        >>> X = load_digits().data[:500].astype(np.float32) / 16
        >>> ae = AutoencoderTransformer(n_components=4, random_state=0).fit(X)
        >>> path = ae.to_onnx(os.path.join(tempfile.mkdtemp(), "codes.onnx"))
        >>> session = onnxruntime.InferenceSession(path)
        >>> codes = session.run(None, {"X": X[:4]})[0]
        >>> bool(np.allclose(codes, ae.transform(X[:4]), atol=1e-4))
        True
        """
        return export_onnx(self, path, method)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
