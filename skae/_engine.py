"""The one training loop shared by every skae estimator.

An estimator hands the engine a built network, a loss function, an optimizer
and a source of batches; the engine knows nothing else about it and speaks
only of its own arguments. The loop is a chain of small steps, as in skorch:
:func:`fit_loop` runs epochs and decides when to stop, :meth:`Trainer.run_epoch`
runs one pass over the batches of a source in a seeded order, and
:meth:`Trainer.train_step` does one optimizer step: through autograd, or for a
plain dense autoencoder through the hand-written step of :mod:`skae._fastpath`.

Sources give batches by index, so there is no per-sample Python and no
DataLoader: :class:`TensorSource` (rows in one float32 tensor on the device),
:class:`SparseSource` (CSR rows on the device, each batch made dense there),
:class:`StreamingSource` (rows in pinned host memory, copied to the GPU one
batch ahead) and :class:`BlockSource` (rows read from disk in shuffled
blocks). :class:`Replicas` trains one model on several processes with
DistributedDataParallel.
"""

import contextlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ._callbacks import EpochRecord, TrainingSummary
from ._device import check_memory
from ._fastpath import dense_step


class TrainingDivergedError(ValueError):
    """Training produced a loss, a validation score or weights that are not finite.

    Raised by ``fit`` and ``partial_fit``, which then leave the estimator as
    it was before the call. The usual causes are input that is not scaled
    (use :class:`~sklearn.preprocessing.StandardScaler` or
    :class:`~sklearn.preprocessing.MinMaxScaler`) and a learning rate that is
    too high (lower ``learning_rate_init``).
    """


