"""Several processes training one model: DistributedDataParallel replicas.

:class:`Replicas` shards every epoch's rows over the processes of a
:mod:`torch.distributed` group and all-reduces the figures the stopping rules
read; :class:`LossModule` makes a network and its loss one forward pass for
DistributedDataParallel; :func:`launcher_process_group` starts (and ends) a
process group when torchrun or a launcher like it started the process.
"""

import contextlib
import gc
import math
import os

import torch


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
        # Whatever still refers to the group (a DistributedDataParallel
        # wrapper in a reference cycle) goes while every peer is here.
        gc.collect()
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
