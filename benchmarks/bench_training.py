"""Training speed of skae against a plain PyTorch loop and its peers, side by side.

The same dense autoencoder (``n -> 64 -> 10 -> 64 -> n``, ReLU hidden layers,
linear code and output where the contender allows it) is fitted with the same
epochs, batch size, learning rate and Adam, without weight decay, by every
contender in one run. Repeats interleave the contenders (each repeat starts
one contender later) so that load drifts on a shared machine hit all alike;
the tables quote medians and ratios. See ``benchmarks/README.md``.

Run ``python benchmarks/bench_training.py`` (about four minutes on two cores),
``--quick`` for a smoke run, ``--busy`` to repeat the thread section with a
busy background process, ``--sections`` to run only some sections.
"""

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.neural_network import MLPRegressor
from threadpoolctl import threadpool_info, threadpool_limits
from torch import nn
from torch.nn import functional as F

import skae

SECTIONS = ("synthetic", "digits", "transform", "memory", "first-fit", "threads", "variants")


# --------------------------------------------------------------------------- #
# Setup and data.


@dataclass(frozen=True)
class Setup:
    """What every contender trains: the network, epochs and optimiser settings."""

    epochs: int
    batch_size: int = 200
    learning_rate: float = 1e-3
    hidden: int = 64
    code: int = 10
    threads: int = 1


def synthetic_data(n_samples, n_features=100, n_factors=10, seed=0):
    """Rows near a curved 10-dimensional manifold in 100 dimensions, float32."""
    rng = np.random.RandomState(seed)
    factors = rng.standard_normal((n_samples, n_factors))
    loadings = rng.standard_normal((n_factors, n_features)) / math.sqrt(n_factors)
    X = np.tanh(factors @ loadings) + 0.1 * rng.standard_normal((n_samples, n_features))
    return X.astype(np.float32)


def digits_data():
    X, _ = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32)


def mse(reconstruction, X):
    """The loss every contender is judged on: squared error, mean over features and rows."""
    return float(np.mean((np.asarray(reconstruction, dtype=np.float64) - X) ** 2))


@contextlib.contextmanager
def torch_thread_count(n_threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------- #
# Contenders. Each is one row: a fit function returning the fitted object, a
# reconstruction function for the final loss and optionally an encoder.


class PlainAutoencoder(nn.Module):
    """The network of the plain loops (and of skorch), layer for layer skae's."""

    def __init__(self, n_features, hidden=64, code=10):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(),
                                     nn.Linear(hidden, code))
        self.decoder = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(),
                                     nn.Linear(hidden, n_features))

    def forward(self, X):
        return self.decoder(self.encoder(X))


def plain_loop(X, setup, seed, *, fused=True, data_loader=False, first_use=None):
    """The fastest plain loop we could write: float32 tensor, index batches, fused Adam.

    ``fused=False`` is torch's default Adam (foreach); ``data_loader=True``
    takes batches from a DataLoader over a TensorDataset instead of indexing.
    A ``first_use`` dict receives the seconds of building the optimizer and of
    its first step.
    """
    torch.manual_seed(seed)
    X_tensor = torch.from_numpy(X)
    model = PlainAutoencoder(X.shape[1], setup.hidden, setup.code)
    start = time.perf_counter()
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.learning_rate,
                                 fused=True if fused else None)
    if first_use is not None:
        first_use["construct_s"] = time.perf_counter() - start
    generator = torch.Generator().manual_seed(seed)
    n_samples, batch_size = X.shape[0], setup.batch_size
    if data_loader:
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(X_tensor), batch_size=batch_size, shuffle=True,
            generator=generator)
    with torch_thread_count(setup.threads):
        for _ in range(setup.epochs):
            if data_loader:
                batches = (batch for (batch,) in loader)
            else:
                order = torch.randperm(n_samples, generator=generator)
                batches = (X_tensor[order[start:start + batch_size]]
                           for start in range(0, n_samples, batch_size))
            for X_batch in batches:
                optimizer.zero_grad()
                loss = F.mse_loss(model(X_batch), X_batch)
                loss.backward()
                if first_use is not None and "step_s" not in first_use:
                    start = time.perf_counter()
                    optimizer.step()
                    first_use["step_s"] = time.perf_counter() - start
                else:
                    optimizer.step()
    return model.eval()