class Adam:
    """Adam [1]_ with a coupled L2 penalty, as :class:`torch.optim.Adam` computes it.

    skae steps its own optimizer because every method of ``torch.optim``'s
    optimizers imports ``torch._dynamo`` on first use, which costs one to
    several seconds in a fresh process: longer than a whole fit of the digits.
    The update calls torch's fused Adam kernel where the device has one (the
    kernel ``torch.optim.Adam(fused=True)`` runs) and a plain tensor
    implementation of the same formula elsewhere.

    Parameters
    ----------
    param_groups : list of dict
        Each with ``"params"`` and ``"weight_decay"``; other keys are kept.
    lr : float
        Learning rate, stored per group as ``"lr"`` (change it there).
    betas : tuple of float, default=(0.9, 0.999)
    eps : float, default=1e-8

    References
    ----------
    .. [1] D. P. Kingma and J. Ba, "Adam: A method for stochastic
       optimization", ICLR 2015.
    """

    def __init__(self, param_groups, lr, betas=(0.9, 0.999), eps=1e-8):
        self.param_groups = [dict(group, lr=lr, params=list(group["params"]))
                             for group in param_groups]
        self.betas = betas
        self.eps = eps
        # Per group: step counts (one float32 vector, one entry a parameter),
        # first and second moments; built on the first step.
        self._moments = [None] * len(self.param_groups)
        self._plan = self._plan_key = None
        device = self.param_groups[0]["params"][0].device if self.param_groups else None
        self._fused = (hasattr(torch, "_fused_adam_") and device is not None
                       and device.type in ("cpu", "cuda", "mps"))

    def zero_grad(self):
        for group in self.param_groups:
            for parameter in group["params"]:
                parameter.grad = None

    def _init_moments(self, params):
        return (
            torch.zeros(len(params), dtype=torch.float32, device=params[0].device),
            [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
            [torch.zeros_like(p, memory_format=torch.preserve_format) for p in params],
        )

    def _make_plan(self, active):
        """Kernel calls for this step: one per distinct (lr, weight_decay).

        Each call costs microseconds, about as much as the whole update of a
        small network, so groups with equal hyper-parameters (e.g. weights and
        biases when alpha=0) share one. ``active[i]`` lists the indices of the
        parameters of group ``i`` that have a gradient.
        """
        calls = {}
        for index, group in enumerate(self.param_groups):
            if not active[index]:
                continue
            if self._moments[index] is None:
                self._moments[index] = self._init_moments(group["params"])
            step_counts, exp_avgs, exp_avg_sqs = self._moments[index]
            # 0-d views into the group's step vector: the fused kernel reads
            # one tensor a parameter, and one add_ advances them all.
            steps = step_counts.unbind()
            call = calls.setdefault((group["lr"], group["weight_decay"]), ([], [], [], []))
            for i in active[index]:
                call[0].append(group["params"][i])
                call[1].append(exp_avgs[i])
                call[2].append(exp_avg_sqs[i])
                call[3].append(steps[i])
        return list(calls.items())

    @torch.no_grad()
    def step(self):
        groups = self.param_groups
        everything = all(p.grad is not None for group in groups for p in group["params"])
        key = tuple((group["lr"], group["weight_decay"]) for group in groups)
        if everything and self._plan_key == key:
            plan = self._plan
        else:
            # Parameters that took no part in the loss are not moved and their
            # step counts do not advance (as in torch.optim).
            active = [[i for i, p in enumerate(group["params"]) if p.grad is not None]
                      for group in groups]
            plan = self._make_plan(active)
            self._plan, self._plan_key = (plan, key) if everything else (None, None)
        if everything:
            for step_counts, _, _ in self._moments:
                step_counts.add_(1)
        else:
            for _, (_, _, _, steps) in plan:
                for step in steps:
                    step.add_(1)
        beta1, beta2 = self.betas
        for (lr, weight_decay), (params, exp_avgs, exp_avg_sqs, steps) in plan:
            grads = [p.grad for p in params]
            if self._fused:
                try:
                    torch._fused_adam_(
                        params, grads, exp_avgs, exp_avg_sqs, [], steps,
                        lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
                        eps=self.eps, amsgrad=False, maximize=False,
                    )
                    continue
                except Exception:  # noqa: BLE001 - any failure of a private op
                    # No fused kernel for this device or torch build (older
                    # releases, MPS), or a changed private signature: the op
                    # checks its arguments before it writes anything, so the
                    # plain formula can take this step and every later one.
                    self._fused = False
            self._reference_step(params, grads, exp_avgs, exp_avg_sqs, steps, lr, weight_decay)

    def _reference_step(self, params, grads, exp_avgs, exp_avg_sqs, steps, lr, weight_decay):
        beta1, beta2 = self.betas
        for param, grad, exp_avg, exp_avg_sq, step in zip(
                params, grads, exp_avgs, exp_avg_sqs, steps):
            if weight_decay:
                grad = grad.add(param, alpha=weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            count = float(step)
            bias_correction1 = 1 - beta1 ** count
            bias_correction2 = 1 - beta2 ** count
            denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)

    def state_dict(self):
        """Hyper-parameters and moments (tensors on their device, not copied)."""
        return {
            "param_groups": [{k: v for k, v in group.items() if k != "params"}
                             for group in self.param_groups],
            "moments": [None if moments is None
                        else (moments[0].detach(), *[[t.detach() for t in seq]
                                                     for seq in moments[1:]])
                        for moments in self._moments],
        }

    def load_state_dict(self, state):
        for group, saved in zip(self.param_groups, state["param_groups"]):
            group.update(saved)
        self._moments = []
        for group, moments in zip(self.param_groups, state["moments"]):
            if moments is None:
                self._moments.append(None)
                continue
            device = group["params"][0].device
            step_counts, exp_avgs, exp_avg_sqs = moments
            self._moments.append((
                step_counts.to(device, dtype=torch.float32, copy=True),
                [t.to(device, copy=True) for t in exp_avgs],
                [t.to(device, copy=True) for t in exp_avg_sqs],
            ))
        self._plan = self._plan_key = None


def make_optimizer(module, learning_rate, alpha):
    """:class:`Adam` over the trainable parameters, with L2 penalty ``alpha`` on
    weights (not on biases or normalisation parameters)."""
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.ndim > 1 and name.endswith("weight") else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": alpha, "decayed": True},
              {"params": no_decay, "weight_decay": 0.0, "decayed": False}]
    return Adam([group for group in groups if group["params"]], lr=learning_rate)


# --------------------------------------------------------------------------- #
# Loop helpers.

def n_held_out(n_rows, fraction):
    """Rows held out for validation: ``ceil(fraction * n_rows)``."""
    return math.ceil(fraction * n_rows)


def split_rows(n_rows, fraction, generator):
    """A seeded split into ``(kept, held_out)`` row indices (CPU tensors)."""
    order = torch.randperm(n_rows, generator=generator)
    n_validation = n_held_out(n_rows, fraction)
    return order[n_validation:], order[:n_validation]


