"""skae: autoencoders as scikit-learn estimators, on PyTorch."""

from ._autoencoder import AutoencoderTransformer
from ._classifier import AutoencoderClassifier
from ._convolutional import ConvolutionalAutoencoder
from ._denoising import DenoisingAutoencoder
from ._variational import VariationalAutoencoder

__version__ = "0.1.0"

__all__ = [
    "AutoencoderClassifier",
    "AutoencoderTransformer",
    "ConvolutionalAutoencoder",
    "DenoisingAutoencoder",
    "VariationalAutoencoder",
    "__version__",
]