def plain_reconstruct(model, X):
    with torch.inference_mode():
        return model(torch.from_numpy(X)).numpy()


def plain_encode(model, X):
    with torch.inference_mode():
        return model.encoder(torch.from_numpy(X)).numpy()


def fit_skae(X, setup, seed, estimator=None, **params):
    estimator = estimator or skae.AutoencoderTransformer
    model = estimator(
        n_components=setup.code, hidden_layer_sizes=(setup.hidden,), activation="relu",
        alpha=0.0, batch_size=setup.batch_size, learning_rate_init=setup.learning_rate,
        max_iter=setup.epochs, tol=0.0, n_iter_no_change=setup.epochs + 1, shuffle=True,
        random_state=seed, device="cpu", n_threads=setup.threads, **params,
    )
    return model.fit(X)


def skae_reconstruct(model, X):
    return model.inverse_transform(model.transform(X))


def fit_mlp(X, setup, seed):
    model = MLPRegressor(
        hidden_layer_sizes=(setup.hidden, setup.code, setup.hidden), activation="relu",
        solver="adam", alpha=0.0, batch_size=setup.batch_size,
        learning_rate_init=setup.learning_rate, max_iter=setup.epochs, tol=0.0,
        n_iter_no_change=10**9, shuffle=True, random_state=seed,
    )
    return model.fit(X, X)


def fit_skorch(X, setup, seed):
    from skorch import NeuralNetRegressor

    torch.manual_seed(seed)
    net = NeuralNetRegressor(
        PlainAutoencoder, module__n_features=X.shape[1], module__hidden=setup.hidden,
        module__code=setup.code, criterion=nn.MSELoss, optimizer=torch.optim.Adam,
        optimizer__fused=True, lr=setup.learning_rate, batch_size=setup.batch_size,
        max_epochs=setup.epochs, train_split=None, iterator_train__shuffle=True,
        device="cpu", verbose=0,
    )
    with torch_thread_count(setup.threads):
        return net.fit(X, X)


def fit_pyod(X, setup, seed):
    from pyod.models.auto_encoder import AutoEncoder

    detector = AutoEncoder(
        hidden_neuron_list=[setup.hidden, setup.code], hidden_activation_name="relu",
        batch_norm=False, dropout_rate=0.0, preprocessing=False, lr=setup.learning_rate,
        epoch_num=setup.epochs, batch_size=setup.batch_size, optimizer_name="adam",
        optimizer_params={"weight_decay": 0.0}, device="cpu", random_state=seed, verbose=0,
    )
    with torch_thread_count(setup.threads):
        return detector.fit(X)


def pyod_reconstruct(detector, X):
    return plain_reconstruct(detector.model.eval(), X)


def fit_pca(X, setup, seed):
    return PCA(n_components=setup.code, random_state=seed).fit(X)


@dataclass
class Contender:
    name: str
    fit: Callable
    reconstruct: Callable
    encode: Callable | None = None
    trains: str = "n-64-10-64-n, ReLU hidden, linear code and output"
    per_epoch: bool = True
    requires: str | None = None

    def missing(self):
        if self.requires is None:
            return None
        try:
            __import__(self.requires)
        except ImportError:
            return "not installed"
        return None


FUSED = "plain loop (fused Adam)"
SKAE = "skae AutoencoderTransformer"
MLP = "sklearn MLPRegressor"
SKORCH = "skorch NeuralNetRegressor"

CONTENDERS = [
    Contender(FUSED, plain_loop, plain_reconstruct, plain_encode,
              trains="index batches, torch.optim.Adam(fused=True), F.mse_loss"),
    Contender("plain loop (default Adam)", lambda X, s, r: plain_loop(X, s, r, fused=False),
              plain_reconstruct, trains="as above, torch.optim.Adam() (foreach)"),
    Contender("plain loop (DataLoader)", lambda X, s, r: plain_loop(X, s, r, data_loader=True),
              plain_reconstruct,
              trains="as above, DataLoader(TensorDataset) batches, fused Adam"),
    Contender(SKAE, fit_skae, skae_reconstruct, lambda m, X: m.transform(X),
              trains="own Adam on torch's fused kernel, index batches"),
    Contender(MLP, fit_mlp, lambda m, X: m.predict(X),
              trains="NumPy; its 10-wide code layer is ReLU too; loss 0.5*MSE"),
    Contender(SKORCH, fit_skorch, lambda m, X: m.predict(X), requires="skorch",
              trains="same module, torch.optim.Adam(fused=True), per-row Dataset"),
    Contender("PyOD AutoEncoder", fit_pyod, pyod_reconstruct, requires="pyod",
              trains="n-64-10-64-n with ReLU on the code too, DataLoader, drop_last, "
                     "fit also scores X"),
    Contender("PCA (reference)", fit_pca, lambda m, X: m.inverse_transform(m.transform(X)),
              lambda m, X: m.transform(X), trains="10 components, exact", per_epoch=False),
]


