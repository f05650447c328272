"""Training and inference speed of skae against the arithmetic floor, a plain
PyTorch loop and its peers, side by side.

The same dense autoencoder (``n -> 64 -> 10 -> 64 -> n``, ReLU hidden layers,
linear code and output where the contender allows it) is fitted with the same
epochs, batch size, learning rate and Adam, without weight decay, by every
contender in one run. The floor is the bare matrix products of the same
training steps and nothing else. Repeats interleave the contenders (each
repeat starts one contender later) so that load drifts on a shared machine
hit all alike; the tables quote medians and ratios. See ``benchmarks/README.md``.

Run ``python benchmarks/bench_training.py`` (about four minutes on two idle
cores), ``--quick`` for a smoke run (seconds), ``--busy`` to repeat the thread
section with a busy background process, ``--sections`` to run only some
sections (``compile``, the cold start of a ``torch.compile``'d step, runs only
when named).
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

SECTIONS = ("synthetic", "digits", "wide", "transform", "memory", "first-fit", "threads",
            "variants", "compile")
DEFAULT_SECTIONS = SECTIONS[:-1]  # compiling costs a minute and imports torch._dynamo


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


def wide_data(n_samples):
    """The synthetic rows at 784 features (an MNIST-sized table)."""
    return synthetic_data(n_samples, n_features=784)


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
    # The plain loops train every row from a random start for every epoch:
    # skae does the same work (no PCA start, no held-out rows).
    if "init" in estimator().get_params():
        params = {"init": "random", **params}
    model = estimator(
        early_stopping=False,
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


class _AutogradStep:
    """Mixin: a skae estimator forced onto the engine's autograd step (the reference)."""

    _fast_path = False


def autograd_estimator(estimator):
    return type(f"{estimator.__name__}", (_AutogradStep, estimator), {})


# --------------------------------------------------------------------------- #
# The floor: the bare matrix products of the same training steps.