def resolve_batch_size(batch_size, n_rows, auto=200):
    """``"auto"`` is ``min(auto, n_rows)``; any size is clipped to ``n_rows``."""
    return min(auto if batch_size == "auto" else batch_size, n_rows)


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


# --------------------------------------------------------------------------- #
# Several processes training one model.

class Replicas:
    """The processes of a :mod:`torch.distributed` group that train one model.

    Each process (a *replica*) holds the same rows and the same seeds, trains
    on its share of every epoch's order (:meth:`shard`) through
    :class:`~torch.nn.parallel.DistributedDataParallel`, which averages the
    gradients, and all-reduces the figures that decide when to stop, so
    that every replica takes the same decisions.

    Parameters
    ----------
    device : torch.device
        Where this process trains; collectives run there with NCCL, on the
        CPU otherwise.
    group : ProcessGroup or None
        None is the default group.
    """

    def __init__(self, device, group=None):
        import torch.distributed as dist

        self._dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.device = torch.device(device)
        backend = str(dist.get_backend(group))
        self._collective_device = (self.device if "nccl" in backend and
                                   self.device.type == "cuda" else torch.device("cpu"))

    def shard(self, positions):
        """This replica's share of an epoch's ``positions``, as DistributedSampler cuts it.

        The positions are padded (repeating the first ones) to a multiple of
        the number of replicas, so that every replica runs the same number of
        steps; replica ``r`` keeps ``positions[r::world_size]``, so that the
        ``k``-th batches of all replicas together are the ``k``-th batch of
        ``world_size`` times the size in a single process.
        """
        n_rows = positions.shape[0]
        padding = -n_rows % self.world_size
        if padding:
            repeats = math.ceil(padding / n_rows)
            positions = torch.cat([positions, positions.repeat(repeats)[:padding]])
        return positions[self.rank::self.world_size]

    def shard_without_padding(self, positions):
        """This replica's share of ``positions``, each position in exactly one share."""
        return positions[self.rank::self.world_size]

    def sum(self, values):
        """The sums over the replicas of a list of numbers (float64)."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self._collective_device)
        self._dist.all_reduce(tensor, group=self.group)
        return tensor.tolist()

    def any(self, flag):
        """Whether any replica says yes."""
        return self.sum([float(bool(flag))])[0] > 0

    def agree(self, value):
        """Whether every replica has the same integer ``value``."""
        tensor = torch.tensor([-int(value), int(value)], dtype=torch.int64,
                              device=self._collective_device)
        self._dist.all_reduce(tensor, op=self._dist.ReduceOp.MAX, group=self.group)
        return -int(tensor[0]) == int(tensor[1])

    def broadcast(self, value):
        """Replica 0's ``value`` (an int64), on every replica."""
        tensor = torch.tensor([int(value)], dtype=torch.int64, device=self._collective_device)
        self._dist.broadcast(tensor, src=self._dist.get_global_rank(self.group, 0)
                             if self.group is not None else 0, group=self.group)
        return int(tensor[0])

    def wrap(self, module, loss_fn):
        """The loss as a DistributedDataParallel module (see :class:`LossModule`)."""
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index or 0] if self.device.type == "cuda" else None
        return DistributedDataParallel(LossModule(module, loss_fn), device_ids=device_ids,
                                       broadcast_buffers=False, process_group=self.group)


#: What a launcher (torchrun, torch.distributed.run, or any that follows its
#: convention) sets in each process it starts: ``init_process_group``'s
#: ``env://`` reads the first four.
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK")


def launched_by_a_launcher():
    """Whether this process was started by torchrun or a launcher like it."""
    return all(name in os.environ for name in LAUNCHER_VARIABLES)


class _LauncherStore:
    """The launcher's key-value store, joined once per process.

    Every group skae starts keeps its keys under a prefix of its own: torch
    names a new default group as the one destroyed before it, and on the same
    keys its rendezvous would read the old group's addresses and hang.
    """

    store = rank = world_size = None
    n_groups = 0

    @classmethod
    def next_group(cls):
        import torch.distributed as dist

        if cls.store is None:
            cls.store, cls.rank, cls.world_size = next(dist.rendezvous("env://"))
        cls.n_groups += 1
        return dist.PrefixStore(f"skae_group_{cls.n_groups}", cls.store)