def contender(name):
    return next(c for c in CONTENDERS if c.name == name)


# --------------------------------------------------------------------------- #
# Measuring.


def interleaved(items, repeat):
    """The contenders in the order of one repeat: each repeat starts one later."""
    shift = repeat % len(items)
    return items[shift:] + items[:shift]


def time_fits(contenders, X, setup, repeats, warmup_rows=2000):
    """Median fit seconds (wall and CPU) per contender, and the final MSE on ``X``."""
    for c in contenders:  # one-time costs (imports, first kernels) out of the timings
        c.fit(X[:warmup_rows], replace(setup, epochs=1), 0)
    wall = {c.name: [] for c in contenders}
    cpu = {c.name: [] for c in contenders}
    loss = {}
    for repeat in range(repeats):
        for c in interleaved(contenders, repeat):
            gc.collect()
            start_cpu, start = time.process_time(), time.perf_counter()
            model = c.fit(X, setup, repeat)
            wall[c.name].append(time.perf_counter() - start)
            cpu[c.name].append(time.process_time() - start_cpu)
            if repeat == repeats - 1:
                loss[c.name] = mse(c.reconstruct(model, X), X)
    return ({name: statistics.median(v) for name, v in wall.items()},
            {name: statistics.median(v) for name, v in cpu.items()}, loss)


def load():
    """The 1-minute load average, printed with each section (the machine is shared)."""
    try:
        return f"load average {os.getloadavg()[0]:.2f} at start"
    except OSError:
        return "load average unknown"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def available(contenders):
    present, absent = [], []
    for c in contenders:
        (absent if c.missing() else present).append(c)
    return present, absent


def training_section(title, X, setup, repeats):
    """One table of the contenders fitting ``X``; returns per-epoch seconds by name."""
    present, absent = available(CONTENDERS)
    load_before = load()
    wall, cpu, loss = time_fits(present, X, setup, repeats)
    reference = wall[FUSED] / setup.epochs
    rows = []
    per_epoch = {}
    for c in present:
        if c.per_epoch:
            seconds = wall[c.name] / setup.epochs
            per_epoch[c.name] = seconds
            rows.append([c.name, f"{seconds * 1e3:.1f}", f"{seconds / reference:.2f}",
                         f"{cpu[c.name] / wall[c.name]:.2f}", f"{loss[c.name]:.4f}", c.trains])
        else:
            rows.append([c.name, f"(whole fit {wall[c.name] * 1e3:.1f})",
                         f"(fit = {wall[c.name] / reference:.2f} epochs)",
                         f"{cpu[c.name] / wall[c.name]:.2f}", f"{loss[c.name]:.4f}", c.trains])
    rows += [[c.name, "not installed", "", "", "", ""] for c in absent]
    print(f"\n### {title}: {X.shape[0]:,} x {X.shape[1]}, {setup.epochs} epochs, batch "
          f"{setup.batch_size}, lr {setup.learning_rate}, no weight decay, {setup.threads} "
          f"thread(s); median of {repeats} interleaved repeats; {load_before}\n")
    print(table(["contender", "ms/epoch", "ratio to fused plain loop", "CPU/wall",
                 "final MSE on X", "what it trains"], rows))
    return per_epoch


def goals(title, per_epoch):
    if SKAE not in per_epoch:
        return []
    skae_epoch = per_epoch[SKAE]
    checks = [(f"{title}: skae within 1.10x of the fused plain loop",
               skae_epoch / per_epoch[FUSED], lambda r: r <= 1.10, "{:.2f}x")]
    checks.append((f"{title}: skae no slower than MLPRegressor",
                   skae_epoch / per_epoch[MLP], lambda r: r <= 1.0, "{:.2f}x"))
    if SKORCH in per_epoch:
        checks.append((f"{title}: skae at least 3x faster than skorch",
                       per_epoch[SKORCH] / skae_epoch, lambda r: r >= 3.0,
                       "skorch/skae {:.2f}x"))
    return [[name, fmt.format(value), "met" if ok(value) else "MISSED"]
            for name, value, ok, fmt in checks]


