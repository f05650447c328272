"""Training throughput on a CUDA GPU: skae against a plain PyTorch loop on the device.

    python benchmarks/bench_gpu.py             # wherever CUDA is present, under 5 minutes
    python benchmarks/bench_gpu.py --dry-run   # the same code on the CPU, tiny sizes (tests)

For each table (the digits, 1,797 x 64; 100,000 x 100; 20,000 x 784; and
1,000,000 x 1,000), every contender trains the network of
``bench_training.py`` (``n -> 64 -> 10 -> 64 -> n``, ReLU hidden layers,
batch 200, Adam at 1e-3, no weight decay) on the GPU, in float32 or under
bf16 autocast, with its step launched kernel by kernel or replayed from a
CUDA graph:

- plain loop: a float32 tensor on the device, batches by index from a
  ``randperm``, ``torch.optim.Adam(fused=True)``, ``F.mse_loss``. The
  reference (ratio 1.00). "+ CUDA graph" captures forward, backward and
  optimizer step once (PyTorch's whole-network capture recipe) and replays it
  on a static input; it drops the last short batch of each epoch.
- skae: ``AutoencoderTransformer`` (its hand-written dense step); "+ CUDA
  graph" fits it with :class:`GraphedStep`, this script's own wrapper of
  that step (full batches replay a captured step, the short one runs
  eagerly); under bf16 autocast skae's dense step steps aside and autograd
  computes the step in bf16.

Throughput is rows trained per second in an epoch, the median over the
epochs after the first (which holds warm-up and capture), synchronised at
epoch ends; "fit" is the whole call, the copy of the data to the device and
skae's input validation included. Last, ``check_gpu.py``'s pickle check: every
estimator fitted on the GPU loads in a process that sees no GPU.

Without CUDA and without ``--dry-run`` the script says so and exits 0.
"""

import argparse
import contextlib
import math
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import check_gpu  # noqa: E402
from bench_training import PlainAutoencoder, table  # noqa: E402

import skae  # noqa: E402


@dataclass(frozen=True)
class Table:
    name: str
    n_rows: int
    n_features: int
    epochs: int


TABLES = [Table("digits", 1_797, 64, 20), Table("synthetic", 100_000, 100, 3),
          Table("wide", 20_000, 784, 5), Table("large", 1_000_000, 1_000, 2)]
DRY_TABLES = [Table("digits", 1_797, 64, 2), Table("synthetic", 1_000, 100, 2),
              Table("wide", 300, 784, 2), Table("large", 2_000, 50, 2)]
BATCH, HIDDEN, CODE, LEARNING_RATE = 200, 64, 10, 1e-3


def make_data(spec, device):
    """The digits, or rows near a curved 10-dimensional manifold (as in
    ``bench_training.synthetic_data``), drawn on the device and returned as
    float32 NumPy (the 1,000,000 x 1,000 table is 4 GB)."""
    if spec.name == "digits":
        from sklearn.datasets import load_digits

        return (load_digits().data / 16.0).astype(np.float32)
    generator = torch.Generator(device).manual_seed(0)
    X = torch.empty(spec.n_rows, spec.n_features, device=device)
    loadings = torch.randn(10, spec.n_features, generator=generator, device=device) / math.sqrt(10)
    for start in range(0, spec.n_rows, 100_000):  # in blocks: bounded temporaries
        rows = X[start:start + 100_000]
        factors = torch.randn(rows.shape[0], 10, generator=generator, device=device)
        noise = torch.randn(rows.shape, generator=generator, device=device)
        torch.tanh(factors @ loadings, out=rows).add_(noise, alpha=0.1)
    return X.cpu().numpy()


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device, bf16):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)


# --------------------------------------------------------------------------- #
# The plain loop, with and without a CUDA graph.


