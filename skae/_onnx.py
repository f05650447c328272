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

The same graph, for ``transform``, is what :func:`register_skl2onnx` gives
skl2onnx, so that a whole scikit-learn pipeline holding an autoencoder
converts into one ONNX model (:func:`skae.onnx.register_converters`).
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
    # torch.onnx.export(dynamo=True, dynamic_shapes=..., opset_version >= 18): torch 2.6 on.
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


def scores_by_density(estimator):
    """Whether a fitted estimator's ``score_samples`` is the Gaussian density of
    :mod:`skae._likelihood` (not exportable)."""
    return (estimator._scores_by_density()
            and estimator._training.settings.get("density") is not None)


def check_method(estimator, method):
    """A ValueError naming ``method`` unless it is one that exports."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(
            f"method must be one of {sorted(METHODS)} (the methods that export to ONNX), "
            f"got {method!r}.")
    if not callable(getattr(estimator, method, None)):
        raise ValueError(
            f"method={method!r}: {type(estimator).__name__} has no {method} to export.")


def onnx_program(estimator, method, opset=None):
    """``estimator.<method>`` traced into a :class:`torch.onnx.ONNXProgram`
    (of the ONNX ``opset``; None: the exporter's default).

    The model takes one float32 input (``"X"``: rows as ``method`` validates
    them, flattened to ``(n_samples, n_features_in_)``; ``"Z"``: codes for
    ``inverse_transform``) with any number of rows and returns one float32
    output (``"codes"``, ``"reconstruction"`` or ``"scores"``).
    """
    check_method(estimator, method)
    check_is_fitted(estimator)
    if method == "score_samples" and scores_by_density(estimator):
        raise NotImplementedError(
            f"{type(estimator).__name__}.score_samples with loss='squared_error' is a Gaussian "
            "log-likelihood that needs the decoder's Jacobian at every row (see the user "
            "guide's 'Choosing the latent size'), which does not export to ONNX. Export "
            "method='transform' and method='inverse_transform' and compute the "
            "reconstruction error from them, or fit with loss='log_loss' or 'poisson'.")
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
            return torch.onnx.export(
                wrapped, (example,), dynamo=True, verbose=False, input_names=[input_name],
                output_names=[output_name], opset_version=opset,
                dynamic_shapes=({0: torch.export.Dim("n_samples")},))
    except torch.onnx.errors.OnnxExporterError as error:
        raise NotImplementedError(
            f"{type(estimator).__name__}.{method} cannot be exported to ONNX: "
            f"{_innermost(error)}") from error


def export_onnx(estimator, path, method):
    """Write ``estimator.<method>`` as an ONNX model at ``path`` (see
    :func:`onnx_program`); return ``path``."""
    check_method(estimator, method)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {path!r}.")
    folder = os.path.dirname(os.fspath(path)) or "."
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"path={os.fspath(path)!r}: the folder {folder!r} does not exist; create it "
            "first.")
    # One file, weights included (external data only pays beyond protobuf's 2 GB).
    onnx_program(estimator, method).save(os.fspath(path), external_data=False)
    return path


# --------------------------------------------------------------------------- #
# skl2onnx: a skae autoencoder as one step of a converted scikit-learn pipeline.

#: The oldest ONNX opset torch's exporter writes.
MIN_OPSET = 18


def _skl2onnx_shape(operator):
    """skl2onnx's shape calculator: float32 rows in, codes of ``n_components`` out."""
    from skl2onnx.common.data_types import FloatTensorType

    estimator = operator.raw_operator
    given = operator.inputs[0].type
    if not isinstance(given, FloatTensorType):
        raise TypeError(
            f"{type(estimator).__name__} converts with float32 inputs, got "
            f"{type(given).__name__}; convert the pipeline with FloatTensorType inputs "
            "(or float32 sample rows).")
    n_rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n_rows, estimator._n_features_out])


def _skl2onnx_convert(scope, operator, container):
    """skl2onnx's converter: the graph of :func:`onnx_program` for ``transform``,
    its names made unique in the pipeline's graph."""
    from onnx import helper, numpy_helper

    estimator = operator.raw_operator
    opset = container.target_opset
    if opset is not None and opset < MIN_OPSET:
        raise RuntimeError(
            f"{type(estimator).__name__} converts to ONNX opset {MIN_OPSET} or later, the "
            f"oldest torch's exporter writes; got target_opset={opset}. Pass "
            f"target_opset={MIN_OPSET} or more.")
    model = onnx_program(estimator, "transform", opset=opset).model_proto
    if len(model.functions):  # not seen with skae's networks: the exporter inlines them
        raise NotImplementedError(
            f"{type(estimator).__name__}'s ONNX graph holds local functions, which this "
            "converter does not copy; export it alone with to_onnx.")
    versions = {entry.domain: entry.version for entry in model.opset_import}
    graph = model.graph
    names = {graph.input[0].name: operator.inputs[0].full_name,
             graph.output[0].name: operator.outputs[0].full_name, "": ""}

    def unique(name):
        if name not in names:
            names[name] = scope.get_unique_variable_name(name)
        return names[name]

    for initializer in graph.initializer:
        # Re-encoded so that its values are raw bytes, which skl2onnx copies.
        tensor = numpy_helper.from_array(numpy_helper.to_array(initializer))
        container.add_initializer(unique(initializer.name), tensor.data_type,
                                  list(tensor.dims), tensor)
    for node in graph.node:
        attributes = {attribute.name: helper.get_attribute_value(attribute)
                      for attribute in node.attribute}
        container.add_node(
            node.op_type, [unique(name) for name in node.input],
            [unique(name) for name in node.output], op_domain=node.domain,
            op_version=versions[node.domain],
            name=scope.get_unique_operator_name(node.name or node.op_type), **attributes)


def register_skl2onnx(classes):
    """Register the converter of each autoencoder class in ``classes`` with skl2onnx."""
    try:
        from skl2onnx import update_registered_converter
    except ImportError:
        raise ImportError(
            "register_converters needs skl2onnx, which is not installed: pip install "
            "skl2onnx (beside skae's onnx extra).") from None
    for Estimator in classes:
        update_registered_converter(Estimator, f"Skae{Estimator.__name__}",
                                    _skl2onnx_shape, _skl2onnx_convert)