@contextlib.contextmanager
def launcher_process_group(backend):
    """The default process group for a block, started from the launcher's environment.

    When this process was started by a launcher and no default group
    exists, one is initialised with ``backend`` and destroyed when the block
    ends; otherwise nothing is done (a group the script made is its own).
    Every process must enter such blocks in the same order (as they make the
    same fit calls). Yields whether it made a group.
    """
    import torch.distributed as dist

    if not (dist.is_available() and launched_by_a_launcher()) or dist.is_initialized():
        yield False
        return
    if backend == "nccl":
        # NCCL binds each process to its GPU.
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    store = _LauncherStore.next_group()
    dist.init_process_group(backend, store=store, rank=_LauncherStore.rank,
                            world_size=_LauncherStore.world_size)
    try:
        yield True
    finally:
        dist.destroy_process_group()


class LossModule(torch.nn.Module):
    """A network and its loss as one module.

    DistributedDataParallel averages gradients only for a forward pass run
    through it, and a loss may call any part of the network (an encoder,
    then a decoder): wrapping the loss makes the whole pass one forward.
    """

    def __init__(self, network, loss_fn):
        super().__init__()
        self.network = network
        self.loss_fn = loss_fn

    def forward(self, X, y, generator):
        return self.loss_fn(self.network, X, y, generator)


# --------------------------------------------------------------------------- #
# One step, one epoch.

class Trainer:
    """Runs minibatch training of one module with one loss.

    Parameters
    ----------
    module : torch.nn.Module
        The network, already on its device.
    loss_fn : callable
        ``loss_fn(module, X_batch, y_batch, generator) -> (loss, parts)``
        where ``loss`` is a scalar tensor (mean over the batch) and ``parts``
        a dict of named scalar tensors to record per epoch (may be empty).
        ``generator`` is a device generator for any noise the loss draws.
    optimizer : Adam
    batch_size : int
        Rows per step (per replica with ``replicas``).
    shuffle_generator : torch.Generator or None
        CPU generator for the order of the rows in every epoch; None keeps
        the rows in order.
    noise_generator : torch.Generator or None
        Generator on the module's device, passed to ``loss_fn``.
    autocast_dtype : torch.dtype or None
        Run the forward pass and the loss under :func:`torch.autocast` with
        this dtype (``torch.bfloat16``); the weights, their gradients and the
        optimizer stay float32. None computes in float32.
    replicas : Replicas or None
        Train one model with the other processes of a torch.distributed
        group: this process steps on its shard of every epoch through
        DistributedDataParallel (whose gradient hooks need autograd), and
        the epoch's figures are summed over the replicas.
    fast_path : bool, default=True
        Let a network and loss that :func:`~skae._fastpath.dense_step`
        recognises train through its hand-written step; False always uses
        :meth:`autograd_step`. Both compute the same gradients to float
        rounding and draw the same random numbers. The hand-written step is
        never used under autocast or with replicas (DistributedDataParallel
        averages gradients through autograd's hooks). Should it fail (it calls
        private torch ops), that step and every later one run through
        :meth:`autograd_step`.

    Attributes
    ----------
    train_step : callable
        ``train_step(X_batch, y_batch) -> (loss, parts)``: one optimizer
        step, the hand-written one or :meth:`autograd_step`.
    """

    def __init__(self, module, loss_fn, optimizer, *, batch_size, shuffle_generator=None,
                 noise_generator=None, autocast_dtype=None, replicas=None, fast_path=True):
        self.module = module
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.shuffle_generator = shuffle_generator
        self.noise_generator = noise_generator
        self.autocast_dtype = autocast_dtype
        self.replicas = replicas
        self._replicated = None if replicas is None else replicas.wrap(module, loss_fn)
        #: The loss of the network as it was before its first step (on the
        #: first batch), and the mean square of that batch's values: the
        #: scales :class:`DivergenceRule` measures an epoch's loss against.
        self.starting_loss = self.data_scale = None
        self.train_step = (
            fast_path and replicas is None and autocast_dtype is None
            and dense_step(module, loss_fn, optimizer, noise_generator, self.autograd_step)
        ) or self.autograd_step

    @property
    def learning_rate(self):
        return self.optimizer.param_groups[0]["lr"] if self.optimizer.param_groups else math.nan

    def scale_learning_rate(self, factor):
        for group in self.optimizer.param_groups:
            group["lr"] *= factor

    def _loss(self, X_batch, y_batch):
        if self._replicated is not None:
            return self._replicated(X_batch, y_batch, self.noise_generator)
        return self.loss_fn(self.module, X_batch, y_batch, self.noise_generator)

    def autograd_step(self, X_batch, y_batch):
        """One optimizer step through autograd: the reference every step matches."""
        self.optimizer.zero_grad()
        if self.autocast_dtype is None:
            loss, parts = self._loss(X_batch, y_batch)
        else:
            with torch.autocast(X_batch.device.type, dtype=self.autocast_dtype):
                loss, parts = self._loss(X_batch, y_batch)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), parts

    def run_epoch(self, source, stop_requested=lambda: False):
        """One pass over ``source``; returns the mean loss and parts.

        ``stop_requested()`` is asked after every batch; when it says yes the
        epoch ends there, and the means cover the rows it trained on. With
        replicas it is not asked (every replica must run the same steps; the
        loop asks them all together after the epoch), and the means are over
        the rows of every replica.
        """
        self.module.train()
        total = None
        part_totals = {}
        n_seen = 0
        shard = None if self.replicas is None else self.replicas.shard
        replicated = self.replicas is not None
        for X_batch, y_batch in source.batches(self.batch_size, self.shuffle_generator, shard):
            loss, parts = self.train_step(X_batch, y_batch)
            if self.starting_loss is None:  # the loss is computed before the step
                self.starting_loss = float(loss)
                self.data_scale = float(X_batch.detach().to(torch.float32).square().mean())
            weight = X_batch.shape[0]
            n_seen += weight
            total = loss * weight if total is None else total + loss * weight
            for name, value in parts.items():
                value = value.detach() * weight
                part_totals[name] = part_totals[name] + value if name in part_totals else value
            if not replicated and stop_requested():
                break
        self.module.eval()
        # One synchronisation per epoch, not per step.
        if replicated:
            names = list(part_totals)
            sums = self.replicas.sum([total.item(), n_seen,
                                      *[part_totals[name].item() for name in names]])
            return sums[0] / sums[1], {name: value / sums[1]
                                       for name, value in zip(names, sums[2:])}
        mean_loss = total.item() / n_seen
        parts = {name: value.item() / n_seen for name, value in part_totals.items()}
        return mean_loss, parts


