"""The training state: everything training made and continues from, as one object.

:class:`TrainingState` holds the network, its optimizer, the seed of the
random streams (:class:`RandomStreams`), the fitted architecture the network
is rebuilt from (:func:`build_network`), the record of every epoch and what
training measured; and its portable format: versioned (:func:`check_layout`),
NumPy arrays and plain values only, so that a saved model is the fitted
model whatever ``set_params`` did after the fit.
"""

import copy
import math
import threading

import numpy as np
import torch

from ._device import derive_seed, make_generator, map_location_for
from ._modules import (
    ConvAutoencoder,
    EncoderClassifier,
    MLPAutoencoder,
    MLPVariationalAutoencoder,
    RNNAutoencoder,
    SparseMLPAutoencoder,
    materialize,
)
from ._optim import make_optimizer


class RandomStreams:
    """The independent random streams of one training call.

    Each stream's seed is derived from the estimator's seed, the stream's
    key and the number of epochs already trained: the same ``random_state``
    gives the same model, and a warm start or a ``partial_fit`` continues
    with fresh draws instead of repeating the first call's.
    """

    INIT, SHUFFLE, NOISE, SPLIT, PRETRAIN, START, VALIDATION = range(7)

    def __init__(self, seed, n_iter=0):
        self.seed = seed
        self.n_iter = n_iter

    def seed_for(self, key, replica=0):
        # Replica 0 draws what a single process draws; the others their own.
        if replica:
            return derive_seed(self.seed, key, self.n_iter, replica)
        return derive_seed(self.seed, key, self.n_iter)

    def generator(self, key, device="cpu", replica=0):
        return make_generator(self.seed_for(key, replica), device)


def build_network(architecture):
    """The (untrained) network an architecture describes.

    ``architecture`` is a dict of plain values: ``"kind"`` names the network
    class of :mod:`skae._modules`, the other entries are its arguments; an
    :class:`~skae._modules.EncoderClassifier`'s ``"encoder"`` is the
    architecture of the autoencoder whose encoder it uses.
    """
    arguments = dict(architecture)
    kind = arguments.pop("kind", None)
    if kind == "EncoderClassifier":
        return EncoderClassifier(build_network(arguments.pop("encoder")).encoder, **arguments)
    if kind not in _NETWORKS:
        raise ValueError(f"Unknown kind of network {kind!r} in architecture {architecture!r}.")
    return _NETWORKS[kind](**arguments)


_NETWORKS = {network.__name__: network
             for network in (MLPAutoencoder, MLPVariationalAutoencoder, ConvAutoencoder,
                             RNNAutoencoder, SparseMLPAutoencoder)}


