"""ONNX export of scikit-learn pipelines that hold skae autoencoders (skl2onnx).

A single autoencoder exports with its own ``to_onnx``;
:func:`register_converters` lets `skl2onnx <https://onnx.ai/sklearn-onnx/>`__
convert a whole :class:`~sklearn.pipeline.Pipeline` (a scaler, an
autoencoder, a classifier...) into one ONNX model.
"""

from ._base import BaseAutoencoder
from ._onnx import register_skl2onnx

__all__ = ["register_converters"]


def register_converters():
    """Register skl2onnx converters for every skae autoencoder.

    After this call, :func:`skl2onnx.to_onnx` converts a pipeline holding any
    skae autoencoder: its step becomes the graph ``to_onnx(method="transform")``
    writes, computing the codes in float32 (the ``onnx`` extra and skl2onnx
    must be installed). Convert with float32 inputs and ``target_opset`` 18
    or more (torch's exporter writes no older opset).

    Raises
    ------
    ImportError
        When skl2onnx is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime
    >>> from skl2onnx import to_onnx
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import MinMaxScaler
    >>> from skae import AutoencoderTransformer
    >>> from skae.onnx import register_converters
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X.astype(np.float32)
    >>> pipeline = make_pipeline(MinMaxScaler(), AutoencoderTransformer(16, random_state=0),
    ...                          LogisticRegression(max_iter=1000)).fit(X, y)
    >>> register_converters()
    >>> model = to_onnx(pipeline, X[:1], target_opset=18, options={"zipmap": False})
    >>> session = onnxruntime.InferenceSession(model.SerializeToString())
    >>> labels, probabilities = session.run(None, {"X": X})
    >>> bool((labels == pipeline.predict(X)).mean() > 0.999)
    True
    """
    from .utils import all_estimators

    register_skl2onnx(Estimator for _, Estimator in all_estimators()
                      if issubclass(Estimator, BaseAutoencoder))