def plain_fit(X, spec, device, *, bf16=False, graph=False):
    """Returns ``(epoch_seconds, rows_per_epoch, mse)``."""
    torch.manual_seed(0)
    X_device = torch.from_numpy(X).to(device)
    model = PlainAutoencoder(X.shape[1], HIDDEN, CODE).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, fused=True)
    generator = torch.Generator(device).manual_seed(0)
    n_rows = X.shape[0]
    n_full = n_rows // BATCH

    def eager_step(X_batch):
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, bf16):
            loss = F.mse_loss(model(X_batch).float(), X_batch)
        loss.backward()
        optimizer.step()

    replay = None
    if graph:
        static_input = X_device[:BATCH].clone()
        if device.type == "cuda":
            # Warm up on a side stream, then capture (PyTorch's documented recipe).
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(3):
                    eager_step(static_input)
            torch.cuda.current_stream(device).wait_stream(side)
            cuda_graph = torch.cuda.CUDAGraph()
            optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(cuda_graph):
                with autocast(device, bf16):
                    static_loss = F.mse_loss(model(static_input).float(), static_input)
                static_loss.backward()
                optimizer.step()
            replay = cuda_graph.replay
        else:  # dry run: the same loop, the step called eagerly
            def replay():
                eager_step(static_input)

    epochs = []
    for _ in range(spec.epochs):
        synchronize(device)
        start = time.perf_counter()
        order = torch.randperm(n_rows, generator=generator, device=device)
        if graph:
            for index in range(n_full):
                static_input.copy_(X_device[order[index * BATCH:(index + 1) * BATCH]])
                replay()
        else:
            for begin in range(0, n_rows, BATCH):
                eager_step(X_device[order[begin:begin + BATCH]])
        synchronize(device)
        epochs.append(time.perf_counter() - start)
    with torch.inference_mode():
        reconstruction = torch.cat([model(X_device[i:i + 65536])
                                    for i in range(0, n_rows, 65536)])
        mse = float(F.mse_loss(reconstruction.float(), X_device))
    return epochs, (n_full * BATCH if graph else n_rows), mse


# --------------------------------------------------------------------------- #
# skae.


class _EagerGraph:
    """What stands in for a CUDA graph in a dry run: capturing runs nothing,
    replaying calls ``function()`` again, so the logic around it runs too."""

    def __init__(self, function):
        self.function = function
        self.output = None

    def replay(self):
        self.output = self.function()


class _CudaGraph:
    """``function()`` captured once in a CUDA graph; ``replay()`` runs it again."""

    def __init__(self, function):
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = function()

    def replay(self):
        self.graph.replay()


class GraphedStep:
    """skae's hand-written dense step replayed from a CUDA graph for full batches.

    On a GPU the kernels of a small network's step take less time to run
    than to launch, one by one, from Python; a CUDA graph launches all of
    them at once. The first ``warmup`` full batches train eagerly (on a side
    stream, as capturing requires), the next one is captured, and every
    later full batch replays the capture on a copy of its rows. Parameters,
    optimizer moments and step counts are the same tensors in the graph and
    out of it, so a short last batch trains eagerly between replays. The
    capture holds the learning rate and weight decay: new ones are captured again. Only a
    noiseless loss is graphed (the benchmark's). Off CUDA the graph is
    :class:`_EagerGraph`.
    """

    def __init__(self, step, batch_size, warmup=3):
        self.step = step
        self.batch_size = batch_size
        self.warmup = warmup
        self.device = step.device
        self.graph = self.static_input = self.rates = None

    def _rates(self):
        return tuple((group["lr"], group["weight_decay"])
                     for group in self.step.optimizer.param_groups)

    def _eager(self, X_batch):
        if self.device.type != "cuda":
            return self.step(X_batch, None)
        main = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            result = self.step(X_batch, None)
        main.wait_stream(side)
        return result

    def __call__(self, X_batch, y_batch):
        if X_batch.shape[0] != self.batch_size:
            return self.step(X_batch, y_batch)
        if self.graph is None or self.rates != self._rates():
            if self.warmup > 0:
                self.warmup -= 1
                return self._eager(X_batch)
            self.static_input = torch.empty_like(X_batch)
            self.rates = self._rates()
            graph = _CudaGraph if self.device.type == "cuda" else _EagerGraph
            self.graph = graph(lambda: self.step(self.static_input, None)[0])
        self.static_input.copy_(X_batch)
        self.graph.replay()
        # The graph's output is overwritten by the next replay.
        return self.graph.output.clone(), {}