class TrainingState:
    """Everything training made and continues from, held as one object.

    The network and its optimizer, the seed of the random streams, the
    architecture the network was built for (see :func:`build_network`), the
    parameters that chose it (``network_params``: a warm start refuses a
    change of them), what training measured or resolved for its loss
    (``settings``, e.g. the VAE's ``beta``), and the record of every epoch.
    Saving (:meth:`to_portable`), restoring (:meth:`from_portable`) and
    copying for a failure-safe continued fit (:meth:`copy`) each happen here
    and nowhere else. The network is rebuilt from the state alone, so that a
    saved model is the fitted model whatever ``set_params`` did after fit.
    """

    #: Number of the layout of a saved estimator (its pickled or skops state,
    #: :meth:`to_portable` included); loading refuses any other. Layout 1 was
    #: skae 0.1's up to f9d7584 (``_training["format"] == 1``); files from
    #: before it have no number.
    LAYOUT = 2

    def __init__(self, module, optimizer, seed, architecture, network_params=None):
        self.module = module
        self.optimizer = optimizer
        self.seed = seed
        self.architecture = architecture
        self.network_params = dict(network_params or {})
        self.settings = {}
        self.n_iter = 0
        self.loss_curve = []
        self.parts_curves = {}
        self.validation_scores = None
        self.best_loss = math.inf
        self.best_validation_score = None
        self.batch_size = None
        self.stop_reason = None
        self.early_stopping = None
        self.row_width = None
        self._double = None
        self._lock = threading.Lock()

    @property
    def device(self):
        return next(self.module.parameters()).device

    def inference_module(self, dtype, cached=True):
        """The network to infer in ``dtype``: itself for float32, a float64 copy
        for float64 (on devices that have float64; MPS has not), made once
        when ``cached`` (a fitted state's weights no longer change).

        Float64 input is computed in float64, as scikit-learn's transformers
        keep the input's precision: rows then agree whatever the chunking to
        far better than scikit-learn's checks ask, on every CPU and BLAS.
        """
        if np.dtype(dtype) != np.float64 or self.device.type == "mps":
            return self.module
        if not cached:
            return copy.deepcopy(self.module).to(torch.float64).eval()
        with self._lock:
            if self._double is None:
                self._double = copy.deepcopy(self.module).to(torch.float64).eval()
            return self._double

    def copy(self, device):
        """A deep copy on ``device`` that can train without touching this one
        (its optimizer keeps this one's settings and moments)."""
        module = copy.deepcopy(self.module).to(device)
        optimizer = make_optimizer(module, 0.0, 0.0)
        optimizer.load_state_dict(self.optimizer.state_dict())
        twin = copy.copy(self)
        twin.module, twin.optimizer = module, optimizer
        twin._double, twin._lock = None, threading.Lock()
        twin.settings = dict(self.settings)
        twin.loss_curve = list(self.loss_curve)
        twin.parts_curves = {name: list(curve) for name, curve in self.parts_curves.items()}
        if self.validation_scores is not None:
            twin.validation_scores = list(self.validation_scores)
        return twin

    def record(self, history, *, validating, incremental, batch_size):
        """Add one call's :class:`~skae._engine.History` to the record."""
        self._double = None  # the weights changed
        self.n_iter += history.n_epochs
        self.loss_curve += history.loss_curve
        for name, curve in history.parts_curves.items():
            self.parts_curves[name] = self.parts_curves.get(name, []) + curve
        self.best_loss = min(self.best_loss, history.best_loss)
        if validating:
            self.validation_scores = (self.validation_scores or []) + history.validation_scores
            self.best_validation_score = history.best_validation_score
        elif not incremental:
            self.validation_scores = self.best_validation_score = None
        self.batch_size = batch_size
        self.stop_reason = history.stop_reason
        self.early_stopping = validating

    def to_portable(self):
        """The state as NumPy arrays and plain Python values only.

        No torch object is left in it, so a pickle of it loads on any
        machine (CPU-only ones included) and ``skops`` can save it without
        trusting any type outside skae.
        """
        optimizer = self.optimizer.state_dict()
        return {
            "module": {name: _to_array(value) for name, value in self.module.state_dict().items()},
            "optimizer": {
                "param_groups": [dict(group) for group in optimizer["param_groups"]],
                "moments": [None if moments is None else
                            [_to_array(moments[0]), [_to_array(t) for t in moments[1]],
                             [_to_array(t) for t in moments[2]]]
                            for moments in optimizer["moments"]],
            },
            "seed": int(self.seed),
            "architecture": copy.deepcopy(self.architecture),
            "network_params": dict(self.network_params),
            "settings": dict(self.settings),
            "n_iter": int(self.n_iter),
            "loss_curve": [float(v) for v in self.loss_curve],
            "parts_curves": {k: [float(v) for v in c] for k, c in self.parts_curves.items()},
            "validation_scores": (None if self.validation_scores is None
                                  else [float(v) for v in self.validation_scores]),
            "best_loss": float(self.best_loss),
            "best_validation_score": (None if self.best_validation_score is None
                                      else float(self.best_validation_score)),
            "batch_size": self.batch_size,
            "stop_reason": self.stop_reason,
            "early_stopping": self.early_stopping,
            "device": str(self.device),
        }

    @classmethod
    def from_portable(cls, portable, owner):
        """Rebuild a state from :meth:`to_portable` (of this :attr:`LAYOUT`).

        The network is built from the saved architecture, not from any
        estimator's parameters. The weights go to the device they were
        trained on when this machine has it, else to the CPU with a warning.
        """
        device = map_location_for(portable["device"], owner)
        architecture = _plain(portable["architecture"])
        module = materialize(lambda: build_network(architecture), make_generator(0, "cpu"), "cpu")
        module.load_state_dict({name: torch.from_numpy(np.array(value))
                                for name, value in portable["module"].items()})
        module = module.to(device).eval()
        saved = portable["optimizer"]
        first = saved["param_groups"][0]
        optimizer = make_optimizer(module, first["lr"],
                                   first.get("penalty", first["weight_decay"]))
        optimizer.load_state_dict({
            "param_groups": saved["param_groups"],
            "moments": [None if moments is None else
                        (_to_tensor(moments[0]), [_to_tensor(t) for t in moments[1]],
                         [_to_tensor(t) for t in moments[2]])
                        for moments in saved["moments"]],
        })
        state = cls(module, optimizer, portable["seed"], architecture,
                    _plain(portable["network_params"]))
        state.settings = _plain(portable["settings"])
        for name in ("n_iter", "loss_curve", "parts_curves", "validation_scores", "best_loss",
                     "best_validation_score", "batch_size", "stop_reason", "early_stopping"):
            setattr(state, name, portable[name])
        return state


def _to_array(tensor):
    return tensor.detach().to("cpu", copy=True).numpy()


def _to_tensor(array):
    return torch.from_numpy(np.array(array))


def _plain(value):
    """Saved plain values (an architecture...) as written: some formats give
    tuples back as lists."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_plain(item) for item in value)
    return value


def check_layout(state, owner):
    """Refuse a saved estimator state whose layout is not :attr:`TrainingState.LAYOUT`."""
    layout = state.get("_skae_layout")
    if layout == TrainingState.LAYOUT:
        return
    training = state.get("_training")
    if layout is None and isinstance(training, dict) and "format" in training:
        layout = training["format"]  # layout 1 numbered its training state only
    found = (f"layout {layout!r}" if layout is not None else
             "an unnumbered layout (layout 1 or earlier)")
    raise ValueError(
        f"This {owner} was saved by skae in {found} of its saved models, and this "
        f"version of skae reads layout {TrainingState.LAYOUT} only: load it with the skae "
        "version that saved it, or refit the model.")