def transform_section(X, setup, repeats):
    """Rows per second of encoding ``X`` after a fit."""
    encoders = [c for c in available(CONTENDERS)[0] if c.encode is not None]
    fitted = {c.name: c.fit(X, replace(setup, epochs=1), 0) for c in encoders}
    timings = {c.name: [] for c in encoders}
    with torch_thread_count(setup.threads):
        for c in encoders:
            c.encode(fitted[c.name], X[:1000])
        for repeat in range(repeats):
            for c in interleaved(encoders, repeat):
                start = time.perf_counter()
                c.encode(fitted[c.name], X)
                timings[c.name].append(time.perf_counter() - start)
    reference = statistics.median(timings[FUSED])
    rows = []
    for c in encoders:
        seconds = statistics.median(timings[c.name])
        label = {FUSED: "plain encoder forward (inference_mode, one batch)",
                 SKAE: "skae transform (validate, chunks, NumPy out)"}.get(c.name, c.name)
        rows.append([label, f"{X.shape[0] / seconds / 1e6:.2f}", f"{reference / seconds:.2f}"])
    print(f"\n### Transform throughput: {X.shape[0]:,} x {X.shape[1]} float32, "
          f"{setup.threads} thread(s), median of {repeats}\n")
    print(table(["encoder", "million rows/s", "throughput vs plain forward"], rows))