@contextlib.contextmanager
def graphed_dense_steps():
    """Every skae ``Trainer`` made inside trains full batches through a
    :class:`GraphedStep` where it took the hand-written dense step."""
    from skae._engine import Trainer
    from skae._fastpath import DenseStep

    original = Trainer.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if isinstance(self.train_step, DenseStep) and not self.train_step.loss.noisy:
            self.train_step = GraphedStep(self.train_step, self.batch_size)

    Trainer.__init__ = __init__
    try:
        yield
    finally:
        Trainer.__init__ = original


class _EpochTimes:
    def __init__(self):
        self.seconds = []

    def __call__(self, record):
        self.seconds.append(record.seconds)  # the loop synchronises each epoch's loss


def skae_fit(X, spec, device, *, bf16=False, graph=False):
    times = _EpochTimes()
    estimator = skae.AutoencoderTransformer(
        n_components=CODE, hidden_layer_sizes=(HIDDEN,), alpha=0.0, batch_size=BATCH,
        early_stopping=False, init="random",
        learning_rate_init=LEARNING_RATE, max_iter=spec.epochs, tol=0.0,
        n_iter_no_change=spec.epochs + 1, random_state=0, device=str(device), n_threads=None,
        callbacks=[times])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with autocast(device, bf16), graphed_dense_steps() if graph else contextlib.nullcontext():
            estimator.fit(X)
    module = estimator.module_
    X_device = torch.from_numpy(X).to(device)
    with torch.inference_mode():
        reconstruction = torch.cat([module(X_device[i:i + 65536])
                                    for i in range(0, X.shape[0], 65536)])
        mse = float(F.mse_loss(reconstruction, X_device))
    return times.seconds, X.shape[0], mse


CONTENDERS = [
    ("plain loop", plain_fit, {}),
    ("plain loop + bf16 autocast", plain_fit, {"bf16": True}),
    ("plain loop + CUDA graph", plain_fit, {"graph": True}),
    ("plain loop + CUDA graph + bf16", plain_fit, {"graph": True, "bf16": True}),
    ("skae", skae_fit, {}),
    ("skae + bf16 autocast (autograd step)", skae_fit, {"bf16": True}),
    ("skae + CUDA graph", skae_fit, {"graph": True}),
]


def bench_table(spec, device):
    X = make_data(spec, device)
    rows, reference = [], None
    for name, fit, options in CONTENDERS:
        synchronize(device)
        start = time.perf_counter()
        epochs, rows_per_epoch, mse = fit(X, spec, device, **options)
        synchronize(device)
        whole = time.perf_counter() - start
        epoch = statistics.median(epochs[1:] or epochs)
        throughput = rows_per_epoch / epoch
        reference = reference or throughput
        rows.append([name, f"{throughput / 1e6:.2f}", f"{throughput / reference:.2f}",
                     f"{epoch * 1e3:.1f}", f"{whole:.2f}", f"{mse:.4f}"])
    print(f"\n### {spec.name}: {spec.n_rows:,} x {spec.n_features}, {spec.epochs} epochs, "
          f"batch {BATCH}, n-{HIDDEN}-{CODE}-{HIDDEN}-n\n")
    print(table(["contender", "million rows/s (training)", "throughput vs plain loop",
                 "ms/epoch", "whole fit (s)", "final MSE"], rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="run on the CPU with tiny sizes (checks the script itself)")
    args = parser.parse_args(argv)
    if args.dry_run:
        device, tables = torch.device("cpu"), DRY_TABLES
        torch.set_num_threads(1)
        print("bench_gpu --dry-run: the CPU stands in for the GPU, at tiny sizes")
    elif not torch.cuda.is_available():
        print("bench_gpu: CUDA is not available on this machine; nothing to measure.")
        return 0
    else:
        device, tables = torch.device("cuda"), TABLES
        print(f"bench_gpu on {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
              f"skae {skae.__version__}")
    started = time.perf_counter()
    for spec in tables:
        bench_table(spec, device)
    print("\n### A GPU-fitted model loads on a CPU-only machine (check_gpu.py pickle)\n")
    if args.dry_run:
        # One estimator checks the script; each costs a fresh process.
        every_estimator = check_gpu._estimators
        check_gpu._estimators = lambda: every_estimator()[:1]
    failures = check_gpu.main(["pickle"] + (["--dry-run"] if args.dry_run else []))
    print(f"\nWhole run: {time.perf_counter() - started:.0f} s.")
    return failures


if __name__ == "__main__":
    sys.exit(main())
