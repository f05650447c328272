"""skae: autoencoders as scikit-learn estimators, on PyTorch."""

from ._autoencoder import AutoencoderTransformer
from ._callbacks import Callback, EpochRecord, ProgressBar, TrainingSummary
from ._classifier import AutoencoderClassifier
from ._convolutional import ConvolutionalAutoencoder
from ._denoising import DenoisingAutoencoder
from ._engine import TrainingDivergedError
from ._variational import VariationalAutoencoder

__version__ = "0.1.0"

__all__ = [
    "AutoencoderClassifier",
    "AutoencoderTransformer",
    "Callback",
    "ConvolutionalAutoencoder",
    "DenoisingAutoencoder",
    "EpochRecord",
    "ProgressBar",
    "TrainingDivergedError",
    "TrainingSummary",
    "VariationalAutoencoder",
    "__version__",
]
