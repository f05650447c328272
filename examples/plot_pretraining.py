"""
Unsupervised pretraining with few labels
========================================

An :class:`~skae.AutoencoderClassifier` pretrained on every digit, labelled or
not, beats the same network trained from scratch when only a few dozen digits
are labelled, and stops paying once labels are plentiful.
"""

import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skae import AutoencoderClassifier, DenoisingAutoencoder

# Settings; SKAE_EXAMPLE_QUICK=1 (the tests, quick docs builds) runs small ones.
QUICK = os.environ.get("SKAE_EXAMPLE_QUICK") == "1"
OUTPUT = os.environ.get("SKAE_EXAMPLE_OUTPUT", "plot_pretraining.png")

# %%
# Digits scaled to [0, 1]; 30% are held out for testing. Of the rest, a
# fraction keeps its label and the others are marked ``-1`` (unlabelled).
X, y = load_digits(return_X_y=True)
X_pool, X_test, y_pool, y_test = train_test_split(
    X / 16.0, y, test_size=0.3, random_state=0, stratify=y)
fractions = [0.02, 0.1] if QUICK else [0.01, 0.02, 0.05, 0.1, 0.5]
seeds = range(2 if QUICK else 3)
# Quick runs cut the epochs; full runs keep the defaults.
epochs = dict(max_iter=5) if QUICK else {}

# %%
# With pretraining, a denoising autoencoder learns a 16-number code from all
# the rows and a softmax layer is trained on the codes of the labelled ones
# (the encoder stays frozen). Without it, the same network starts from random
# weights and trains on the labelled rows only.
warnings.simplefilter("ignore", ConvergenceWarning)
variants = {
    "pretrained (frozen encoder)": dict(),
    "from scratch": dict(pretrain=False, freeze_encoder=False),
}
accuracy = {name: np.zeros((len(fractions), len(seeds))) for name in variants}
for seed in seeds:
    order = np.random.RandomState(seed).permutation(len(y_pool))
    for row, fraction in enumerate(fractions):
        labelled = order[:round(fraction * len(y_pool))]
        y_partial = np.full_like(y_pool, -1)
        y_partial[labelled] = y_pool[labelled]
        for name, params in variants.items():
            autoencoder = DenoisingAutoencoder(16, noise="dropout", noise_level=0.3,
                                               random_state=seed, **epochs)
            classifier = AutoencoderClassifier(autoencoder, random_state=seed,
                                               **epochs, **params)
            accuracy[name][row, seed] = classifier.fit(X_pool, y_partial).score(X_test, y_test)

for name, scores in accuracy.items():
    print(f"{name:>28}: " + " ".join(f"{m:.3f}" for m in scores.mean(axis=1)))

# %%
# Mean test accuracy over the seeds; each seed draws other labelled rows and
# initialises the networks differently. The error bars are one standard
# deviation of the accuracy over the seeds.
fig, ax = plt.subplots(figsize=(6.5, 4.3))
for name, scores in accuracy.items():
    ax.errorbar(fractions, scores.mean(axis=1), yerr=scores.std(axis=1), marker="o",
                capsize=3, label=name)
ax.set_xscale("log")
ax.set_xticks(fractions, [f"{f:.0%}\n({round(f * len(y_pool))})" for f in fractions])
ax.set_xlabel("fraction (number) of labelled training digits")
ax.set_ylabel("test accuracy")
ax.set_title(f"Digits, {len(y_test)} test rows: mean over {len(seeds)} label draws\n"
             "(error bars: one standard deviation over the draws)", fontsize="medium")
ax.legend(loc="lower right")
fig.tight_layout()
fig.savefig(OUTPUT, dpi=100)