# --------------------------------------------------------------------------- #
# Fresh-process measurements (memory, first fit), run as child processes.


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss():
    """Reset Linux's VmHWM so it records the peak from now on (False if not allowed)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_memory(name, path, mode):
    """Peak memory of one fit above what the process held before it."""
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    c = contender(name)
    X = np.load(path)  # one allocation of exactly X, no temporaries left behind
    setup = Setup(epochs=1)
    c.fit(X[:500], setup, 0)  # imports and one-time allocations out of the measurement
    gc.collect()
    if mode == "tracemalloc":
        tracemalloc.start()
        c.fit(X, setup, 0)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        baseline = _rss_bytes()
        if not _reset_peak_rss():
            raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs)")
        c.fit(X, setup, 0)
        peak = _peak_rss_bytes() - baseline
    print(json.dumps({"peak": peak, "x_bytes": X.nbytes}))


def child_first_fit(kind):
    """Seconds of the first and second fit of the digits in a fresh process."""
    start = time.perf_counter()
    # The imports this module made already are the ones any user pays; the
    # process started fresh, and nothing has trained or stepped an optimiser.
    result = {}
    X = digits_data()
    setup = Setup(epochs=DIGITS_EPOCHS)
    if kind == "plain, torch._dynamo imported first":
        t = time.perf_counter()
        import torch._dynamo  # noqa: F401

        result["dynamo_import_s"] = time.perf_counter() - t
    fits = []
    for seed in range(2):
        first_use = {}
        t = time.perf_counter()
        if kind == "skae":
            fit_skae(X, setup, seed)
        else:
            plain_loop(X, setup, seed, first_use=first_use)
        fits.append(time.perf_counter() - t)
        for key, seconds in first_use.items():
            result.setdefault(key, []).append(seconds)
    result.update(first_s=fits[0], second_s=fits[1], total_s=time.perf_counter() - start)
    print(json.dumps(result))


def run_child(*args):
    command = [sys.executable, os.path.abspath(__file__), "--child", *map(str, args)]
    # A fixed mmap threshold stops glibc from keeping freed large blocks in
    # its heap, so the resident size follows what is really allocated.
    env = dict(os.environ, PYTHONWARNINGS="ignore", MALLOC_MMAP_THRESHOLD_="131072")
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    return result


def memory_section(n_rows):
    present, absent = available(CONTENDERS)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "X.npy")
        np.save(path, synthetic_data(n_rows))
        results = [(c, run_child("memory", c.name, path, "rss"),
                    run_child("memory", c.name, path, "tracemalloc")) for c in present]
    for c, rss, traced in results:
        rows.append([c.name, f"{rss['peak'] / rss['x_bytes']:.2f}",
                     f"{traced['peak'] / traced['x_bytes']:.2f}"])
    rows += [[c.name, "not installed", ""] for c in absent]
    print(f"\n### Peak memory of one fit (1 epoch) on {n_rows:,} x 100 float32 "
          f"(X = {n_rows * 400 / 2**20:.0f} MiB), in multiples of X's size\n")
    print("Each fit runs in a fresh process (glibc's mmap threshold fixed at 128 KiB) that "
          "loads X from a .npy file and fits 500 rows first. `peak RSS` is Linux's VmHWM, "
          "reset just before the fit, minus the RSS before it: every allocation, torch's "
          "included. `tracemalloc` sees only Python and NumPy allocations, not torch's.\n")
    print(table(["contender", "peak RSS over baseline / X", "tracemalloc peak / X"], rows))


def _first_and_later(runs, key):
    """Median seconds of a first-fit measurement in the first and the second fit."""
    pairs = [run[key] for run in runs if key in run]
    if not pairs:
        return "-"
    return (f"{statistics.median(p[0] for p in pairs):.3f} / "
            f"{statistics.median(p[1] for p in pairs):.4f}")


def first_fit_section(repeats):
    kinds = ["skae", "plain, torch.optim.Adam(fused=True)", "plain, torch._dynamo imported first"]
    results = {kind: [] for kind in kinds}
    for repeat in range(repeats):
        for kind in interleaved(kinds, repeat):
            results[kind].append(run_child("first-fit", kind))
    rows = []
    for kind in kinds:
        runs = results[kind]
        first = statistics.median(r["first_s"] for r in runs)
        second = statistics.median(r["second_s"] for r in runs)
        dynamo = [r["dynamo_import_s"] for r in runs if "dynamo_import_s" in r]
        rows.append([kind, f"{first:.3f}", f"{second:.3f}", f"{first - second:.3f}",
                     _first_and_later(runs, "construct_s"), _first_and_later(runs, "step_s"),
                     f"{statistics.median(dynamo):.3f}" if dynamo else "-",
                     f"{statistics.median(r['process_s'] for r in runs):.2f}"])
    print(f"\n### First fit in a fresh process: digits, {DIGITS_EPOCHS} epochs, 1 thread; "
          f"median of {repeats} fresh processes per row (seconds)\n")
    print(table(["fit", "first fit", "second fit", "first-fit extra",
                 "torch.optim.Adam(...) first / second", "first step, first / second fit",
                 "import torch._dynamo",
                 "whole process (imports included)"], rows))


# --------------------------------------------------------------------------- #
# Threads.


def _busy_loop():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def thread_section(datasets, repeats, busy):
    """Plain loop and skae with one and two torch threads, quiet or with a busy neighbour."""
    kinds = [(name, threads) for name in (FUSED, SKAE) for threads in (1, 2)]
    load_before = load()
    background = []
    if busy:
        background = [_busy_loop() for _ in range(busy)]
        time.sleep(0.5)
    try:
        rows = []
        for label, X, setup in datasets:
            for name, threads in kinds:  # warm up both thread counts
                contender(name).fit(X[:2000], replace(setup, epochs=1, threads=threads), 0)
            wall = {kind: [] for kind in kinds}
            cpu = {kind: [] for kind in kinds}
            for repeat in range(repeats):
                for name, threads in interleaved(kinds, repeat):
                    start_cpu, start = time.process_time(), time.perf_counter()
                    contender(name).fit(X, replace(setup, threads=threads), repeat)
                    wall[name, threads].append(time.perf_counter() - start)
                    cpu[name, threads].append(time.process_time() - start_cpu)
            for name in (FUSED, SKAE):
                one, two = (statistics.median(wall[name, t]) for t in (1, 2))
                cpu_one, cpu_two = (statistics.median(cpu[name, t]) for t in (1, 2))
                rows.append([label, name, f"{one / setup.epochs * 1e3:.1f}",
                             f"{two / setup.epochs * 1e3:.1f}", f"{two / one:.2f}",
                             f"{cpu_two / cpu_one:.2f}"])
    finally:
        for process in background:
            process.terminate()
            process.wait()
    state = (f"with {busy} busy-loop process(es) running beside it" if busy
             else "quiet machine")
    print(f"\n### Threads: 1 vs 2 torch intra-op threads, {state}; "
          f"{os.cpu_count()} CPUs; median of {repeats} interleaved repeats; {load_before}\n")
    print(table(["data", "contender", "ms/epoch, 1 thread", "ms/epoch, 2 threads",
                 "wall 2T / 1T", "CPU time 2T / 1T"], rows))


# --------------------------------------------------------------------------- #
# Other skae autoencoders against plain loops with the same network and loss.


def plain_denoising_loop(X, setup, seed, noise_level):
    """Gaussian noise on the inputs, squared error against the clean rows."""
    torch.manual_seed(seed)
    X_tensor = torch.from_numpy(X)
    model = PlainAutoencoder(X.shape[1], setup.hidden, setup.code)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.learning_rate, fused=True)
    generator = torch.Generator().manual_seed(seed)
    with torch_thread_count(setup.threads):
        for _ in range(setup.epochs):
            order = torch.randperm(X.shape[0], generator=generator)
            for start in range(0, X.shape[0], setup.batch_size):
                X_batch = X_tensor[order[start:start + setup.batch_size]]
                noisy = X_batch + noise_level * torch.randn(
                    X_batch.shape, generator=generator)
                optimizer.zero_grad()
                loss = F.mse_loss(model(noisy), X_batch)
                loss.backward()
                optimizer.step()
    return model.eval()


class PlainVAE(nn.Module):
    """skae's dense VAE layer for layer: ReLU body, mean and log-variance heads."""

    def __init__(self, n_features, hidden=64, code=10):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU())
        self.mean = nn.Linear(hidden, code)
        self.log_variance = nn.Linear(hidden, code)
        self.decoder = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(),
                                     nn.Linear(hidden, n_features))


