"""Lazy inference on Dask arrays.

Needs the ``dask`` extra (``pip install "skae[dask]"``). Training on Dask
arrays goes through dask-ml's :class:`~dask_ml.wrappers.Incremental`, which
calls ``partial_fit`` block by block; this module adds what dask-ml's
:class:`~dask_ml.wrappers.ParallelPostFit` gets wrong for skae: the width
of the output (it reports the input's width for ``transform``).
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["transform"]

METHODS = ("transform", "inverse_transform", "score_samples", "predict", "predict_proba")


def _apply(block, estimator, method):
    return getattr(estimator, method)(block)


def transform(estimator, X, method="transform"):
    """Apply a fitted estimator's method to a Dask array, lazily, block by block.

    The estimator goes into the task graph once; each block of rows is
    computed where Dask runs it (threads, processes or a cluster), in the
    estimator's own chunks of rows. Nothing is computed until the result
    is.

    Parameters
    ----------
    estimator : fitted skae estimator
        Any fitted estimator with ``method`` (an autoencoder, or
        :class:`~skae.AutoencoderClassifier` for ``predict`` and
        ``predict_proba``).
    X : dask.array.Array of shape (n_samples, n_columns)
        Rows in blocks (dense or SciPy sparse chunks); blocks split across
        columns are joined first. ``n_columns`` is ``n_features_in_``, or
        the code width for ``inverse_transform``.
    method : {"transform", "inverse_transform", "score_samples", "predict", \
"predict_proba"}, default="transform"
        The method to apply.

    Returns
    -------
    result : dask.array.Array
        Of shape (n_samples, n_outputs) with X's row chunks and one chunk
        across its width (codes, reconstructed features or class
        probabilities), or of shape (n_samples,) for ``score_samples`` and
        ``predict``; its dtype is what the method returns for X's dtype.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from skae import AutoencoderTransformer
    >>> from skae.dask import transform
    >>> X = np.random.RandomState(0).normal(size=(1000, 8)).astype(np.float32)
    >>> ae = AutoencoderTransformer(n_components=3, tol=1e-2, random_state=0).fit(X)
    >>> codes = transform(ae, da.from_array(X, chunks=(250, 8)))
    >>> codes
    dask.array<_apply, shape=(1000, 3), dtype=float32, chunksize=(250, 3), ...>
    >>> bool(np.allclose(codes.compute(), ae.transform(X)))
    True
    """
    import dask
    import dask.array as da

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if not hasattr(estimator, method):
        raise ValueError(f"{type(estimator).__name__} has no method {method!r}.")
    check_is_fitted(estimator)
    if not isinstance(X, da.Array):
        raise TypeError(
            f"X must be a dask.array.Array, got {type(X).__name__}; for a Dask DataFrame "
            "pass X.to_dask_array(lengths=True), for an in-memory array call "
            f"estimator.{method}(X) directly.")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_columns), got shape {X.shape}.")
    n_columns = (estimator._n_features_out if method == "inverse_transform"
                 else estimator.n_features_in_)
    if X.shape[1] != n_columns:
        what = "the code width n_components" if method == "inverse_transform" else \
            "n_features_in_"
        raise ValueError(
            f"X has {X.shape[1]} columns, but {method} of {type(estimator).__name__} reads "
            f"{n_columns} ({what}).")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    # One row through the method gives the output's width and dtype exactly.
    probe = getattr(estimator, method)(np.zeros((1, n_columns), dtype=X.dtype))
    meta = np.empty((0, *probe.shape[1:]), dtype=probe.dtype)
    model = dask.delayed(estimator, pure=True)
    if probe.ndim == 1:
        return X.map_blocks(_apply, model, method, drop_axis=1, chunks=(X.chunks[0],),
                            dtype=probe.dtype, meta=meta)
    return X.map_blocks(_apply, model, method, chunks=(X.chunks[0], (probe.shape[1],)),
                        dtype=probe.dtype, meta=meta)
