"""The scikit-learn side shared by every skae autoencoder.

:class:`BaseAutoencoder` owns the parameters, validation, fitting through the
shared engine, inference in chunks, scoring, tags and pickling. A concrete
autoencoder only says which network it trains (``_module_factory``), with which
loss (``_training_loss``), and, where it differs from plain reconstruction,
what ``transform`` and ``score_samples`` return.
"""

import contextlib
import copy
import math
import time
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
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

from ._device import (
    derive_seed,
    make_generator,
    map_location_for,
    resolve_device,
    seed_from_random_state,
    state_dict_to_cpu,
    to_tensor,
    torch_threads,
)
from ._engine import Trainer, TrainingDivergedError, fit_loop, make_optimizer, predict_in_chunks
from ._modules import ACTIVATIONS, materialize

# Rows per inference chunk are chosen so that one chunk's widest activation
# holds about this many floats (16 MiB in float32).
_CHUNK_FLOATS = 1 << 22

# Keys of the derived random streams.
_INIT, _SHUFFLE, _NOISE, _SPLIT = range(4)


def _per_row_squared_error(reconstruction, X):
    return ((reconstruction - X) ** 2).flatten(1).mean(dim=1)


def _mean_squared_error(reconstruction, X):
    """The batch mean of :func:`_per_row_squared_error`, as one fused op.

    Every row has the same width, so the two are equal; ``mse_loss`` costs
    half as much per training step for small networks (measured on digits).
    """
    return torch.nn.functional.mse_loss(reconstruction, X)


@contextlib.contextmanager
def restored_on_error(estimator, keys=None):
    """Put back the estimator's attributes (only ``keys``, or all) if the block raises.

    A call that fails (bad data, bad parameters, divergence) must leave an
    already fitted estimator as it was.
    """
    names = list(estimator.__dict__) if keys is None else keys
    saved = {key: estimator.__dict__[key] for key in names if key in estimator.__dict__}
    try:
        yield
    except BaseException:
        for key in (list(estimator.__dict__) if keys is None else keys):
            estimator.__dict__.pop(key, None)
        estimator.__dict__.update(saved)
        raise


_SET_BY_VALIDATION = ("n_features_in_", "feature_names_in_")


def validate_data_atomic(estimator, *args, reset, **kwargs):
    """:func:`~sklearn.utils.validation.validate_data` that leaves ``estimator``
    untouched when it raises (it sets ``n_features_in_`` and
    ``feature_names_in_`` before it has checked the values)."""
    with restored_on_error(estimator, _SET_BY_VALIDATION):
        return validate_data(estimator, *args, reset=reset, **kwargs)


def check_enough_rows(estimator, n_rows, what="samples"):
    """With early stopping, the held-out rows must leave some to train on."""
    if estimator.early_stopping and n_rows - math.ceil(estimator.validation_fraction * n_rows) < 1:
        raise ValueError(
            f"early_stopping=True holds out validation_fraction="
            f"{estimator.validation_fraction} of {n_rows} {what}, leaving none to train on; "
            f"pass more {what} or set early_stopping=False."
        )


def hold_out(X, y, fraction, generator):
    """Split tensors into training rows and ``ceil(fraction * n)`` validation rows."""
    n_rows = X.shape[0]
    n_validation = math.ceil(fraction * n_rows)
    order = torch.randperm(n_rows, generator=generator).to(X.device)
    held_out, kept = order[:n_validation], order[n_validation:]
    if y is None:
        return X[kept], None, X[held_out], None
    return X[kept], y[kept], X[held_out], y[held_out]


def resolve_batch_size(batch_size, n_rows):
    """``"auto"`` is ``min(200, n_rows)``; any size is clipped to ``n_rows``."""
    return min(200 if batch_size == "auto" else batch_size, n_rows)


def warn_if_not_converged(estimator, history):
    if not history.stopped_early:
        warnings.warn(
            f"{type(estimator).__name__}: max_iter={estimator.max_iter} epochs were reached "
            "and the optimisation hasn't converged yet; raise max_iter or tol.",
            ConvergenceWarning,
        )