@dataclass
class Validation:
    """What early stopping scores each epoch on.

    ``score_fn(module, X_batch, y_batch, generator)`` returns one score per
    row (greater is better); the epoch's score is their mean over
    ``source``, computed in batches of ``batch_size`` rows without
    gradients. ``generator`` is a new generator from ``generator_factory``
    at every scoring (None without one), so that a score drawing random
    numbers (a denoising error on corrupted rows) draws the same ones each
    epoch and the epochs are compared on equal terms. With ``replicas`` each
    replica scores its share of the rows and the sums are all-reduced, so
    that all get the same score.
    """

    score_fn: object
    source: object
    batch_size: int
    replicas: object = None
    generator_factory: object = None

    def score(self, module):
        module.eval()
        total, n_rows = 0.0, 0
        shard = None if self.replicas is None else self.replicas.shard_without_padding
        generator = None if self.generator_factory is None else self.generator_factory()
        with torch.inference_mode():
            for X_batch, y_batch in self.source.batches(self.batch_size, shard=shard):
                total += float(self.score_fn(module, X_batch, y_batch, generator).sum())
                n_rows += X_batch.shape[0]
        if self.replicas is not None:
            total, n_rows = self.replicas.sum([total, n_rows])
        return total / n_rows


# --------------------------------------------------------------------------- #
# Interrupts.

class _InterruptFlag:
    requested = False


_active_flag = None


@contextlib.contextmanager
def deferred_interrupts():
    """Turn Ctrl-C (SIGINT) into a request that the loop honours between batches.

    Yields a flag whose ``requested`` becomes True on the first SIGINT; a
    second one raises :class:`KeyboardInterrupt` at once. Only the main
    thread receives signals, and only torch's default handler is replaced
    (a handler installed by the user or a framework is left alone); nested
    loops share the outer flag.
    """
    global _active_flag
    if _active_flag is not None or threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield _active_flag or _InterruptFlag()
        return
    flag = _InterruptFlag()

    def handler(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    _active_flag = flag
    try:
        yield flag
    finally:
        _active_flag = None
        signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------- #
# The epoch loop.

@dataclass
class History:
    """The record of one call of :func:`fit_loop`."""

    loss_curve: list = field(default_factory=list)
    parts_curves: dict = field(default_factory=dict)
    validation_scores: list = field(default_factory=list)
    best_loss: float = math.inf
    best_validation_score: float = -math.inf
    best_epoch: int | None = None
    initial_validation_score: float | None = None
    lr_reductions: int = 0
    n_epochs: int = 0
    stop_reason: str = "max_iter"
    message: str = ""

    @property
    def stopped_early(self):
        return self.stop_reason != "max_iter"


def _notify(callbacks, hook, *args, **kwargs):
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args, **kwargs)


