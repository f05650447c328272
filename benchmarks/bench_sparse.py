"""Sparse autoencoder features against raw pixels and RBM features, for a linear classifier.

Method: the digits (8x8, scaled to [0, 1] by dividing by 16), split 75/25
stratified, once per seed. Three representations of the training rows feed
a logistic regression, fitted on the training rows and scored (accuracy) on
the held-out ones:

- raw pixels;
- ``BernoulliRBM(n_components=100, learning_rate=0.06, n_iter=20)``, the
  scikit-learn gallery's "RBM features for digit classification" settings
  (the gallery also adds shifted copies of every image; neither contender
  gets them here);
- ``SparseAutoencoder(n_components=100)`` at its defaults.

Each representation is fed to ``LogisticRegression()`` at its default
``C=1``, and to ``GridSearchCV`` choosing ``C`` by 3-fold
cross-validation on the training rows alone, as the gallery chose its ``C``
(100 for the pixels, 6000 for the RBM) by a grid search. Both models of a
seed use the same split and ``random_state``; one CPU thread.

Run: ``python benchmarks/bench_sparse.py [--seeds 5] [--quick]``; ``--quick``
(two seeds, fewer epochs and a smaller C grid) checks that it runs.
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import BernoulliRBM

from skae import SparseAutoencoder

C_GRID = np.logspace(-1, 3, 5)


def contenders(seed, quick):
    """Name -> unfitted feature extractor (None: raw pixels)."""
    return {
        "raw pixels": None,
        "BernoulliRBM(100)": BernoulliRBM(n_components=100, learning_rate=0.06,
                                          n_iter=5 if quick else 20, random_state=seed),
        "SparseAutoencoder(100)": SparseAutoencoder(100, random_state=seed,
                                                    **({"max_iter": 20} if quick else {})),
    }


def measure(seeds, quick=False):
    """Per contender, per seed: accuracies at C=1 and at C chosen by CV, the C
    chosen, the mean feature on the held-out rows and the seconds to fit."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    grid = C_GRID[::2] if quick else C_GRID
    results = {}
    for seed in seeds:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.25, random_state=seed, stratify=y)
        for name, extractor in contenders(seed, quick).items():
            start = time.perf_counter()
            if extractor is None:
                F_train, F_test = X_train, X_test
            else:
                F_train = extractor.fit(X_train).transform(X_train)
                F_test = extractor.transform(X_test)
            seconds = time.perf_counter() - start
            row = results.setdefault(name, {"default C": [], "CV C": [], "chosen C": [],
                                            "mean activation": [], "seconds": []})
            default = LogisticRegression(max_iter=2000).fit(F_train, y_train)
            tuned = GridSearchCV(LogisticRegression(max_iter=2000), {"C": grid}, cv=3)
            tuned.fit(F_train, y_train)
            row["default C"].append(default.score(F_test, y_test))
            row["CV C"].append(tuned.score(F_test, y_test))
            row["chosen C"].append(float(tuned.best_params_["C"]))
            row["mean activation"].append(float(F_test.mean()))
            row["seconds"].append(seconds)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seeds = range(2 if args.quick else args.seeds)
    results = measure(seeds, quick=args.quick)
    print(f"digits / 16, held-out accuracy, mean (min) over {len(seeds)} seeds")
    print(f"{'features':24s} {'LogReg C=1':>16s} {'LogReg C by CV':>16s} {'C chosen':>14s} "
          f"{'mean feature':>13s} {'fit s':>6s}")
    for name, row in results.items():
        chosen = "/".join(f"{c:g}" for c in row["chosen C"])
        print(f"{name:24s} {np.mean(row['default C']):9.4f} ({min(row['default C']):.3f})"
              f" {np.mean(row['CV C']):9.4f} ({min(row['CV C']):.3f}) {chosen:>14s}"
              f" {np.mean(row['mean activation']):13.3f} {np.mean(row['seconds']):6.2f}")


if __name__ == "__main__":
    main()
