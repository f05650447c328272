"""Interpolation between rows through an autoencoder's codes.

:func:`interpolate` serves :meth:`BaseAutoencoder.interpolate
<skae._base.BaseAutoencoder.interpolate>` for every autoencoder: it encodes
two sets of rows, places evenly spaced codes on the segment between each
pair, and decodes them, all through the estimator's own chunked inference
(``_predict`` with its ``_encode`` and ``_decode``, under
:func:`torch.inference_mode`). A variational autoencoder's ``_encode`` gives
its posterior means, so the path runs between means, never between draws.
"""

from numbers import Integral

import numpy as np
from sklearn.utils.validation import check_is_fitted


def _shape(X):
    shape = getattr(X, "shape", None)
    return tuple(shape) if shape is not None else np.shape(X)


def check_n_steps(n_steps):
    """``n_steps`` as an int; a ValueError naming it unless it is an integer >= 2."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, Integral) or n_steps < 2:
        raise ValueError(
            f"n_steps must be an integer >= 2 (the two ends and the steps between "
            f"them), got {n_steps!r}.")
    return int(n_steps)


def interpolate(estimator, X_from, X_to, n_steps):
    """Decoded codes evenly spaced between the codes of ``X_from`` and ``X_to``.

    Returns an array of shape ``(m, n_steps, *row_shape)``: step ``s`` of row
    ``i`` decodes ``(1 - t) * z_from[i] + t * z_to[i]`` with ``t = s / (n_steps
    - 1)``; ``row_shape`` is the shape of one row as ``X_from`` gives it
    (``(n_features,)`` for a table, an image's shape for an array of images).
    """
    n_steps = check_n_steps(n_steps)
    check_is_fitted(estimator)
    shape_from, shape_to = _shape(X_from), _shape(X_to)
    if shape_from != shape_to:
        raise ValueError(
            f"X_from and X_to must have the same shape (one row of X_to for each row of "
            f"X_from), got {shape_from} and {shape_to}.")
    if len(shape_from) < 2:
        raise ValueError(
            f"X_from and X_to must hold rows (2-D, or arrays of images), got shape "
            f"{shape_from}; reshape a single row with X.reshape(1, -1).")
    codes_from = estimator._predict(estimator._encode, estimator._validate_X(X_from, reset=False))
    codes_to = estimator._predict(estimator._encode, estimator._validate_X(X_to, reset=False))
    dtype = np.result_type(codes_from, codes_to)
    # t = 0 and t = 1 give the ends' codes exactly ((1 - 0) * z + 0 * z' == z),
    # so the first and last steps are the rows' reconstructions.
    t = np.linspace(0.0, 1.0, n_steps, dtype=dtype)[None, :, None]
    codes = (1 - t) * codes_from[:, None, :] + t * codes_to[:, None, :]
    n_rows, n_codes = codes_from.shape
    decoded = estimator._predict(estimator._decode, codes.reshape(n_rows * n_steps, n_codes))
    return decoded.reshape(n_rows, n_steps, *shape_from[1:])