def plain_vae_loop(X, setup, seed, beta):
    """Reparameterised code, loss 0.5 * squared error summed over features + beta * KL."""
    torch.manual_seed(seed)
    X_tensor = torch.from_numpy(X)
    model = PlainVAE(X.shape[1], setup.hidden, setup.code)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.learning_rate, fused=True)
    generator = torch.Generator().manual_seed(seed)
    with torch_thread_count(setup.threads):
        for _ in range(setup.epochs):
            order = torch.randperm(X.shape[0], generator=generator)
            for start in range(0, X.shape[0], setup.batch_size):
                X_batch = X_tensor[order[start:start + setup.batch_size]]
                hidden = model.body(X_batch)
                mean, log_variance = model.mean(hidden), model.log_variance(hidden)
                eps = torch.randn(mean.shape, generator=generator)
                reconstruction = model.decoder(mean + torch.exp(0.5 * log_variance) * eps)
                negative_log_likelihood = 0.5 * (reconstruction - X_batch).square().sum(1).mean()
                kl = 0.5 * (mean.square() + log_variance.exp() - 1 - log_variance).sum(1).mean()
                optimizer.zero_grad()
                (negative_log_likelihood + beta * kl).backward()
                optimizer.step()
    return model.eval()


def plain_vae_reconstruct(model, X):
    """Decoded posterior means, as skae's ``inverse_transform(transform(X))``."""
    with torch.inference_mode():
        return model.decoder(model.mean(model.body(torch.from_numpy(X)))).numpy()


def variant_contenders():
    """Pairs (skae row, plain row) for the other dense autoencoders skae has."""
    pairs = []
    if hasattr(skae, "DenoisingAutoencoder"):
        pairs.append((
            Contender("skae DenoisingAutoencoder (gaussian 0.1)",
                      lambda X, s, r: fit_skae(X, s, r, skae.DenoisingAutoencoder,
                                               noise="gaussian", noise_level=0.1),
                      skae_reconstruct),
            Contender("plain loop, gaussian noise 0.1",
                      lambda X, s, r: plain_denoising_loop(X, s, r, 0.1), plain_reconstruct),
        ))
    if hasattr(skae, "VariationalAutoencoder"):
        pairs.append((
            Contender("skae VariationalAutoencoder (beta 1)",
                      lambda X, s, r: fit_skae(X, s, r, skae.VariationalAutoencoder, beta=1.0),
                      skae_reconstruct),
            Contender("plain loop, mu/logvar heads + KL",
                      lambda X, s, r: plain_vae_loop(X, s, r, 1.0), plain_vae_reconstruct),
        ))
    return pairs


