"""skae: autoencoders as scikit-learn estimators, on PyTorch.

The public names are imported on first use, so that ``import skae`` (and the
``skae`` command's ``--help``) does not pay for importing torch.
"""

import importlib

__version__ = "0.1.0"

_SOURCES = {
    "AutoencoderClassifier": "._classifier",
    "AutoencoderTransformer": "._autoencoder",
    "Callback": "._callbacks",
    "ConvolutionalAutoencoder": "._convolutional",
    "DenoisingAutoencoder": "._denoising",
    "EpochRecord": "._callbacks",
    "ProgressBar": "._callbacks",
    "TrainingDivergedError": "._engine",
    "TrainingSummary": "._callbacks",
    "VariationalAutoencoder": "._variational",
}

__all__ = [*sorted(_SOURCES), "__version__"]


def __getattr__(name):
    if name in _SOURCES:
        value = getattr(importlib.import_module(_SOURCES[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'skae' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
