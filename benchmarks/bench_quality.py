"""Are skae's defaults good on real tables? Quality, side by side with the usual baselines.

Three sections, each with skae's estimators at their DEFAULT parameters (only
``n_components`` and ``random_state`` are set), so that re-running this script
after a change of defaults measures the new ones:

* ``reconstruction``: held-out (25%) mean squared reconstruction error of
  ``AutoencoderTransformer(k)`` and ``DenoisingAutoencoder(k)`` against
  ``PCA(k)`` on six tables, with the epochs run, ConvergenceWarnings and fit
  times; plus whether the quick-start pipelines converge.
* ``classifier``: test accuracy of ``AutoencoderClassifier()`` on the digits
  with 1-50% of the training labels, against ``LogisticRegression`` and
  ``MLPClassifier`` trained on the labelled rows only.
* ``anomaly``: the synthetic tables of ``bench_anomaly.py``: ROC AUC of a
  default ``AutoencoderTransformer`` (``-score_samples`` and its reconstruction
  error, on standardised data) against PCA, IsolationForest and PyOD's
  ``AutoEncoder`` with its defaults, on PyOD's generators (``generate_data``
  at offsets 2, 3, 5 and 10, ``generate_data_clusters``) and on dependency
  anomalies.

Run ``python benchmarks/bench_quality.py`` (about 15 minutes on one thread;
``--quick`` is a smoke run of a few seconds per section, whose figures mean
nothing). Every fit runs on one thread: torch's intra-op threads and the BLAS
of NumPy are limited to 1.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from threadpoolctl import threadpool_limits

from skae import AutoencoderClassifier, AutoencoderTransformer, DenoisingAutoencoder

N_THREADS = 1


# --------------------------------------------------------------------------- #
# Synthetic tables. Each generator is seeded by its own constant, so that the
# tables are the same in every run; the seeds of a benchmark vary the split and
# the models, not the data.

def wide_counts(n_rows=700, n_genes=765, rank=10):
    """Log-normalised negative-binomial counts of a low-rank model (like single-cell RNA).

    Cells belong to 8 types whose centres lie in a ``rank``-dimensional
    factor space, with Gaussian variation within a type; a gene's log mean
    is a baseline plus sparse loadings times the factors; library sizes are
    log-normal (median 3,000); counts are negative binomial (variance
    ``mu + 0.2 mu**2``); each row is scaled to 10,000 counts and ``log1p``-ed.
    """
    rng = np.random.RandomState(1000)
    n_types = 8
    centres = rng.normal(size=(n_types, rank))
    factors = centres[rng.randint(n_types, size=n_rows)] + rng.normal(scale=0.4,
                                                                      size=(n_rows, rank))
    baseline = rng.normal(loc=-1.0, scale=1.5, size=n_genes)
    loadings = rng.normal(scale=0.5, size=(rank, n_genes)) * (rng.rand(rank, n_genes) < 0.3)
    share = np.exp(baseline + factors @ loadings)
    share /= share.sum(axis=1, keepdims=True)
    mean = share * rng.lognormal(mean=np.log(3000), sigma=0.5, size=(n_rows, 1))
    dispersion = 0.2
    counts = rng.poisson(rng.gamma(shape=1 / dispersion, scale=mean * dispersion))
    library = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return np.log1p(counts / library * 1e4)


def signals(n_rows=5000, n_points=40):
    """Sums of three sinusoids of random frequency (0.5-4 cycles), amplitude and phase,
    sampled at 40 points, plus Gaussian noise of deviation 0.1."""
    rng = np.random.RandomState(2000)
    t = np.linspace(0, 1, n_points)
    X = np.zeros((n_rows, n_points))
    for _ in range(3):
        frequency = rng.uniform(0.5, 4.0, size=(n_rows, 1))
        amplitude = rng.uniform(0.3, 1.0, size=(n_rows, 1))
        phase = rng.uniform(0, 2 * np.pi, size=(n_rows, 1))
        X += amplitude * np.sin(2 * np.pi * frequency * t + phase)
    return X + rng.normal(scale=0.1, size=X.shape)


def manifold(n_rows=15000, n_features=300, latent=6):
    """A smooth 6-dimensional manifold in 300 dimensions: uniform latent points through
    a random one-hidden-layer tanh network, plus Gaussian noise of deviation 0.1."""
    rng = np.random.RandomState(3000)
    Z = rng.uniform(-1, 1, size=(n_rows, latent))
    hidden = np.tanh(Z @ (1.5 * rng.normal(size=(latent, 64))) + 0.5 * rng.normal(size=64))
    X = hidden @ (rng.normal(size=(64, n_features)) / 8.0)
    return X + rng.normal(scale=0.1, size=X.shape)


@dataclass
class Table:
    name: str
    load: object      # () -> X
    k: int
    scale: bool       # StandardScaler fitted on the training rows
    preprocessing: str


TABLES = [
    Table("wine", lambda: load_wine(return_X_y=True)[0], 4, True, "standardised"),
    Table("breast cancer", lambda: load_breast_cancer(return_X_y=True)[0], 4, True,
          "standardised"),
    Table("digits", lambda: load_digits(return_X_y=True)[0] / 16.0, 8, False, "/ 16"),
    Table("wide counts", wide_counts, 16, False, "log1p(CP10k) of NB counts"),
    Table("signals", signals, 8, False, "raw"),
    Table("manifold", manifold, 8, True, "standardised"),
]


# --------------------------------------------------------------------------- #
# Helpers.

def fit_quietly(estimator, *args):
    """Fit, returning (seconds, whether a ConvergenceWarning was raised)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        estimator.fit(*args)
        seconds = time.perf_counter() - start
    return seconds, any(issubclass(w.category, ConvergenceWarning) for w in caught)