def _check_finite(value, what, epoch):
    if not math.isfinite(value):
        raise TrainingDivergedError(f"The {what} became {value} (not finite) in epoch {epoch}.")


@dataclass
class DivergenceRule:
    """Training diverged when an epoch's mean loss explodes.

    The reference is the largest of two scales measured before any step and
    a floor: the loss of the starting network on the first batch (the loss
    is computed before the step); the mean square of that batch's values,
    the error of reconstructing every row as zeros, for a start that
    already fits almost perfectly (an autoencoder set up as PCA on data of
    low rank), where Adam's first steps alone raise the loss many times
    over; and ``floor``, since Adam moves each weight by about the learning
    rate a step whatever the data's scale (on rows of 1e-8 a healthy loss
    grew from 1e-16 to 1e-10). An epoch whose mean loss is more than
    ``factor`` times the reference has diverged: a too-high learning rate
    takes the loss there in the first epoch (1e14 times the data's variance
    at ``learning_rate_init=10`` on the digits), and then keeps training far
    from any useful model even where the loss stays finite.
    """

    factor: float = 1e3
    floor: float = 1.0
    reference: float = math.inf

    def start(self, starting_loss, data_scale):
        self.reference = max(abs(starting_loss), data_scale, self.floor)

    def check(self, loss, epoch):
        """Raise :class:`TrainingDivergedError` if ``loss`` has exploded."""
        if loss > self.factor * self.reference:
            raise TrainingDivergedError(
                f"The training loss reached {loss:.3g} in epoch {epoch}, more than "
                f"{self.factor:g} times its scale when training started ({self.reference:.3g}): "
                "training diverged.")