def batch_sizes(n_rows, batch_size):
    """The batch sizes of one epoch over ``n_rows`` rows."""
    full, rest = divmod(n_rows, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


def autoencoder_layers(n_features, setup):
    """``(n_in, n_out)`` of the 4 dense layers every contender trains."""
    widths = [n_features, setup.hidden, setup.code, setup.hidden, n_features]
    return tuple(zip(widths[:-1], widths[1:]))


class BareProducts:
    """The matrix products of training steps of dense layers, and nothing else.

    For every layer ``(n_in, n_out)`` a step multiplies three times: the
    forward product, the weight gradient and the input gradient: 12 products
    for 4 layers, as the floor is counted in issue 12. ``skip_first`` leaves
    out the first layer's input gradient, which no trainer computes (the data
    take no gradient): 11 products. Operands are built once per batch size,
    outside the timings; each product writes into a preallocated output.
    """

    _cache = {}

    def __init__(self, layers, sizes, skip_first):
        generator = torch.Generator().manual_seed(0)
        self.sizes = sizes
        self.products = {}
        for n in sorted(set(sizes)):
            products = []
            for index, (n_in, n_out) in enumerate(layers):
                x = torch.randn(n, n_in, generator=generator)
                weight = torch.randn(n_out, n_in, generator=generator)
                grad = torch.randn(n, n_out, generator=generator)
                products.append((x, weight.t(), torch.empty(n, n_out)))
                products.append((grad.t(), x, torch.empty(n_out, n_in)))
                if index or not skip_first:
                    products.append((grad, weight, torch.empty(n, n_in)))
            self.products[n] = products

    @classmethod
    def get(cls, layers, sizes, skip_first):
        key = (tuple(layers), tuple(sizes), skip_first)
        if key not in cls._cache:
            cls._cache[key] = cls(layers, sizes, skip_first)
        return cls._cache[key]

    @property
    def count(self):
        return len(self.products[self.sizes[0]])

    def run(self, epochs, threads):
        with torch_thread_count(threads):
            for _ in range(epochs):
                for n in self.sizes:
                    for a, b, out in self.products[n]:
                        torch.mm(a, b, out=out)
        return self


def floor_contender(name, layers_of, skip_first=False):
    """A contender that runs only the products of the steps the others take."""

    def fit(X, setup, seed):
        products = BareProducts.get(layers_of(X.shape[1], setup),
                                    batch_sizes(X.shape[0], setup.batch_size), skip_first)
        return products.run(setup.epochs, setup.threads)

    n_products = "11" if skip_first else "12"
    return Contender(name, fit, None, floor=True,
                     trains=f"torch.mm(out=) of the {n_products} products of each step of the "
                            "4 layers (forward, weight and input gradients), nothing else")


@dataclass
class Contender:
    name: str
    fit: Callable
    reconstruct: Callable
    encode: Callable | None = None
    trains: str = "n-64-10-64-n, ReLU hidden, linear code and output"
    per_epoch: bool = True
    requires: str | None = None
    floor: bool = False

    def missing(self):
        if self.requires is None:
            return None
        try:
            __import__(self.requires)
        except ImportError:
            return "not installed"
        return None


FLOOR = "bare GEMMs, 12 products (the floor)"
FLOOR_NEEDED = "bare GEMMs, 11 products (what a step needs)"
FUSED = "plain loop (fused Adam)"
SKAE = "skae AutoencoderTransformer"
SKAE_AUTOGRAD = "skae AutoencoderTransformer, autograd step"
MLP = "sklearn MLPRegressor"
SKORCH = "skorch NeuralNetRegressor"

CONTENDERS = [
    floor_contender(FLOOR, autoencoder_layers),
    floor_contender(FLOOR_NEEDED, autoencoder_layers, skip_first=True),
    Contender(FUSED, plain_loop, plain_reconstruct, plain_encode,
              trains="index batches, torch.optim.Adam(fused=True), F.mse_loss"),
    Contender("plain loop (default Adam)", lambda X, s, r: plain_loop(X, s, r, fused=False),
              plain_reconstruct, trains="as above, torch.optim.Adam() (foreach)"),
    Contender("plain loop (DataLoader)", lambda X, s, r: plain_loop(X, s, r, data_loader=True),
              plain_reconstruct,
              trains="as above, DataLoader(TensorDataset) batches, fused Adam"),
    Contender(SKAE, fit_skae, skae_reconstruct, lambda m, X: m.transform(X),
              trains="hand-written dense step (skae/_fastpath.py), own Adam on torch's "
                     "fused kernel, index batches"),
    Contender(SKAE_AUTOGRAD,
              lambda X, s, r: fit_skae(X, s, r, autograd_estimator(skae.AutoencoderTransformer)),
              skae_reconstruct, trains="the same, through autograd (the reference step)"),
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
        if c.floor:  # its operands, built for these batch sizes
            c.fit(X, replace(setup, epochs=0), 0)
    # Everything alive now (modules, imported libraries) is left out of later
    # collections, so that collecting between fits takes microseconds, not
    # the 0.2 s a full collection of this process takes.
    gc.collect()
    gc.freeze()
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
            if repeat == repeats - 1 and c.reconstruct is not None:
                loss[c.name] = mse(c.reconstruct(model, X), X)
    return ({name: statistics.median(v) for name, v in wall.items()},
            {name: statistics.median(v) for name, v in cpu.items()}, loss)


def load(when="at start"):
    """The 1-minute load average, printed with each section (the machine is shared)."""
    try:
        return f"load average {os.getloadavg()[0]:.2f} {when}"
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
    n_steps = len(batch_sizes(X.shape[0], setup.batch_size))
    floor = wall[FLOOR] / setup.epochs
    reference = wall[FUSED] / setup.epochs
    rows = []
    per_epoch = {}
    for c in present:
        final = f"{loss[c.name]:.4f}" if c.name in loss else "-"
        # On a shared machine a process is off the CPU part of the time; its
        # CPU time says what it would take on a quiet one (caches aside).
        cpu_ratio = f"{cpu[c.name] / cpu[FLOOR]:.2f}"
        if c.per_epoch:
            seconds = wall[c.name] / setup.epochs
            per_epoch[c.name] = seconds
            per_epoch[c.name, "cpu"] = cpu[c.name] / setup.epochs
            rows.append([c.name, f"{seconds * 1e3:.1f}", f"{seconds / n_steps * 1e6:.0f}",
                         f"{seconds / floor:.2f}", cpu_ratio, f"{seconds / reference:.2f}",
                         f"{cpu[c.name] / wall[c.name]:.2f}", final, c.trains])
        else:
            rows.append([c.name, f"(whole fit {wall[c.name] * 1e3:.1f})", "",
                         f"(fit = {wall[c.name] / floor:.2f} epochs)", f"({cpu_ratio})",
                         f"(fit = {wall[c.name] / reference:.2f} epochs)",
                         f"{cpu[c.name] / wall[c.name]:.2f}", final, c.trains])
    rows += [[c.name, "not installed", "", "", "", "", "", "", ""] for c in absent]
    print(f"\n### {title}: {X.shape[0]:,} x {X.shape[1]}, {setup.epochs} epoch(s) of {n_steps} "
          f"steps, batch {setup.batch_size}, lr {setup.learning_rate}, no weight decay, "
          f"{setup.threads} thread(s); median of {repeats} interleaved repeats; {load_before}\n")
    print(table(["contender", "ms/epoch", "us/step", "ratio to floor (12 GEMMs)",
                 "same, in CPU time", "ratio to fused plain loop", "CPU/wall", "final MSE on X",
                 "what it trains"], rows))
    return per_epoch


def goals(title, per_epoch):
    if SKAE not in per_epoch:
        return []
    skae_epoch = per_epoch[SKAE]

    def cpu_time(floor):
        return f" (CPU time {per_epoch[SKAE, 'cpu'] / per_epoch[floor, 'cpu']:.2f}x)"

    checks = [
        (f"{title}: skae step within 2x of the bare GEMMs (12 products)",
         skae_epoch / per_epoch[FLOOR], lambda r: r <= 2.0, "{:.2f}x" + cpu_time(FLOOR)),
        (f"{title}: skae step within 2x of the 11 products a step needs",
         skae_epoch / per_epoch[FLOOR_NEEDED], lambda r: r <= 2.0,
         "{:.2f}x" + cpu_time(FLOOR_NEEDED)),
        (f"{title}: skae at most 0.6x the fused plain loop",
         skae_epoch / per_epoch[FUSED], lambda r: r <= 0.6, "{:.2f}x"),
        (f"{title}: skae at least 1.5x faster than MLPRegressor",
         per_epoch[MLP] / skae_epoch, lambda r: r >= 1.5, "MLPRegressor/skae {:.2f}x"),
        (f"{title}: hand-written step faster than skae's autograd step",
         per_epoch[SKAE_AUTOGRAD] / skae_epoch, lambda r: r > 1.0, "autograd/fast {:.2f}x"),
    ]
    if SKORCH in per_epoch:
        checks.append((f"{title}: skae at least 3x faster than skorch",
                       per_epoch[SKORCH] / skae_epoch, lambda r: r >= 3.0,
                       "skorch/skae {:.2f}x"))
    return [[name, fmt.format(value), "met" if ok(value) else "MISSED"]
            for name, value, ok, fmt in checks]


def _bare_encoder(module, dtype, chunk_rows):
    """The matrix products an encoder's forward pass needs and nothing else (no
    bias, no activation, no copy, no validation): its floor. They run on views
    of the input in chunks of ``chunk_rows`` (skae's own chunk size: products
    on the whole table at once are slower, their outputs leave the cache),
    into outputs allocated once."""
    weights = [layer.weight.detach().to(dtype).t() for layer in module.encoder
               if isinstance(layer, nn.Linear)]
    outputs = [torch.empty(chunk_rows, weight.shape[1], dtype=dtype) for weight in weights]

    def encode(X):
        X = torch.from_numpy(X)
        for start in range(0, X.shape[0], chunk_rows):
            codes = X[start:start + chunk_rows]
            for weight, out in zip(weights, outputs):
                codes = torch.mm(codes, weight, out=out[:codes.shape[0]])
        return codes

    return encode


def transform_section(X, repeats, threads, n_components=10):
    """``transform`` of a linear autoencoder against ``PCA.transform`` at the same
    width, and of the default (nonlinear) one against the bare products it needs,
    for float32 and float64 input."""
    fit_rows = X[:5000]
    linear = skae.AutoencoderTransformer(
        n_components, hidden_layer_sizes=(), activation="identity", max_iter=1,
        random_state=0, device="cpu", n_threads=threads).fit(fit_rows)
    default = skae.AutoencoderTransformer(
        n_components, max_iter=1, random_state=0, device="cpu", n_threads=threads).fit(fit_rows)
    hidden = default.hidden_layer_sizes
    inputs = {"float32": X.astype(np.float32), "float64": X.astype(np.float64)}
    pca = {name: PCA(n_components, random_state=0).fit(data[:5000])
           for name, data in inputs.items()}

    def big_chunks(model, data):
        # The chunk size of the previous release (16 MiB of float32 per chunk).
        saved = skae._inference._CHUNK_FLOATS
        skae._inference._CHUNK_FLOATS = 1 << 22
        try:
            return model.transform(data)
        finally:
            skae._inference._CHUNK_FLOATS = saved

    calls = {}
    for name, data in inputs.items():
        dtype = torch.float32 if name == "float32" else torch.float64
        bare_linear, bare_default = (_bare_encoder(model.module_, dtype, model._chunk_rows())
                                     for model in (linear, default))
        calls[name, "PCA.transform"] = lambda d=data, p=pca[name]: p.transform(d)
        calls[name, "linear AE transform"] = lambda d=data: linear.transform(d)
        calls[name, "linear AE, bare product"] = lambda d=data, f=bare_linear: f(d)
        calls[name, "default AE transform"] = lambda d=data: default.transform(d)
        calls[name, "default AE, bare products"] = lambda d=data, f=bare_default: f(d)
        if name == "float32":
            calls[name, "default AE transform, 16 MiB chunks"] = \
                lambda d=data: big_chunks(default, d)
    timings = {key: [] for key in calls}
    load_before = load()
    with torch_thread_count(threads):
        for call in calls.values():
            call()
        keys = list(calls)
        for repeat in range(repeats):
            for key in interleaved(keys, repeat):
                gc.collect()
                start = time.perf_counter()
                calls[key]()
                timings[key].append(time.perf_counter() - start)
    seconds = {key: statistics.median(values) for key, values in timings.items()}
    references = {"PCA.transform": "PCA.transform", "linear AE": "PCA.transform",
                  "default AE": "default AE, bare products"}
    rows = []
    for (name, what), value in seconds.items():
        reference = next(ref for prefix, ref in references.items() if what.startswith(prefix))
        versus_32 = (f"{value / seconds['float32', what]:.2f}"
                     if name == "float64" else "")
        rows.append([name, what, f"{value * 1e3:.1f}", f"{X.shape[0] / value / 1e6:.2f}",
                     f"{value / seconds[name, reference]:.2f} ({reference})", versus_32])
    print(f"\n### Transform: {X.shape[0]:,} x {X.shape[1]} -> {n_components}, linear "
          f"autoencoder (no hidden layer) and the default one (hidden {hidden}, ReLU); "
          f"{threads} thread(s); median of {repeats} interleaved repeats; {load_before}\n")
    print(table(["input", "call", "ms", "million rows/s", "time ratio", "float64 / float32"],
                rows))
    checks = []
    for name in inputs:
        for what, reference, goal in (
                ("linear AE transform", "PCA.transform",
                 "linear autoencoder within 1.5x of PCA.transform"),
                ("default AE transform", "default AE, bare products",
                 "default autoencoder within 1.5x of its bare products")):
            ratio = seconds[name, what] / seconds[name, reference]
            checks.append([f"transform {name}: {goal}", f"{ratio:.2f}x",
                           "met" if ratio <= 1.5 else "MISSED"])
    return checks


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


def run_child(*args, env=None):
    command = [sys.executable, os.path.abspath(__file__), "--child", *map(str, args)]
    # A fixed mmap threshold stops glibc from keeping freed large blocks in
    # its heap, so the resident size follows what is really allocated.
    env = dict(os.environ, PYTHONWARNINGS="ignore", MALLOC_MMAP_THRESHOLD_="131072",
               **(env or {}))
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    return result


def memory_section(n_rows, names=None):
    present, absent = available([c for c in CONTENDERS if not c.floor
                                 and (names is None or c.name in names)])
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


FIRST_FIT_KINDS = ["skae", "plain, torch.optim.Adam(fused=True)",
                   "plain, torch._dynamo imported first"]


def first_fit_section(repeats, kinds=FIRST_FIT_KINDS):
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
    state = (f"with {busy} busy-loop process(es) of ours running beside it" if busy
             else "no busy-loop process of ours (see the load average for others')")
    print(f"\n### Threads: 1 vs 2 torch intra-op threads, {state}; "
          f"{os.cpu_count()} CPUs; median of {repeats} interleaved repeats; {load_before}\n")
    print(table(["data", "contender", "ms/epoch, 1 thread", "ms/epoch, 2 threads",
                 "wall 2T / 1T", "CPU time 2T / 1T"], rows))
    print(f"\n{load('at the end')}")


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


def plain_conv_loop(X, setup, seed, image_shape):
    """skae's convolutional network (its own module class), squared error, fused Adam."""
    from skae._modules import ConvAutoencoder

    torch.manual_seed(seed)
    X_tensor = torch.from_numpy(X)
    model = ConvAutoencoder(image_shape, CONV_CHANNELS, 3, (), setup.code, "relu")
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.learning_rate, fused=True)
    generator = torch.Generator().manual_seed(seed)
    with torch_thread_count(setup.threads):
        for _ in range(setup.epochs):
            order = torch.randperm(X.shape[0], generator=generator)
            for start in range(0, X.shape[0], setup.batch_size):
                X_batch = X_tensor[order[start:start + setup.batch_size]]
                optimizer.zero_grad()
                F.mse_loss(model(X_batch), X_batch).backward()
                optimizer.step()
    return model.eval()


CONV_CHANNELS = (16, 32)


def vae_layers(n_features, setup):
    """The dense layers of the VAE: body, mean and log-variance heads, decoder."""
    return ((n_features, setup.hidden), (setup.hidden, setup.code), (setup.hidden, setup.code),
            (setup.code, setup.hidden), (setup.hidden, n_features))


@dataclass
class Variant:
    """One skae autoencoder against a plain loop with the same network and loss."""

    ours: Contender
    plain: Contender
    data: str  # "synthetic" or "digits"
    floor: Contender | None = None
    autograd: Contender | None = None


def variant_contenders():
    """The other autoencoders skae has, each with its plain loop (and floor)."""
    variants = []
    if hasattr(skae, "DenoisingAutoencoder"):
        dae = lambda estimator: lambda X, s, r: fit_skae(  # noqa: E731
            X, s, r, estimator, noise="gaussian", noise_level=0.1)
        variants.append(Variant(
            Contender("skae DenoisingAutoencoder (gaussian 0.1)",
                      dae(skae.DenoisingAutoencoder), skae_reconstruct),
            Contender("plain loop, gaussian noise 0.1",
                      lambda X, s, r: plain_denoising_loop(X, s, r, 0.1), plain_reconstruct),
            "synthetic", floor_contender("bare GEMMs (12)", autoencoder_layers),
            Contender("skae DenoisingAutoencoder, autograd step",
                      dae(autograd_estimator(skae.DenoisingAutoencoder)), skae_reconstruct)))
    if hasattr(skae, "VariationalAutoencoder"):
        variants.append(Variant(
            Contender("skae VariationalAutoencoder (beta 1)",
                      lambda X, s, r: fit_skae(X, s, r, skae.VariationalAutoencoder, beta=1.0),
                      skae_reconstruct),
            Contender("plain loop, mu/logvar heads + KL",
                      lambda X, s, r: plain_vae_loop(X, s, r, 1.0), plain_vae_reconstruct),
            "synthetic", floor_contender("bare GEMMs (15)", vae_layers)))
    if hasattr(skae, "ConvolutionalAutoencoder"):
        variants.append(Variant(
            Contender("skae ConvolutionalAutoencoder (16, 32 channels)",
                      lambda X, s, r: skae.ConvolutionalAutoencoder(
                          s.code, channels=CONV_CHANNELS, alpha=0.0, batch_size=s.batch_size,
                          learning_rate_init=s.learning_rate, max_iter=s.epochs, tol=0.0,
                          n_iter_no_change=s.epochs + 1, early_stopping=False, random_state=r,
                          device="cpu", n_threads=s.threads).fit(X),
                      skae_reconstruct),
            Contender("plain loop, the same ConvAutoencoder module",
                      lambda X, s, r: plain_conv_loop(X, s, r, (1, 8, 8)), plain_reconstruct),
            "digits"))
    return variants


def variants_section(datasets, repeats):
    """Each variant against its plain loop on the data of ``datasets[variant.data]``."""
    variants = variant_contenders()
    rows, checks = [], []
    load_before = load()
    for variant in variants:
        X, setup = datasets[variant.data]
        n_steps = len(batch_sizes(X.shape[0], setup.batch_size))
        contenders = [c for c in (variant.ours, variant.plain, variant.floor, variant.autograd)
                      if c is not None]
        wall, _, loss = time_fits(contenders, X, setup, repeats)
        ours, plain = wall[variant.ours.name], wall[variant.plain.name]
        floor = f"{ours / wall[variant.floor.name]:.2f}" if variant.floor else "-"
        autograd = (f"{wall[variant.autograd.name] / ours:.2f}" if variant.autograd else "-")
        rows.append([variant.ours.name, variant.plain.name, f"{X.shape[0]:,} x {X.shape[1]}",
                     f"{ours / setup.epochs / n_steps * 1e6:.0f}",
                     f"{plain / setup.epochs / n_steps * 1e6:.0f}", f"{ours / plain:.2f}", floor,
                     autograd,
                     f"{loss[variant.ours.name]:.4f} / {loss[variant.plain.name]:.4f}"])
        checks.append([f"{variant.ours.name} within 1.10x of its plain loop",
                       f"{ours / plain:.2f}x", "met" if ours <= 1.10 * plain else "MISSED"])
    print(f"\n### Other autoencoders against plain loops with the same network and loss; "
          f"{repeats} interleaved repeats, medians; {load_before}\n")
    print(table(["skae", "plain loop", "data", "skae us/step", "plain us/step",
                 "ratio to plain", "ratio to bare GEMMs", "autograd step / skae",
                 "final MSE of decoded means, skae / plain"], rows))
    return checks


# --------------------------------------------------------------------------- #
# A compiled step: its cold start against what it saves per step.


def child_compile(n_features):
    """First-epoch cost and per-step time of a torch.compile'd plain loop, and skae's step."""
    result = {}
    setup = Setup(epochs=1)
    X = synthetic_data(20 * setup.batch_size, n_features)
    start = time.perf_counter()
    import torch._dynamo  # noqa: F401

    result["import_s"] = time.perf_counter() - start
    torch.manual_seed(0)
    model = PlainAutoencoder(n_features, setup.hidden, setup.code)
    compiled = torch.compile(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.learning_rate, fused=True)
    X_tensor = torch.from_numpy(X)
    batches = [X_tensor[i:i + setup.batch_size] for i in range(0, X.shape[0], setup.batch_size)]

    def epoch():
        for X_batch in batches:
            optimizer.zero_grad()
            F.mse_loss(compiled(X_batch), X_batch).backward()
            optimizer.step()

    epochs = []
    for _ in range(4):
        start = time.perf_counter()
        epoch()
        epochs.append(time.perf_counter() - start)
    result["first_epoch_s"] = epochs[0]
    result["compiled_step_s"] = statistics.median(epochs[1:]) / len(batches)
    seconds = []  # skae's epochs, as its callbacks see them
    fit_skae(X, replace(setup, epochs=4), 0, callbacks=[lambda r: seconds.append(r.seconds)])
    result["skae_step_s"] = statistics.median(seconds[1:]) / len(batches)
    print(json.dumps(result))


def compile_section(widths):
    rows = []
    for n_features in widths:
        with tempfile.TemporaryDirectory() as cache:
            # An empty inductor cache, then the same cache in a second process.
            env = {"TORCHINDUCTOR_CACHE_DIR": cache}
            cold = run_child("compile", n_features, env=env)
            warm = run_child("compile", n_features, env=env)
        for label, result in (("cold (empty cache)", cold), ("second process (warm cache)", warm)):
            later = result["compiled_step_s"] * 20
            extra = result["first_epoch_s"] - later
            saving = result["skae_step_s"] - result["compiled_step_s"]
            break_even = f"{extra / saving:,.0f} steps" if saving > 0 else "never"
            rows.append([f"{n_features}", label, f"{result['import_s']:.2f}", f"{extra:.1f}",
                         f"{result['compiled_step_s'] * 1e6:.0f}",
                         f"{result['skae_step_s'] * 1e6:.0f}", break_even])
    print("\n### A torch.compile'd step (inductor, CPU): cold start against skae's step; "
          "batch 200, n-64-10-64-n, 1 thread\n")
    print(table(["features", "process", "import torch._dynamo (s)",
                 "compile, first epoch extra (s)", "compiled us/step", "skae us/step",
                 "break-even"], rows))


# --------------------------------------------------------------------------- #

DIGITS_EPOCHS = 50


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-size run (seconds)")
    parser.add_argument("--busy", type=int, nargs="?", const=1, default=0, metavar="N",
                        help="also run the thread section beside N busy-loop processes "
                             "(default 1)")
    parser.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all "
                             "but compile)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch (and BLAS) threads for every contender (default 1)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        if kind == "memory":
            child_memory(*rest)
        elif kind == "compile":
            child_compile(int(rest[0]))
        else:
            child_first_fit(rest[0])
        return

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    warnings.simplefilter("ignore")
    if args.quick:
        # Every code path once, at sizes that say nothing about speed.
        n_rows, wide_rows, big_epochs, digits_epochs, repeats = 1_000, 200, 1, 2, 1
        memory_rows, quick_names = 1_000, [SKAE]
    else:
        n_rows, wide_rows, big_epochs, digits_epochs, repeats = 100_000, 20_000, 3, DIGITS_EPOCHS, 5
        memory_rows, quick_names = n_rows, None
    threads = args.threads
    torch.set_num_threads(threads)
    big = synthetic_data(n_rows)
    wide = wide_data(wide_rows)
    digits = digits_data()
    big_setup = Setup(epochs=big_epochs, threads=threads)
    wide_setup = Setup(epochs=1, threads=threads)
    digits_setup = Setup(epochs=digits_epochs, threads=threads)

    blas = sorted({f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()})
    started = time.perf_counter()
    print("## skae training benchmark\n")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, torch {torch.__version__}, scikit-learn "
          f"{sklearn.__version__}, skae {skae.__version__}; torch threads "
          f"{torch.get_num_threads()} (skae n_threads={threads}); BLAS threads limited to "
          f"{threads} for NumPy contenders (found: {', '.join(blas)}); {load()}")
    checks = []
    with threadpool_limits(limits=threads, user_api="blas"):
        if "synthetic" in sections:
            per_epoch = training_section("Synthetic", big, big_setup, repeats)
            checks += goals(f"synthetic {n_rows:,} x 100", per_epoch)
        if "digits" in sections:
            per_epoch = training_section("Digits", digits, digits_setup, repeats)
            checks += goals("digits", per_epoch)
        if "wide" in sections:
            per_epoch = training_section("Wide", wide, wide_setup, repeats)
            checks += goals(f"wide {wide_rows:,} x 784", per_epoch)
        if "transform" in sections:
            checks += transform_section(big, repeats, threads)
        if "memory" in sections:
            memory_section(memory_rows, quick_names)
        if "first-fit" in sections:
            first_fit_section(1 if args.quick else 3,
                              FIRST_FIT_KINDS[:1] if args.quick else FIRST_FIT_KINDS)
        if "threads" in sections:
            datasets = [(f"wide {wide_rows:,} x 784", wide, wide_setup),
                        ("digits", digits[:wide_rows] if args.quick else digits,
                         replace(digits_setup, epochs=max(1, digits_epochs // 2)))]
            thread_section(datasets, repeats, busy=0)
            if args.busy:
                thread_section(datasets, max(3, repeats // 2), busy=args.busy)
        if "variants" in sections:
            checks += variants_section({"synthetic": (big, big_setup),
                                        "digits": (digits, replace(digits_setup,
                                                                   epochs=min(10, digits_epochs)))},
                                       repeats)
        if "compile" in sections:
            compile_section([64] if args.quick else [100, 784])
    if checks:
        print("\n### Goals\n")
        print(table(["goal", "measured", "verdict"], checks))
    print(f"\nWhole run: {time.perf_counter() - started:.0f} s; {load('at the end')}.")


if __name__ == "__main__":
    main()
