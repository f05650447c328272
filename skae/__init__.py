"""skae: autoencoders as scikit-learn estimators, on PyTorch.

The public names and submodules are imported on first use, so that
``import skae`` (and the ``skae`` command's ``--help``) does not pay for
importing torch, and ``skae.model_selection`` works without its own import
(as scipy's and scikit-learn's submodules do).
"""

import importlib
import importlib.util

__version__ = "0.1.0"

_SOURCES = {
    "AutoencoderClassifier": "._classifier",
    "AutoencoderTransformer": "._autoencoder",
    "Callback": "._callbacks",
    "ConvolutionalAutoencoder": "._convolutional",
    "DenoisingAutoencoder": "._denoising",
    "EpochRecord": "._callbacks",
    "ProgressBar": "._callbacks",
    "RecurrentAutoencoder": "._recurrent",
    "SparseAutoencoder": "._sparse_ae",
    "TrainingDivergedError": "._stopping",
    "TrainingSummary": "._callbacks",
    "VariationalAutoencoder": "._variational",
}

# Public submodules, imported when first named as attributes of the package.
_SUBMODULES = {"dask", "model_selection", "onnx", "persistence", "utils"}

__all__ = [*sorted(_SOURCES), "__version__"]


def __getattr__(name):
    if name in _SOURCES:
        value = getattr(importlib.import_module(_SOURCES[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES and _has_submodule(name):
        # Importing a submodule binds it in this namespace itself.
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'skae' has no attribute {name!r}")


def _has_submodule(name):
    # Finds the file without importing it (inspect.getmembers, as
    # skae.utils.all_estimators calls it, reads every name __dir__ lists).
    return importlib.util.find_spec(f"{__name__}.{name}") is not None


def __dir__():
    return sorted({*globals(), *__all__, *filter(_has_submodule, _SUBMODULES)})