def fit_loop(trainer, source, *, max_iter, tol, n_iter_no_change, validation=None,
             callbacks=(), first_epoch=1, phase="fit", name="model", single_call=False,
             lr_reductions=1, lr_factor=0.1, relative_tol=True):
    """Train for up to ``max_iter`` epochs, stopping once progress stalls.

    An epoch makes progress when its criterion (minus the training loss, or
    with a :class:`Validation` its score, greater is better) beats the best
    so far by more than ``tol`` times the best's magnitude: a relative
    tolerance, the same on data of any scale (with ``relative_tol=False``,
    by more than ``tol`` itself, for a criterion of fixed scale such as a
    cross-entropy in nats, which a relative rule would follow down towards
    zero without end). After ``n_iter_no_change``
    epochs without progress the learning rate is multiplied by
    ``lr_factor``, at most ``lr_reductions`` times; the next such stall ends
    training (converged). With a :class:`Validation`, the network as it is
    before the first epoch is scored too and counts as a candidate, and the
    weights of the best one are restored at the end: training never returns
    a network that scores worse on the held-out rows than the one it began
    with.

    Each callback is called as ``callback(EpochRecord)`` after every epoch; a
    truthy return value stops training. Callbacks with ``on_train_begin`` and
    ``on_train_end`` methods (see :class:`skae.Callback`) hear of the phase's
    start and end. ``single_call`` marks a one-epoch call (``partial_fit``):
    the records then say ``max_iter=None``.

    A first Ctrl-C (SIGINT) ends training after the current batch, keeping
    (with validation: restoring the best of) the weights so far; during the
    first epoch of the call it raises :class:`KeyboardInterrupt` instead.

    With ``trainer.replicas``, a Ctrl-C or a callback's stop on any replica
    stops them all at the end of the epoch, and the losses and scores the
    rules read are the replicas' common ones: every replica stops at the
    same epoch with the same weights.

    Raises
    ------
    TrainingDivergedError
        When the loss, the validation score or a weight is not finite, or
        the loss explodes (see :class:`DivergenceRule`).
    """
    history = History()
    divergence = DivergenceRule()
    module = trainer.module
    replicas = trainer.replicas
    best_state = None
    best_criterion = -math.inf
    no_improvement = reductions = 0
    last_epoch = first_epoch + max_iter - 1
    criterion_name = "training loss" if validation is None else "validation score"
    _notify(callbacks, "on_train_begin", name=name, phase=phase, n_samples=source.n_rows,
            batch_size=trainer.batch_size, max_iter=None if single_call else last_epoch)
    if validation is not None:
        best_criterion = validation.score(module)
        _check_finite(best_criterion, "validation score", first_epoch - 1)
        history.initial_validation_score = history.best_validation_score = best_criterion
        history.best_epoch = first_epoch - 1
        best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    with deferred_interrupts() as interrupt:
        for epoch in range(first_epoch, last_epoch + 1):
            started = time.perf_counter()
            loss, parts = trainer.run_epoch(source, lambda: interrupt.requested)
            if replicas is not None:
                interrupt.requested = replicas.any(interrupt.requested)
            if interrupt.requested and epoch == first_epoch:
                interrupt.requested = False
                raise KeyboardInterrupt
            _check_finite(loss, "training loss", epoch)
            if epoch == first_epoch:
                start = [trainer.starting_loss, trainer.data_scale]
                if replicas is not None:  # every replica must judge alike
                    start = [value / replicas.world_size for value in replicas.sum(start)]
                divergence.start(*start)
            divergence.check(loss, epoch)
            history.n_epochs += 1
            history.loss_curve.append(loss)
            for part, value in parts.items():
                history.parts_curves.setdefault(part, []).append(value)
            history.best_loss = min(history.best_loss, loss)
            score = None
            criterion = -loss
            if validation is not None:
                score = validation.score(module)
                _check_finite(score, "validation score", epoch)
                history.validation_scores.append(score)
                criterion = score
            margin = (0.0 if not math.isfinite(best_criterion)
                      else tol * abs(best_criterion) if relative_tol else tol)
            improved = criterion > best_criterion + margin
            if criterion > best_criterion:
                best_criterion = criterion
                history.best_epoch = epoch
                if validation is not None:
                    history.best_validation_score = score
                    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            no_improvement = 0 if improved else no_improvement + 1
            record = EpochRecord(
                phase=phase, epoch=epoch, max_iter=None if single_call else last_epoch,
                loss=loss, parts=dict(parts), validation_score=score, improved=improved,
                seconds=time.perf_counter() - started, learning_rate=trainer.learning_rate)
            stop_requested = any([bool(callback(record)) for callback in callbacks])
            if replicas is not None:
                stop_requested = replicas.any(stop_requested)
            n_done = epoch - first_epoch + 1
            if interrupt.requested:
                interrupt.requested = False  # honoured; an outer phase may go on
                history.stop_reason = "interrupted"
                history.message = f"interrupted (KeyboardInterrupt) after {n_done} epochs"
                break
            if no_improvement > n_iter_no_change and reductions < lr_reductions:
                reductions += 1
                no_improvement = 0
                trainer.scale_learning_rate(lr_factor)
            elif no_improvement > n_iter_no_change:
                history.stop_reason = "converged"
                history.message = (
                    f"converged after {n_done} epochs (the {criterion_name} did not improve "
                    f"on its best by more than tol={tol:g}{' of it' if relative_tol else ''} "
                    f"for {n_iter_no_change} "
                    f"epochs at learning rate {trainer.learning_rate:.3g})")
                break
            if stop_requested:
                history.stop_reason = "callback"
                history.message = f"stopped by a callback after {n_done} epochs"
                break
        else:
            history.message = (f"one epoch over {source.n_rows} samples" if single_call else
                               f"max_iter={max_iter} reached after {max_iter} epochs")
    history.lr_reductions = reductions
    if best_state is not None:
        module.load_state_dict(best_state)
        kept = (f"epoch {history.best_epoch}" if history.best_epoch >= first_epoch
                else "the starting network")
        history.message += (f"; kept the weights of {kept} (best validation score "
                            f"{history.best_validation_score:.6g})")
    for parameter_name, parameter in module.named_parameters():
        if not torch.isfinite(parameter).all():
            raise TrainingDivergedError(
                f"The weights ({parameter_name}) stopped being finite by epoch "
                f"{first_epoch + history.n_epochs - 1}.")
    _notify(callbacks, "on_train_end", TrainingSummary(
        name=name, phase=phase, n_epochs=history.n_epochs, reason=history.stop_reason,
        message=history.message))
    return history


# --------------------------------------------------------------------------- #
# Inference.

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