def held_out_mse(model, X):
    return float(((model.inverse_transform(model.transform(X)) - X) ** 2).mean())


def split(table, X, seed):
    X_train, X_test = train_test_split(X, test_size=0.25, random_state=seed)
    if table.scale:
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    return X_train, X_test


def spread(values, fmt="{:.3f}"):
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(values.mean())} ({fmt.format(values.min())}-{fmt.format(values.max())})"


# --------------------------------------------------------------------------- #
# Sections.

def reconstruction(seeds, quick):
    estimators = {"AutoencoderTransformer": AutoencoderTransformer,
                  "DenoisingAutoencoder": DenoisingAutoencoder}
    print(f"\n### Reconstruction: held-out (25%) MSE / PCA's at the same k; defaults except "
          f"n_components=k; mean (min-max) over {len(seeds)} seed(s) of split and model; "
          f"{N_THREADS} thread\n")
    print("| table | rows x columns | k | PCA MSE | estimator | MSE / PCA | epochs (median) "
          "| ConvergenceWarnings | fit s (median) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for table in TABLES:
        X = table.load()
        if quick:
            X = X[:400, :200]
        n_rows, n_columns = X.shape
        pca_mse, rows = [], {name: ([], [], [], []) for name in estimators}
        for seed in seeds:
            X_train, X_test = split(table, X, seed)
            pca_mse.append(held_out_mse(PCA(table.k).fit(X_train), X_test))
            for name, estimator in estimators.items():
                model = estimator(table.k, random_state=seed)
                if quick:
                    model.set_params(max_iter=3)
                seconds, warned = fit_quietly(model, X_train)
                ratio, epochs, warnings_, times = rows[name]
                ratio.append(held_out_mse(model, X_test) / pca_mse[-1])
                epochs.append(model.n_iter_)
                warnings_.append(warned)
                times.append(seconds)
        for index, (name, (ratio, epochs, warned, times)) in enumerate(rows.items()):
            head = (f"| {table.name} ({table.preprocessing}) | {n_rows:,} x {n_columns} | "
                    f"{table.k} | {np.mean(pca_mse):.4g} |" if index == 0 else "| | | | |")
            print(f"{head} {name} | {spread(ratio)} | {int(np.median(epochs))} | "
                  f"{sum(warned)}/{len(warned)} | {np.median(times):.2f} |", flush=True)

    print("\nQuick-start pipelines (README), fitted once with random_state=0:\n")
    print("| pipeline | epochs | ConvergenceWarning | fit s |")
    print("|---|---|---|---|")
    X_digits = load_digits(return_X_y=True)[0]
    X_cancer = load_breast_cancer(return_X_y=True)[0]
    pipelines = {
        "digits: MinMaxScaler, AutoencoderTransformer(16, hidden_layer_sizes=(128, 64))": (
            make_pipeline(MinMaxScaler(), AutoencoderTransformer(
                16, hidden_layer_sizes=(128, 64), random_state=0)), X_digits),
        "breast cancer: StandardScaler, AutoencoderTransformer(4)": (
            make_pipeline(StandardScaler(), AutoencoderTransformer(4, random_state=0)),
            X_cancer),
    }
    for name, (pipeline, X) in pipelines.items():
        if quick:
            pipeline[-1].set_params(max_iter=3)
        seconds, warned = fit_quietly(pipeline, X)
        print(f"| {name} | {pipeline[-1].n_iter_} | {'yes' if warned else 'no'} | "
              f"{seconds:.2f} |", flush=True)


def classifier(seeds, quick):
    fractions = (0.05,) if quick else (0.01, 0.02, 0.05, 0.1, 0.5)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_pool, X_test, y_pool, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y)
    contenders = {
        "AutoencoderClassifier() (all rows, -1 unlabelled)": None,
        "LogisticRegression(max_iter=1000)": lambda seed: LogisticRegression(max_iter=1000),
        "MLPClassifier(max_iter=1000)": lambda seed: MLPClassifier(max_iter=1000,
                                                                   random_state=seed),
    }
    print(f"\n### Semi-supervised digits: test accuracy ({len(y_test)} test rows), "
          f"{len(y_pool)} training rows of which a fraction is labelled; mean (min-max) "
          f"over {len(seeds)} label draw(s); {N_THREADS} thread\n")
    print("| labelled | " + " | ".join(contenders) + " |")
    print("|---|" + "---|" * len(contenders))
    for fraction in fractions:
        accuracy = {name: [] for name in contenders}
        n_labels = round(fraction * len(y_pool))
        for seed in seeds:
            labelled = np.random.RandomState(seed).permutation(len(y_pool))[:n_labels]
            for name, make in contenders.items():
                if make is None:
                    y_partial = np.full_like(y_pool, -1)
                    y_partial[labelled] = y_pool[labelled]
                    model = AutoencoderClassifier(random_state=seed)
                    if quick:
                        model.set_params(max_iter=3, autoencoder=AutoencoderTransformer(
                            max_iter=3))
                    fit_quietly(model, X_pool, y_partial)
                else:
                    model = make(seed)
                    if quick:
                        model.set_params(max_iter=3)
                    fit_quietly(model, X_pool[labelled], y_pool[labelled])
                accuracy[name].append(model.score(X_test, y_test))
        print(f"| {fraction:.0%} ({n_labels}) | "
              + " | ".join(spread(accuracy[name]) for name in contenders) + " |", flush=True)


def anomaly(seeds, quick):
    """The synthetic tables of ``bench_anomaly.py`` (which holds the data, the
    contenders and the one-class MNIST table: run it with ``--mnist``)."""
    from bench_anomaly import synthetic  # the script's folder is on sys.path

    synthetic(1 if quick else max(len(seeds), 8), quick)


SECTIONS = {"reconstruction": reconstruction, "classifier": classifier, "anomaly": anomaly}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny, meaningless")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per cell (default 3)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, of {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    seeds = range(1 if args.quick else args.seeds)
    from bench_anomaly import print_environment  # the script's folder is on sys.path

    print_environment()
    torch.set_num_threads(N_THREADS)
    start = time.perf_counter()
    with threadpool_limits(limits=N_THREADS, user_api="blas"):
        for name in args.sections.split(","):
            SECTIONS[name.strip()](seeds, args.quick)
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
