"""Every source of training batches, and the data that is not one plain array.

Sources give batches by index, so there is no per-sample Python and no
DataLoader: :class:`TensorSource` (rows in one float32 tensor on the device),
:class:`SparseSource` (CSR rows on the device, each batch made dense there),
:class:`StreamingSource` (rows in pinned host memory, copied to the GPU one
batch ahead) and :class:`BlockSource` (rows read from disk in shuffled
blocks); :func:`make_source` picks one for validated data.

A NumPy memmap, or any array-like that reads its rows on demand (HDF5, Zarr,
Dask arrays), is validated without being read (:func:`validate_rows`) and
wrapped in :class:`LazyRows`, which checks the values of every slice as it is
read. A CSR matrix is trained on as its three arrays; :func:`checked_csr`
checks that they describe a matrix before any of them is used as an index.
"""

import math

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import _check_feature_names, _check_n_features

from ._device import to_pinned_tensor, to_tensor

# On CUDA, training rows stay in pinned host memory and are streamed to the
# device batch by batch when, as float32, they would take more than this
# fraction of its free memory (the rest is for the network, its optimizer
# and its activations).
_DEVICE_MEMORY_FRACTION = 0.5


# --------------------------------------------------------------------------- #
# Arrays read in blocks, and sparse matrices.

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


# --------------------------------------------------------------------------- #
# Splitting and sampling rows.

def n_held_out(n_rows, fraction):
    """Rows held out for validation: ``ceil(fraction * n_rows)``."""
    return math.ceil(fraction * n_rows)


def split_rows(n_rows, fraction, generator):
    """A seeded split into ``(kept, held_out)`` row indices (CPU tensors)."""
    order = torch.randperm(n_rows, generator=generator)
    n_validation = n_held_out(n_rows, fraction)
    return order[n_validation:], order[:n_validation]


