"""Data that is not one plain array: arrays read in blocks, and sparse matrices.

A NumPy memmap, or any array-like that reads its rows on demand (HDF5, Zarr,
Dask arrays), is validated without being read (:func:`validate_rows`) and
wrapped in :class:`LazyRows`, which checks the values of every slice as it is
read. Training reads it through :class:`skae._engine.BlockSource`, inference
in chunks of a few blocks.

A CSR matrix is trained on as its three arrays; :func:`checked_csr` checks
that they describe a matrix before any of them is used as an index.
"""

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import _check_feature_names, _check_n_features

# Arrays on disk are read in blocks of contiguous rows of about BLOCK_BYTES
# (as float32), WINDOW_BLOCKS blocks at a time (16 MiB): large enough for
# fast sequential reads and for batches that mix 16 places of the file,
# small against any table worth keeping on disk.
BLOCK_BYTES = 1 << 20
WINDOW_BLOCKS = 16


def block_rows(X):
    """Rows in one block of ``X`` (at least one)."""
    return max(1, BLOCK_BYTES // (4 * max(1, int(np.prod(X.shape[1:])))))


def reads_in_blocks(X):
    """Whether ``X`` is trained on block by block instead of converted whole.

    Memmaps (``np.load(path, mmap_mode="r")``) and other arrays that read
    their rows on demand (anything with a NumPy ``dtype``, a 2-D ``shape``
    and row slicing that is not an in-memory array: HDF5, Zarr, Dask
    arrays) are, once they hold more than one window of rows: converting
    them would copy them whole into memory. A smaller one is read whole,
    which gives exactly the model that the same array in memory gives.
    """
    if isinstance(X, np.ndarray):
        if not isinstance(X, np.memmap):
            return False
    elif sp.issparse(X) or not (hasattr(X, "__getitem__")
                                and isinstance(getattr(X, "dtype", None), np.dtype)):
        return False
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) != 2:
        return False
    return shape[0] * shape[1] * 4 > BLOCK_BYTES * WINDOW_BLOCKS


class LazyRows:
    """An array read block by block, checked as its rows are read.

    Validating it does not read it: the dtype and the shape are checked at
    once, finiteness on every slice read (training and inference read every
    row). Slicing rows returns them as a NumPy array. ``dtype`` is what
    inference computes in: float64 for float64 input, float32 otherwise.
    """

    ndim = 2

    def __init__(self, X):
        self.X = X
        self.shape = tuple(int(size) for size in X.shape)
        self.dtype = np.dtype(np.float64 if X.dtype == np.float64 else np.float32)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        if not isinstance(rows, slice):
            raise TypeError("LazyRows reads contiguous rows only (a slice).")
        values = np.asarray(self.X[rows])
        # A finite float64 sum proves every value finite without a mask.
        if values.dtype.kind == "f" and not np.isfinite(values.sum(dtype=np.float64)) \
                and not np.isfinite(values).all():
            start, _, _ = rows.indices(self.shape[0])
            finite = np.isfinite(values).reshape(values.shape[0], -1).all(axis=1)
            raise ValueError(
                f"Input X contains NaN or infinity (first in row {start + finite.argmin()}). "
                "Remove or impute those values first, e.g. with SimpleImputer.")
        return values


def validate_rows(estimator, X, *, reset):
    """The :func:`validate_numeric` of an array read in blocks, without reading it.

    Checks the dtype (numbers), the width (``n_features_in_``) and column
    names as validation does, and returns a :class:`LazyRows`.
    """
    if np.dtype(X.dtype).kind not in "biuf":
        raise ValueError(
            f"X has dtype {X.dtype}; {type(estimator).__name__} needs numbers (bool, "
            "integer or float).")
    _check_n_features(estimator, X, reset=reset)
    _check_feature_names(estimator, X, reset=reset)
    return LazyRows(X)


def largest_magnitude(X, chunk_rows=1 << 14):
    """max |X| of an array, a sparse matrix or lazy rows, chunk by chunk."""
    if sp.issparse(X):
        return float(abs(X).max()) if X.nnz else 0.0
    return max(float(np.abs(np.asarray(X[start:start + chunk_rows])).max(initial=0))
               for start in range(0, X.shape[0], chunk_rows))


def checked_csr(X, input_name="X"):
    """A CSR matrix equal to ``X`` whose structure is checked and canonical.

    The checks are SciPy's full ones (``check_format(full_check=True)``):
    ``indptr`` starts at 0, never decreases and ends within ``indices``,
    and every column index lies in ``[0, n_columns)``. Without them a
    column index out of range is read from the wrong row, or makes torch
    raise an ``IndexError`` halfway through training. Rows with unsorted
    or repeated column indices are put in canonical form (sorted, repeats
    summed, as SciPy does) in a copy: ``X`` itself is never modified.
    """
    try:
        # A new matrix on the same arrays: checking it may prune or retype
        # its arrays, or cache flags, none of which must reach the caller's.
        view = type(X)((X.data, X.indices, X.indptr), shape=X.shape, copy=False)
        view.check_format(full_check=True)
    except ValueError as error:
        raise ValueError(
            f"{input_name} is not a valid CSR matrix: {error}. Its data, indices and "
            "indptr arrays were probably changed after it was built; build it with "
            "scipy.sparse's constructors, which check them.") from None
    if not view.has_canonical_format:
        # Batches are made dense by writing each nonzero once: duplicates
        # (which SciPy sums) are summed first, in a copy.
        view = view.copy()
        view.sum_duplicates()
    return view
