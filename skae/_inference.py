"""Inference in row chunks: how many rows a chunk holds, and the loop over them.

Every ``transform``, ``inverse_transform``, ``score_samples`` and
``predict`` runs through :func:`predict_in_chunks` under
:func:`torch.inference_mode`; :func:`chunk_rows` sizes the chunks from the
widest layer a row passes through (:func:`row_footprint`).
"""

import math

import numpy as np
import torch

from ._device import check_memory

# Rows per inference chunk are chosen so that one chunk's widest activation
# holds about this many floats (256 KiB in float32): a chunk and its
# activations stay in the core's cache from the copy to the last product
# (16 MiB chunks, which leave it, made transform of the default autoencoder
# 1.6x slower in benchmarks/bench_training.py). Wide rows still get 256 rows
# a chunk, up to 64 times that size (16 MiB), because products of a dozen
# rows are slow (2.3x at 5,000 features); see chunk_rows.
_CHUNK_FLOATS = 1 << 16


def chunk_rows(row_width):
    """Rows per inference chunk for rows that occupy at most ``row_width``
    values in any layer."""
    return max(1, _CHUNK_FLOATS // row_width,
               min(_CHUNK_FLOATS // 256, 64 * _CHUNK_FLOATS // row_width))


def widest_row(module, n_features):
    """The most values one input row occupies in the input or any layer's output.

    Found by running one zero row through ``module`` (in eval mode, without
    gradients) and recording every submodule's output; used to size the
    row chunks of inference.
    """
    return row_footprint(module, n_features)[0]


def row_footprint(module, n_features):
    """``(widest, total)``: the values one input row occupies at most in the
    input or any layer's output (see :func:`widest_row`), and in the outputs
    of all the innermost layers together, which a training step keeps for
    its backward pass: the memory of a batch is at least ``total`` values a row.
    """
    widths = [n_features]
    total = [0]

    def record(submodule, _inputs, output):
        for tensor in output if isinstance(output, tuple) else (output,):
            if isinstance(tensor, torch.Tensor) and tensor.ndim > 0:
                widths.append(tensor[0].numel())
                if next(submodule.children(), None) is None:
                    total[0] += tensor[0].numel()

    device = next(module.parameters()).device
    was_training = module.training
    handles = [submodule.register_forward_hook(record) for submodule in module.modules()]
    try:
        module.eval()
        with torch.inference_mode():
            module(torch.zeros(1, n_features, device=device))
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    return max(widths), total[0]


def predict_in_chunks(function, X, device, chunk_size, dtype):
    """Apply ``function`` to row chunks of the array ``X`` without gradients.

    ``function`` maps a tensor of rows on ``device`` to a tensor with one row
    per input row. ``X`` is anything that slices rows into arrays: a NumPy
    array or memmap, or a SciPy sparse matrix (made dense chunk by chunk).
    Each chunk is converted to ``dtype`` (float32 or float64) once, on its
    way to the device; results are gathered on the CPU into one NumPy array
    of ``dtype``.

    Rows do not depend on the other rows of their chunk, so results agree
    whatever the chunk size to rounding: not bitwise, because BLAS kernels
    (MKL's among them) pick their summation order by matrix size and CPU.
    """
    dtype = np.dtype(dtype)
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    n_samples = X.shape[0]
    out = buffer = None
    with torch.inference_mode():
        for start in range(0, n_samples, chunk_size):
            rows = X[start:start + chunk_size]
            if hasattr(rows, "toarray"):  # sparse rows: dense one chunk at a time
                rows = rows.toarray()
            if buffer is None:
                # One copy of each chunk into memory torch allocated, converting
                # the dtype on the way: aligned alike in every call, so that a
                # repeated call repeats its result bitwise. The buffer serves
                # every chunk, so its pages are faulted in once, and a chunk
                # the size of a cache stays in it from the copy to the product.
                buffer = torch.empty((rows.shape[0], *X.shape[1:]), dtype=torch_dtype)
            chunk = buffer[:rows.shape[0]]
            chunk.numpy()[...] = rows
            result = function(chunk.to(device)).to("cpu")
            if out is None:
                shape = (n_samples, *result.shape[1:])
                check_memory(math.prod(shape) * dtype.itemsize, "cpu",
                             f"The output for {n_samples} rows, of shape {shape} in {dtype},",
                             "pass fewer rows at a time")
                out = np.empty(shape, dtype=dtype)
            out[start:start + rows.shape[0]] = result.numpy()
    return out
