"""Export of a fitted autoencoder's inference to an ONNX file.

:func:`export_onnx` serves :meth:`BaseAutoencoder.to_onnx
<skae._base.BaseAutoencoder.to_onnx>`: it traces the very tensor function
the estimator's method runs on each chunk of rows (``_encode`` for
``transform``, ``_decode`` for ``inverse_transform``,
``_score_samples_tensor`` for ``score_samples``) with a float32 copy of the
fitted network on the CPU, through torch's ``torch.export``-based ONNX
exporter, with a dynamic number of rows. Any estimator whose methods run
through these three functions exports without code of its own;
``tests/test_onnx.py`` checks every discovered autoencoder against
onnxruntime.
"""

import copy
import logging
import os
import re
import warnings
from contextlib import contextmanager

import torch
from sklearn.utils.validation import check_is_fitted

#: The methods that export, and the tensor function each runs per chunk.
METHODS = {
    "transform": ("_encode", "X", "codes"),
    "inverse_transform": ("_decode", "Z", "reconstruction"),
    "score_samples": ("_score_samples_tensor", "X", "scores"),
}

# Rows in the example batch the network is traced with: more than one, so that
# the exporter keeps the number of rows symbolic rather than specialising on 1.
_EXAMPLE_ROWS = 2


class _Method(torch.nn.Module):
    """One method of a fitted estimator as a module: ``function(network, rows)``."""

    def __init__(self, network, function):
        super().__init__()
        self.network = network
        self.function = function

    def forward(self, rows):
        return self.function(self.network, rows)


def _require_exporter():
    # torch.onnx.export(dynamo=True, dynamic_shapes=..., external_data=...): torch 2.6 on.
    release = tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])
    if release < (2, 6):
        raise ImportError(
            f"to_onnx needs torch 2.6 or later (its torch.export-based ONNX exporter); "
            f"this is torch {torch.__version__}. Install skae's onnx extra: pip install "
            "'skae[onnx]'.")
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(
            f"to_onnx needs the packages {', '.join(missing)}, which are not installed; "
            "install skae's onnx extra: pip install 'skae[onnx]' (onnx, onnxscript and "
            "onnxruntime to run the file).")


@contextmanager
def _quiet_exporter():
    """Hide what torch's exporter says about itself, which no user can act on:
    a logged warning for every torchvision operator it cannot register when
    torchvision is absent (no skae network uses one), and torch 2.13's
    FutureWarning about its own use of ``LeafSpec``. Anything else it warns
    about is shown."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`",
                                    category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def _innermost(error):
    """The first line of the deepest cause of an exporter error (which names
    the operation at fault), without the terminal's colour codes."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def export_onnx(estimator, path, method):
    """Write ``estimator.<method>`` as an ONNX model at ``path``; return ``path``.

    The model takes one float32 input (``"X"``: rows as ``method`` validates
    them, flattened to ``(n_samples, n_features_in_)``; ``"Z"``: codes for
    ``inverse_transform``) with any number of rows and returns one float32
    output (``"codes"``, ``"reconstruction"`` or ``"scores"``).
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(
            f"method must be one of {sorted(METHODS)} (the methods that export to ONNX), "
            f"got {method!r}.")
    if not callable(getattr(estimator, method, None)):
        raise ValueError(
            f"method={method!r}: {type(estimator).__name__} has no {method} to export.")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {path!r}.")
    folder = os.path.dirname(os.fspath(path)) or "."
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"path={os.fspath(path)!r}: the folder {folder!r} does not exist; create it "
            "first.")
    check_is_fitted(estimator)
    _require_exporter()
    function_name, input_name, output_name = METHODS[method]
    # The exporter traces in float32 on the CPU; the fitted network stays as it is.
    network = copy.deepcopy(estimator._training.module).to("cpu", torch.float32).eval()
    wrapped = _Method(network, getattr(estimator, function_name)).eval()
    n_inputs = (estimator._n_features_out if method == "inverse_transform"
                else estimator.n_features_in_)
    # Zeros are in every likelihood's support (rows for score_samples).
    example = torch.zeros(_EXAMPLE_ROWS, n_inputs)
    try:
        with _quiet_exporter(), torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                wrapped, (example,), os.fspath(path), dynamo=True, external_data=False,
                verbose=False, input_names=[input_name], output_names=[output_name],
                dynamic_shapes=({0: torch.export.Dim("n_samples")},))
    except torch.onnx.errors.OnnxExporterError as error:
        raise NotImplementedError(
            f"{type(estimator).__name__}.{method} cannot be exported to ONNX: "
            f"{_innermost(error)}") from error
    return path
