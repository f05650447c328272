"""skae: autoencoders as scikit-learn estimators, on PyTorch."""

from ._autoencoder import AutoencoderTransformer
from ._denoising import DenoisingAutoencoder
from ._variational import VariationalAutoencoder

__version__ = "0.1.0"

__all__ = [
    "AutoencoderTransformer",
    "DenoisingAutoencoder",
    "VariationalAutoencoder",
    "__version__",
]
