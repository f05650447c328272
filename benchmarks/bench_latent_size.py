"""Can a plain grid search find the code size? Picks against the true rank.

Data: ``rank`` hidden standard normal variables mixed into 30 features by a
random Gaussian matrix (each feature's signal of variance 1), plus isotropic
Gaussian noise whose standard deviation is ``level`` times the signal's (1%
to 50%); 300 rows. Each contender is searched with
``GridSearchCV(estimator, {"n_components": grid}, cv=3)`` at its default
``refit`` and scoring (its own ``score``), over the grid ``1 ... rank + 4``
(at most 12): ``PCA`` (``score`` is probabilistic PCA's log-likelihood), the
linear autoencoder (``activation="identity"``, ``hidden_layer_sizes=()``),
the default ``AutoencoderTransformer``, and ``FactorAnalysis``. A cell is how
many of the seeds picked the true rank; the last table adds the search over
the digits (``MinMaxScaler``, then the default autoencoder, codes 2 to 48).

Every run uses one thread. Run ``python benchmarks/bench_latent_size.py
[--quick] [n_seeds]``: ``--quick`` (ranks 2 and 6, levels 1% and 50%, one seed,
no digits) is the smoke test (half a minute); the full sweep (ranks 2 to 10,
five levels, two seeds, the digits) took 25 minutes on a 2-core machine
shared with other jobs (19 of them fitting: PCA 1.4, FactorAnalysis 6.8, the
linear AE 3.4, the default AE 7.4), and prints the tables of
docs/user_guide/choosing_latent_size.rst.
"""

import sys
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from skae import AutoencoderTransformer

N_FEATURES, N_ROWS, N_FOLDS = 30, 300, 3

CONTENDERS = {
    "PCA.score": lambda seed: PCA(),
    "FactorAnalysis.score": lambda seed: FactorAnalysis(random_state=seed),
    "linear AE": lambda seed: AutoencoderTransformer(
        activation="identity", hidden_layer_sizes=(), n_threads=1, random_state=seed),
    "default AE": lambda seed: AutoencoderTransformer(n_threads=1, random_state=seed),
}


def low_rank(rank, level, seed):
    """``N_ROWS`` rows of rank ``rank`` in ``N_FEATURES`` features plus noise of
    standard deviation ``level`` times the signal's."""
    rng = np.random.RandomState(seed)
    signal = rng.normal(size=(N_ROWS, rank)) @ rng.normal(size=(rank, N_FEATURES))
    signal /= np.sqrt(rank)  # each feature's signal has variance 1
    return signal + level * rng.normal(size=signal.shape)


def search(estimator, X, grid, param="n_components"):
    """The code size a default-refit grid search keeps, and its mean test scores."""
    with warnings.catch_warnings():
        # Fits that keep their PCA start say so; the search's choice is the point here.
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = GridSearchCV(estimator, {param: grid}, cv=N_FOLDS).fit(X)
    return fitted.best_params_[param], fitted.cv_results_["mean_test_score"]


def main(quick, n_seeds):
    torch.set_num_threads(1)
    ranks = (2, 6) if quick else tuple(range(2, 11))
    levels = (0.01, 0.5) if quick else (0.01, 0.05, 0.1, 0.25, 0.5)
    hits = {name: np.zeros((len(ranks), len(levels)), dtype=int) for name in CONTENDERS}
    seconds = dict.fromkeys(CONTENDERS, 0.0)
    picks = {name: [] for name in CONTENDERS}
    for i, rank in enumerate(ranks):
        grid = list(range(1, min(rank + 4, 12) + 1))
        for j, level in enumerate(levels):
            for seed in range(n_seeds):
                X = low_rank(rank, level, seed)
                for name, make in CONTENDERS.items():
                    start = time.perf_counter()
                    chosen, _ = search(make(seed), X, grid)
                    seconds[name] += time.perf_counter() - start
                    hits[name][i, j] += chosen == rank
                    picks[name].append(chosen - rank)

    print(f"Picks of the true rank out of {n_seeds} seed(s): low-rank data ({N_ROWS} rows, "
          f"{N_FEATURES} features) plus isotropic noise; GridSearchCV(cv={N_FOLDS}), default "
          "refit, over n_components = 1 ... rank + 4.\n")
    header = "| contender | " + " | ".join(
        f"noise {level:.0%}" for level in levels) + " | total | mean pick - rank | seconds |"
    print(header)
    print("|" + "---|" * (len(levels) + 4))
    for name in CONTENDERS:
        per_level = hits[name].sum(axis=0)
        cells = " | ".join(f"{count}/{len(ranks) * n_seeds}" for count in per_level)
        print(f"| {name} | {cells} | {hits[name].sum()}/{len(ranks) * len(levels) * n_seeds} "
              f"| {np.mean(picks[name]):+.2f} | {seconds[name]:.0f} |")
    print("\nPer rank (all noise levels and seeds):\n")
    print("| contender | " + " | ".join(f"rank {rank}" for rank in ranks) + " |")
    print("|" + "---|" * (len(ranks) + 1))
    for name in CONTENDERS:
        cells = " | ".join(f"{count}/{len(levels) * n_seeds}" for count in hits[name].sum(axis=1))
        print(f"| {name} | {cells} |")

    if quick:
        return
    X_digits = load_digits().data
    grid = [2, 4, 8, 16, 32, 48]
    print(f"\nDigits (MinMaxScaler, {N_FOLDS}-fold, codes " + ", ".join(map(str, grid)) + "):\n")
    print("| model | " + " | ".join(map(str, grid)) + " | picked |")
    print("|" + "---|" * (len(grid) + 2))
    for name, estimator in (("PCA", PCA()), ("default AE", AutoencoderTransformer(
            n_threads=1, random_state=0))):
        step = type(estimator).__name__.lower()
        chosen, means = search(make_pipeline(MinMaxScaler(), estimator), X_digits, grid,
                               param=f"{step}__n_components")
        print(f"| {name} | " + " | ".join(f"{mean:.1f}" for mean in means) + f" | {chosen} |")


if __name__ == "__main__":
    arguments = [argument for argument in sys.argv[1:] if argument != "--quick"]
    quick = "--quick" in sys.argv[1:]
    main(quick, int(arguments[0]) if arguments else (1 if quick else 2))