def variants_section(X, setup, repeats):
    pairs = variant_contenders()
    if not pairs:
        print("\n### Other autoencoders: skae has neither DenoisingAutoencoder nor "
              "VariationalAutoencoder yet; skipped.")
        return []
    rows, checks = [], []
    for ours, plain in pairs:
        wall, _, loss = time_fits([ours, plain], X, setup, repeats)
        ratio = wall[ours.name] / wall[plain.name]
        rows.append([ours.name, plain.name, f"{wall[ours.name] / setup.epochs * 1e3:.1f}",
                     f"{wall[plain.name] / setup.epochs * 1e3:.1f}", f"{ratio:.2f}",
                     f"{loss[ours.name]:.4f} / {loss[plain.name]:.4f}"])
        checks.append([f"{ours.name} within 1.10x of its plain loop", f"{ratio:.2f}x",
                       "met" if ratio <= 1.10 else "MISSED"])
    print(f"\n### Other autoencoders against plain loops with the same network and loss: "
          f"{X.shape[0]:,} x {X.shape[1]}, {setup.epochs} epochs, {setup.threads} thread(s), "
          f"median of {repeats}\n")
    print(table(["skae", "plain loop", "skae ms/epoch", "plain ms/epoch", "ratio",
                 "final MSE of decoded means, skae / plain"], rows))
    return checks


# --------------------------------------------------------------------------- #

DIGITS_EPOCHS = 50


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-size run (seconds)")
    parser.add_argument("--busy", type=int, nargs="?", const=1, default=0, metavar="N",
                        help="also run the thread section beside N busy-loop processes "
                             "(default 1)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch (and BLAS) threads for every contender (default 1)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        if kind == "memory":
            child_memory(*rest)
        else:
            child_first_fit(rest[0])
        return

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    warnings.simplefilter("ignore")
    if args.quick:
        n_rows, big_epochs, digits_epochs, repeats, memory_rows = 10_000, 1, 5, 2, 20_000
    else:
        n_rows, big_epochs, digits_epochs, repeats = 100_000, 3, DIGITS_EPOCHS, 5
        memory_rows = n_rows
    threads = args.threads
    torch.set_num_threads(threads)
    big = synthetic_data(n_rows)
    digits = digits_data()
    big_setup = Setup(epochs=big_epochs, threads=threads)
    digits_setup = Setup(epochs=digits_epochs, threads=threads)

    blas = sorted({f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()})
    started = time.perf_counter()
    print("## skae training benchmark\n")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, torch {torch.__version__}, scikit-learn "
          f"{sklearn.__version__}, skae {skae.__version__}; torch threads "
          f"{torch.get_num_threads()} (skae n_threads={threads}); BLAS threads limited to "
          f"{threads} for NumPy contenders (found: {', '.join(blas)})")
    checks = []
    with threadpool_limits(limits=threads, user_api="blas"):
        if "synthetic" in sections:
            per_epoch = training_section("Synthetic", big, big_setup, repeats)
            checks += goals(f"synthetic {n_rows // 1000}k", per_epoch)
        if "digits" in sections:
            per_epoch = training_section("Digits", digits, digits_setup, repeats)
            checks += goals("digits", per_epoch)
        if "transform" in sections:
            transform_section(big, big_setup, repeats)
        if "memory" in sections:
            memory_section(memory_rows)
        if "first-fit" in sections:
            first_fit_section(1 if args.quick else 3)
        if "threads" in sections:
            # Smaller than the tables above: two threads beside a busy process
            # can be fifty times slower.
            thread_rows = n_rows // 5
            datasets = [(f"synthetic {thread_rows // 1000}k", big[:thread_rows],
                         replace(big_setup, epochs=1)),
                        ("digits", digits, replace(digits_setup, epochs=digits_epochs // 2))]
            thread_section(datasets, repeats, busy=0)
            if args.busy:
                thread_section(datasets, max(3, repeats // 2), busy=args.busy)
        if "variants" in sections:
            checks += variants_section(big, big_setup, repeats)
    if checks:
        print("\n### Goals\n")
        print(table(["goal", "measured", "verdict"], checks))
    print(f"\nWhole run: {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
