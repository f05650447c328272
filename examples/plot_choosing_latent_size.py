"""
Choosing the size of the code
=============================

An autoencoder's score is a held-out log-likelihood that peaks at the code
size to keep, so a plain grid search over ``n_components`` finds it; the refit
rule :func:`skae.model_selection.smallest_within` keeps a smaller code whose
score is within one standard error of the best.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from skae import AutoencoderTransformer
from skae.model_selection import smallest_within

# Settings; SKAE_EXAMPLE_QUICK=1 (the tests, quick docs builds) runs small ones:
# fewer rows, folds and sizes, and a callback ends every fit after 3 epochs (a
# stop asked for, so no ConvergenceWarning); the figure then means little.
QUICK = os.environ.get("SKAE_EXAMPLE_QUICK") == "1"
CALLBACKS = [lambda record: record.epoch >= 3] if QUICK else None
N_SAMPLES = 300 if QUICK else 1797
OUTPUT = os.environ.get("SKAE_EXAMPLE_OUTPUT", "plot_choosing_latent_size.png")
N_FOLDS = 3 if QUICK else 5

# %%
# Data of known rank: 30 features that are linear mixtures of 5 hidden
# variables, plus a little noise. A linear autoencoder (which finds the
# principal subspace) is searched over codes of 1 to 10 with scikit-learn's
# default refit: the held-out log-likelihood (probabilistic PCA around the
# autoencoder) falls on both sides of the rank, so the search keeps 5.
# Every fit of both searches stops early on 10% of its training rows held out
# (``early_stopping=True``), before ``max_iter``.
rng = np.random.RandomState(0)
X_rank = rng.normal(size=(min(N_SAMPLES, 500), 5)) @ rng.normal(size=(5, 30))
X_rank += 0.1 * rng.normal(size=X_rank.shape)
linear = AutoencoderTransformer(activation="identity", hidden_layer_sizes=(), max_iter=100,
                                early_stopping=True, callbacks=CALLBACKS, random_state=0)
rank_search = GridSearchCV(linear, {"n_components": [2, 4, 5, 6, 8] if QUICK else
                                    list(range(1, 11))}, cv=N_FOLDS).fit(X_rank)

# %%
# The digits, scaled to [0, 1], with the default (nonlinear) autoencoder but
# for its learning rate. The reconstruction error falls all the way to 48
# codes of 64 pixels, but the likelihood stops paying for codes that model
# the noise of held-out digits: the plain search keeps a mid-size code.
#
# ``learning_rate_init=1e-4``, a thirtieth of the default: the PCA start of a
# code of 32 or 48 already reconstructs the digits almost perfectly, and at
# the default rate every epoch of those fits scored worse than that start:
# early stopping kept the start, with a ConvergenceWarning that says to lower
# the rate.
X_digits = load_digits(return_X_y=True)[0][:N_SAMPLES]
pipeline = make_pipeline(MinMaxScaler(), AutoencoderTransformer(
    learning_rate_init=1e-4, max_iter=200, early_stopping=True, callbacks=CALLBACKS,
    random_state=0))
digits_search = GridSearchCV(
    pipeline, {"autoencodertransformer__n_components": [2, 8, 32] if QUICK else
               [2, 4, 8, 16, 32, 48]}, cv=N_FOLDS).fit(X_digits)
one_standard_error = smallest_within()


# %%
# Mean test score (the held-out log-likelihood, nats per row) against the size
# of the code, with one standard error of the mean over the folds as the
# error bars. The dashed line is the worst score the one-standard-error rule
# accepts; its star, the smallest code above that line.
def plot_search(ax, search, param, title):
    results = search.cv_results_
    sizes = np.asarray(results[f"param_{param}"], dtype=float)
    means = results["mean_test_score"]
    errors = results["std_test_score"] * np.sqrt(N_FOLDS / (N_FOLDS - 1)) / np.sqrt(N_FOLDS)
    best, chosen = search.best_index_, one_standard_error(results)
    ax.errorbar(sizes, means, yerr=errors, marker="o", capsize=3, color="tab:blue")
    ax.axhline(one_standard_error.threshold(results), color="gray", linestyle="--",
               linewidth=1, label=f"accepted by {one_standard_error!r}")
    ax.plot(sizes[best], means[best], "s", color="tab:orange", markersize=11,
            fillstyle="none", markeredgewidth=2,
            label=f"plain search keeps n_components={sizes[best]:.0f}")
    ax.plot(sizes[chosen], means[chosen], "*", color="tab:red", markersize=15,
            label=f"one standard error: n_components={sizes[chosen]:.0f}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [f"{size:.0f}" for size in sizes])
    ax.set_xlabel("n_components")
    ax.set_ylabel("mean test score (log-likelihood)")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="lower right")
    print(f"{title}: scores {np.round(means, 2).tolist()}; the plain search keeps "
          f"{sizes[best]:.0f}, the one-standard-error rule {sizes[chosen]:.0f}")


fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
plot_search(left, rank_search, "n_components", "Rank-5 data, linear autoencoder")
plot_search(right, digits_search, "autoencodertransformer__n_components",
            "Digits, autoencoder (learning_rate_init=1e-4)")
fig.suptitle(f"Score against code size ({N_FOLDS}-fold cross-validation; "
             "error bars: one standard error)")
fig.tight_layout()
fig.savefig(OUTPUT, dpi=100)
print(f"wrote {OUTPUT}")