class _ProgressPrinter:
    """Engine callback printing one line per epoch (``verbose=True``)."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self, info):
        message = f"Epoch {info.epoch}, loss = {info.loss:.6g}"
        for name, value in info.parts.items():
            message += f", {name} = {value:.6g}"
        if info.validation_score is not None:
            message += f", validation score = {info.validation_score:.6g}"
        print(f"{message}, {time.perf_counter() - self.start:.2f} s", flush=True)
        return False


class BaseAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator,
                      metaclass=ABCMeta):
    """Base class for skae autoencoders. Not meant to be used directly."""

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "device": [str, torch.device],
        "n_threads": [None, Interval(Integral, 1, None, closed="left")],
    }

    # ------------------------------------------------------------------ #
    # What a concrete autoencoder supplies.

    @abstractmethod
    def _module_factory(self, n_features):
        """A zero-argument callable building the network for ``n_features``."""

    @abstractmethod
    def _training_loss(self, module, X, y, generator):
        """``(loss, parts)`` for one batch; see :class:`skae._engine.Trainer`."""

    def _architecture(self):
        """The parameters that fix the network's shape (checked on warm starts)."""
        return (self.n_components, self._hidden_layer_sizes(), self.activation)

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
        return module.decoder(Z)

    def _reconstruct(self, module, X):
        return self._decode(module, self._encode(module, X))

    def _score_samples_tensor(self, module, X):
        """Per-row score (greater is better): minus the mean squared error."""
        return -_per_row_squared_error(self._reconstruct(module, X), X)

    def _input_widths(self):
        """Widths of the widest layers, used to size inference chunks."""
        return [self.n_features_in_, self.n_components, *self._hidden_layer_sizes()]

    # ------------------------------------------------------------------ #
    # Validation.

    def _hidden_layer_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = (sizes,) if isinstance(sizes, Integral) else tuple(sizes)
        for size in sizes:
            if not isinstance(size, Integral) or isinstance(size, bool) or size < 1:
                raise ValueError(
                    "hidden_layer_sizes must be a sequence of positive integers "
                    f"(or () for no hidden layer), got {self.hidden_layer_sizes!r}."
                )
        return tuple(int(size) for size in sizes)

    def _check_params(self):
        """Checks beyond ``_parameter_constraints``; raise before any training."""
        self._hidden_layer_sizes()

    def _validate_X(self, X, *, reset):
        return validate_data_atomic(
            self, X, reset=reset, dtype=[np.float32, np.float64], ensure_min_samples=1,
        )

    def _validate_codes(self, Z):
        Z = check_array(Z, dtype=[np.float32, np.float64], input_name="Z")
        if Z.shape[1] != self._n_features_out:
            raise ValueError(
                f"Z has {Z.shape[1]} columns, but {type(self).__name__} has "
                f"n_components={self._n_features_out}; pass codes as returned by "
                "transform."
            )
        return Z

    # ------------------------------------------------------------------ #
    # Fitting.

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
        return self._fit(X, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train for one epoch over ``X``, building the network on the first call.

        The optimizer state is kept between calls, so a stream of blocks
        trains as epochs over the whole data would.

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
        return self._fit(X, incremental=True)

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

    def _fit(self, X, incremental):
        self._check_params()
        device = resolve_device(self.device)
        continuing = (incremental or self.warm_start) and hasattr(self, "module_")
        X = self._validate_X(X, reset=not continuing)
        if continuing and self._architecture_ != self._architecture():
            raise ValueError(
                f"The network's shape changed since it was built ({self._architecture_} -> "
                f"{self._architecture()}); set warm_start=False, or clone the estimator, "
                "to train a new network."
            )
        with torch_threads(self.n_threads):
            self._train(X, device, continuing, incremental)
        return self

    def _train(self, X, device, continuing, incremental):
        validating = self.early_stopping and not incremental
        if validating:
            check_enough_rows(self, X.shape[0])

        if continuing:
            seed = self._seed
            module = self.module_
            if next(module.parameters()).device != device:
                module.to(device)
                optimizer_state = self._optimizer.state_dict()
                self._optimizer = make_optimizer(module, self.learning_rate_init, self.alpha)
                self._optimizer.load_state_dict(optimizer_state)
            optimizer = self._optimizer
            for group in optimizer.param_groups:  # follow set_params between calls
                group["lr"] = self.learning_rate_init
                if group["decayed"]:
                    group["weight_decay"] = self.alpha
            epochs_done = self.n_iter_
            snapshot = (state_dict_to_cpu(module), copy.deepcopy(optimizer.state_dict()))
        else:
            seed = seed_from_random_state(self.random_state)
            factory = self._module_factory(X.shape[1])
            module = materialize(factory, make_generator(derive_seed(seed, _INIT), "cpu"), device)
            optimizer = make_optimizer(module, self.learning_rate_init, self.alpha)
            epochs_done = 0
            snapshot = None

        X_tensor = to_tensor(X, device)
        validation = None
        if validating:
            X_tensor, _, X_val, _ = hold_out(
                X_tensor, None, self.validation_fraction,
                make_generator(derive_seed(seed, _SPLIT, epochs_done), "cpu"))
            validation = (self._validation_score, X_val, None)
        batch_size = resolve_batch_size(self.batch_size, X_tensor.shape[0])
        trainer = Trainer(
            module, self._training_loss, optimizer,
            batch_size=batch_size,
            shuffle=self.shuffle,
            shuffle_generator=make_generator(derive_seed(seed, _SHUFFLE, epochs_done), "cpu"),
            noise_generator=make_generator(derive_seed(seed, _NOISE, epochs_done), device),
        )
        callbacks = [_ProgressPrinter()] if self.verbose else []
        try:
            history = fit_loop(
                trainer, X_tensor,
                max_iter=1 if incremental else self.max_iter,
                tol=self.tol,
                n_iter_no_change=self.n_iter_no_change,
                validation=validation,
                callbacks=callbacks,
                first_epoch=epochs_done + 1,
            )
        except TrainingDivergedError:
            if snapshot is not None:
                module.load_state_dict(snapshot[0])
                optimizer.load_state_dict(snapshot[1])
            raise

        # Commit the fitted state only once training has succeeded.
        if not continuing:
            self.module_ = module
            self._optimizer = optimizer
            self._seed = seed
            self._architecture_ = self._architecture()
            self._n_features_out = self.n_components
            self.loss_curve_ = []
            self.n_iter_ = 0
            self.best_loss_ = math.inf
        self.device_ = device
        self.batch_size_ = batch_size
        self.n_iter_ += history.n_epochs
        self.loss_curve_ = [*self.loss_curve_, *history.loss_curve]
        self.best_loss_ = min(self.best_loss_, history.best_loss)
        for name, curve in history.parts_curves.items():
            # A loss with named parts (e.g. "reconstruction", "kl") records each
            # as ``<name>_curve_`` beside their sum in ``loss_curve_``.
            attribute = f"{name}_curve_"
            previous = getattr(self, attribute, []) if continuing else []
            setattr(self, attribute, [*previous, *curve])
        if validation is not None:
            previous = (getattr(self, "validation_scores_", None) or []) if continuing else []
            self.validation_scores_ = [*previous, *history.validation_scores]
            self.best_validation_score_ = history.best_validation_score
        elif not incremental:
            self.validation_scores_ = None
            self.best_validation_score_ = None
        if not incremental:
            warn_if_not_converged(self, history)

    def _validation_score(self, module, X_val, _y_val):
        chunk = self._chunk_size()
        with torch.inference_mode():
            total = sum(
                self._score_samples_tensor(module, X_val[start:start + chunk]).sum()
                for start in range(0, X_val.shape[0], chunk)
            )
        return float(total) / X_val.shape[0]

    # ------------------------------------------------------------------ #
    # Inference.

    def _chunk_size(self):
        return max(1, _CHUNK_FLOATS // max(self._input_widths()))

    def _apply(self, function, X):
        """Run ``function(module, chunk)`` over row chunks of a validated array."""
        module = self.module_
        with torch_threads(self.n_threads):
            return predict_in_chunks(
                lambda chunk: function(module, chunk), X, self.device_,
                self._chunk_size(), X.dtype, module=module,
            )

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
        return self._apply(self._encode, X)

    def inverse_transform(self, X):
        """Decode latent codes back to the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Codes, as returned by :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
            The reconstructions.
        """
        check_is_fitted(self)
        Z = self._validate_codes(X)
        return self._apply(self._decode, Z)

    def score_samples(self, X):
        """Per-row score: minus the mean squared reconstruction error.

        Greater is better; the lowest scores mark the rows the model
        reconstructs worst, which makes this usable for anomaly ranking.

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
        return self._apply(self._score_samples_tensor, X)

    def score(self, X, y=None):
        """Mean of :meth:`score_samples` over ``X`` (greater is better).

        This lets model selection such as ``GridSearchCV`` compare
        autoencoders with its default scoring.

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

    # ------------------------------------------------------------------ #
    # Tags and pickling.

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def __getstate__(self):
        state = dict(super().__getstate__())  # may be self.__dict__ itself
        if "module_" in state:
            state["module_"] = state_dict_to_cpu(self.module_)
            state["_optimizer"] = self._optimizer.state_dict()
            state["device_"] = str(self.device_)
        return state

    def __setstate__(self, state):
        module_state = state.get("module_")
        super().__setstate__(state)
        if module_state is None:
            return
        device = map_location_for(state["device_"], type(self).__name__)
        module = materialize(self._module_factory(self.n_features_in_),
                             make_generator(0, "cpu"), "cpu")
        module.load_state_dict(module_state)
        self.module_ = module.to(device).eval()
        self.device_ = device
        optimizer = make_optimizer(self.module_, self.learning_rate_init, self.alpha)
        optimizer.load_state_dict(state["_optimizer"])
        self._optimizer = optimizer