def sample_rows(source, generator, max_rows=10_000, min_rows=2):
    """A random sample of a source's rows, as a 2-D float64 NumPy array.

    Up to ``max_rows`` rows (fewer for very wide rows: at most 2**24 values,
    but at least ``min_rows``), drawn from ``generator``.
    """
    width = source.n_columns if hasattr(source, "n_columns") else math.prod(source.X.shape[1:])
    n_rows = min(source.n_rows, max_rows, max(min_rows, 2**24 // max(1, width)))
    sample, _ = next(iter(source.batches(n_rows, generator)))
    return sample.detach().to("cpu", torch.float64).numpy().reshape(sample.shape[0], -1)


# --------------------------------------------------------------------------- #
# Sources of batches.
#
# Every source of training rows has ``n_rows``, ``split(fraction, generator)``
# (kept and held-out rows, as two sources of the same kind) and
# ``batches(batch_size, generator=None, shard=None)``, which yields
# ``(X_batch, y_batch)`` pairs on the device covering every row once: in a
# random order drawn from ``generator`` (in order when it is None), and of
# that order only the share that ``shard`` (a callable on row positions, see
# :meth:`Replicas.shard`) keeps for this process.

def epoch_positions(n_rows, generator=None, shard=None):
    """The row positions of one epoch, as a CPU tensor, or None for ``0..n_rows-1``.

    A permutation drawn from ``generator`` (``torch.randperm``, so that every
    source draws the same order for the same rows), of which ``shard`` keeps
    this process's share.
    """
    order = None if generator is None else torch.randperm(n_rows, generator=generator)
    if shard is not None:
        order = shard(torch.arange(n_rows) if order is None else order)
    return order


def _split(source, fraction, generator):
    kept, held_out = split_rows(source.n_rows, fraction, generator)
    return source.take(kept), source.take(held_out)


class TensorSource:
    """Training rows held as one tensor on the device (and targets), batched by index.

    Parameters
    ----------
    X : torch.Tensor of shape (n_rows, ...)
    y : torch.Tensor of shape (n_rows, ...) or None
    """

    def __init__(self, X, y=None):
        self.X = X
        self.y = y

    @property
    def n_rows(self):
        return self.X.shape[0]

    def take(self, index):
        """The rows at ``index`` (a CPU index tensor), as a new source."""
        index = index.to(self.X.device)
        return TensorSource(self.X.index_select(0, index),
                            None if self.y is None else self.y.index_select(0, index))

    def split(self, fraction, generator):
        """``(kept, held_out)`` sources, as :func:`split_rows` splits the rows."""
        return _split(self, fraction, generator)

    def batches(self, batch_size, generator=None, shard=None):
        """``(X_batch, y_batch)`` pairs, as the source protocol above says."""
        X, y = self.X, self.y
        order = epoch_positions(self.n_rows, generator, shard)
        n_rows = self.n_rows if order is None else order.shape[0]
        if order is not None:
            order = order.to(X.device)
        for start in range(0, n_rows, batch_size):
            stop = min(start + batch_size, n_rows)
            if order is None:
                yield X[start:stop], None if y is None else y[start:stop]
            else:
                # index_select copies whole rows; X[index] is ~3x slower per batch.
                index = order[start:stop]
                yield X.index_select(0, index), None if y is None else y.index_select(0, index)


class SparseSource:
    """Training rows of a CSR matrix, kept compressed on the device.

    Each batch is made dense on the device from its rows' nonzeros, so memory
    holds the nonzeros plus one dense batch, never the dense matrix. The
    order of the rows is the one :class:`TensorSource` draws for the same
    generator, so a model trained on a sparse matrix is the one trained on
    its dense twin.

    Parameters
    ----------
    indptr, indices, values : torch.Tensor
        The CSR arrays (one row's nonzeros are ``indptr[i]:indptr[i + 1]``),
        on the device; ``indices`` and ``indptr`` of an integer dtype,
        ``values`` float32. Each (row, column) pair occurs at most once.
    n_columns : int
    y : torch.Tensor of shape (n_rows, ...) or None
    """

    def __init__(self, indptr, indices, values, n_columns, y=None):
        self.indptr = indptr.to(torch.int64)
        self.indices = indices
        self.values = values
        self.n_columns = int(n_columns)
        self.y = y

    @classmethod
    def from_csr(cls, indptr, indices, data, n_columns, device, y=None):
        """A source on ``device`` from the arrays of a SciPy CSR matrix (NumPy).

        Only the nonzeros are copied: column indices as int32 (widened per
        batch), values as float32.
        """
        index_dtype = torch.int32 if n_columns < 2**31 else torch.int64
        return cls(torch.as_tensor(np.asarray(indptr, dtype=np.int64), device=device),
                   torch.as_tensor(np.asarray(indices), device=device).to(index_dtype),
                   torch.as_tensor(np.asarray(data, dtype=np.float32), device=device),
                   n_columns, y)

    @property
    def n_rows(self):
        return self.indptr.shape[0] - 1

    @property
    def device(self):
        return self.values.device

    def _nonzeros(self, index):
        """For the rows at ``index`` (on the device): each nonzero's position
        in the batch, its position in ``indices``/``values``, and the counts."""
        starts = self.indptr[index]
        counts = self.indptr[index + 1] - starts
        batch_rows = torch.repeat_interleave(
            torch.arange(index.shape[0], device=index.device), counts)
        # The k-th nonzero of the batch is the (k - first[row])-th of its row.
        first = torch.cumsum(counts, 0) - counts
        positions = torch.arange(batch_rows.shape[0], device=index.device) + \
            torch.repeat_interleave(starts - first, counts)
        return batch_rows, positions, counts

    def take(self, index):
        index = index.to(self.device)
        _, positions, counts = self._nonzeros(index)
        indptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        return SparseSource(indptr, self.indices[positions], self.values[positions],
                            self.n_columns, None if self.y is None else self.y[index])

    def split(self, fraction, generator):
        return _split(self, fraction, generator)

    def dense(self, index):
        """The rows at ``index`` (a tensor on the device) as a dense float32 tensor."""
        batch_rows, positions, _ = self._nonzeros(index)
        rows = torch.zeros((index.shape[0], self.n_columns), dtype=self.values.dtype,
                           device=self.device)
        flat = batch_rows * self.n_columns + self.indices[positions].to(torch.int64)
        rows.view(-1).index_put_((flat,), self.values[positions])
        return rows

    def batches(self, batch_size, generator=None, shard=None):
        order = epoch_positions(self.n_rows, generator, shard)
        order = (torch.arange(self.n_rows) if order is None else order).to(self.device)
        for start in range(0, order.shape[0], batch_size):
            index = order[start:start + batch_size]
            yield self.dense(index), None if self.y is None else self.y[index]


class StreamingSource:
    """Training rows kept in (pinned) host memory and sent to the device batch by batch.

    For data that do not fit on the accelerator. The rows and their order
    are those :class:`TensorSource` gives for the same generator, so the
    model is the same as with the whole table on the device. On CUDA each
    batch's rows are gathered on the host into a pinned buffer and copied
    on a side stream while the device runs the previous steps (two buffers
    alternate); on other devices the batches are gathered and sent in turn.

    Parameters
    ----------
    X : torch.Tensor of shape (n_rows, ...)
        float32 rows on the CPU, pinned when ``device`` is CUDA.
    y : torch.Tensor of shape (n_rows, ...) or None
        Targets, on ``device``.
    device : torch.device
    """

    def __init__(self, X, y, device):
        self.X = X
        self.y = y
        self.device = torch.device(device)

    @classmethod
    def from_array(cls, X, y, device):
        """A source from a float32 CPU tensor, pinning it once for a CUDA device."""
        if torch.device(device).type == "cuda" and not X.is_pinned():
            X = X.pin_memory()
        return cls(X, y, device)

    @property
    def n_rows(self):
        return self.X.shape[0]

    def take(self, index):
        index = index.to("cpu")
        return StreamingSource.from_array(
            self.X.index_select(0, index),
            None if self.y is None else self.y.index_select(0, index.to(self.y.device)),
            self.device)

    def split(self, fraction, generator):
        return _split(self, fraction, generator)

    def batches(self, batch_size, generator=None, shard=None):
        order = epoch_positions(self.n_rows, generator, shard)
        order = torch.arange(self.n_rows) if order is None else order
        starts = range(0, order.shape[0], batch_size)
        if self.device.type != "cuda":
            for start in starts:
                index = order[start:start + batch_size]
                yield (self.X.index_select(0, index).to(self.device),
                       None if self.y is None else self.y[index.to(self.y.device)])
            return
        # Targets are on the device: index them with the order sent there once.
        device_order = None if self.y is None else order.to(self.device)
        copy_stream = torch.cuda.Stream(self.device)
        compute_stream = torch.cuda.current_stream(self.device)
        buffers = [torch.empty((batch_size, *self.X.shape[1:]), dtype=self.X.dtype,
                               pin_memory=True) for _ in range(2)]
        copies = [None, None]  # the event of the last copy out of each buffer

        def send(number):
            index = order[starts[number]:starts[number] + batch_size]
            slot = number % 2
            if copies[slot] is not None:
                copies[slot].synchronize()  # that copy has read the buffer
            host = buffers[slot][:index.shape[0]]
            torch.index_select(self.X, 0, index, out=host)
            with torch.cuda.stream(copy_stream):
                rows = host.to(self.device, non_blocking=True)
                copies[slot] = torch.cuda.Event()
                copies[slot].record(copy_stream)
            return rows, copies[slot]

        pending = send(0) if len(starts) else None
        for number in range(len(starts)):
            rows, copied = pending
            if number + 1 < len(starts):
                # Gather and send the next batch while the device works.
                pending = send(number + 1)
            compute_stream.wait_event(copied)
            rows.record_stream(compute_stream)  # allocated on the copy stream
            yield rows, None if self.y is None else self.y[
                device_order[starts[number]:starts[number] + batch_size]]


class BlockSource:
    """Training rows of an array read in contiguous blocks: data on disk.

    ``X`` is anything whose ``X[start:stop]`` gives rows as an array: a
    NumPy memmap, an HDF5 or Zarr dataset... Only contiguous slices are
    read, so reading stays fast on disk. The rows are cut into blocks of
    ``block_rows``; an epoch visits the blocks in a random order, reads
    ``blocks_per_window`` of them into one window of float32 rows (the only
    copy held in memory), and draws the window's batches in a random order
    of its rows. Every row is visited once per epoch, and a batch mixes rows
    from every block of its window.

    ``split`` holds out whole blocks (picked at random), so that scoring
    them reads only them.

    Parameters
    ----------
    X : array-like of shape (n_rows, ...)
        Sliceable along its first axis.
    block_rows, blocks_per_window : int
    device : torch.device
    blocks : list of (start, stop) or None
        The blocks to read (default: all of ``X``).
    """

    def __init__(self, X, *, block_rows, blocks_per_window, device, blocks=None):
        self.X = X
        self.block_rows = max(1, int(block_rows))
        self.blocks_per_window = max(1, int(blocks_per_window))
        self.device = torch.device(device)
        if blocks is None:
            n_rows = X.shape[0]
            blocks = [(start, min(start + self.block_rows, n_rows))
                      for start in range(0, n_rows, self.block_rows)]
        self.blocks = blocks

    @property
    def n_rows(self):
        return sum(stop - start for start, stop in self.blocks)

    def _with_blocks(self, blocks):
        return BlockSource(self.X, block_rows=self.block_rows,
                           blocks_per_window=self.blocks_per_window, device=self.device,
                           blocks=sorted(blocks))

    def split(self, fraction, generator):
        """Held-out rows as whole blocks drawn at random: at least
        ``n_held_out(n_rows, fraction)`` rows, and never every block."""
        wanted = n_held_out(self.n_rows, fraction)
        order = torch.randperm(len(self.blocks), generator=generator).tolist()
        held_out, n_rows = [], 0
        for index in order[:-1]:
            if n_rows >= wanted:
                break
            held_out.append(index)
            n_rows += self.blocks[index][1] - self.blocks[index][0]
        kept = sorted(set(range(len(self.blocks))) - set(held_out))
        return (self._with_blocks([self.blocks[i] for i in kept]),
                self._with_blocks([self.blocks[i] for i in held_out]))

    def windows(self, generator=None, batch_size=1):
        """The blocks of one epoch, grouped into windows (lists of (start, stop)).

        A window holds ``blocks_per_window`` blocks, or more when that is
        needed for four batches of ``batch_size`` rows.
        """
        per_window = max(self.blocks_per_window, math.ceil(4 * batch_size / self.block_rows))
        order = (range(len(self.blocks)) if generator is None
                 else torch.randperm(len(self.blocks), generator=generator).tolist())
        blocks = [self.blocks[i] for i in order]
        return [blocks[i:i + per_window] for i in range(0, len(blocks), per_window)]

    def batches(self, batch_size, generator=None, shard=None):
        pinned = self.device.type == "cuda"
        windows = self.windows(generator, batch_size)
        width = max(sum(stop - start for start, stop in window) for window in windows)
        # One buffer is refilled for every window (on CUDA once its copy to
        # the device is done); no batch is a view of it.
        buffer = torch.empty((width, *self.X.shape[1:]), dtype=torch.float32,
                             pin_memory=pinned)
        copied = None
        for window in windows:
            if copied is not None:
                copied.synchronize()  # the last window's copy has read the buffer
            n_rows = 0
            for start, stop in window:
                # One contiguous read, converted to float32 as it is copied.
                buffer.numpy()[n_rows:n_rows + stop - start] = self.X[start:stop]
                n_rows += stop - start
            rows = buffer[:n_rows]
            if pinned:
                rows = rows.to(self.device, non_blocking=True)
                copied = torch.cuda.Event()
                copied.record()
            order = epoch_positions(n_rows, generator, shard)
            if order is None:
                for start in range(0, n_rows, batch_size):
                    batch = rows[start:start + batch_size]
                    yield (batch if pinned else batch.clone()), None
                continue
            order = order.to(self.device)
            for start in range(0, order.shape[0], batch_size):
                yield rows.index_select(0, order[start:start + batch_size]), None


def make_source(X, y, device):
    """The source of batches for validated ``X`` (and targets ``y``) on ``device``.

    A sparse matrix stays sparse (on the device), an array on disk is read
    in blocks, and an in-memory array becomes one tensor on the device,
    or, on a GPU whose free memory it would crowd, one in pinned host
    memory streamed batch by batch (the same model either way).
    """
    y = None if y is None else torch.as_tensor(y, device=device)
    if sp.issparse(X):
        return SparseSource.from_csr(X.indptr, X.indices, X.data, X.shape[1], device, y)
    if isinstance(X, LazyRows):
        return BlockSource(X, block_rows=block_rows(X), blocks_per_window=WINDOW_BLOCKS,
                           device=device)
    if device.type == "cuda":
        free_bytes = torch.cuda.mem_get_info(device)[0]
        if 4 * X.shape[0] * max(1, math.prod(X.shape[1:])) > \
                _DEVICE_MEMORY_FRACTION * free_bytes:
            return StreamingSource.from_array(to_pinned_tensor(X), y, device)
    return TensorSource(to_tensor(X, device), y)
