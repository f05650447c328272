"""
Unsupervised pretraining with few labels
========================================

An :class:`~skae.AutoencoderClassifier` pretrained on every digit, labelled or
not, beats the same network trained from scratch when only a few dozen digits
are labelled, and stops paying once labels are plentiful.
"""

import sys
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skae import AutoencoderClassifier, DenoisingAutoencoder

# %%
# Digits scaled to [0, 1]; 30% are held out for testing. Of the rest, a
# fraction keeps its label and the others are marked ``-1`` (unlabelled).
X, y = load_digits(return_X_y=True)
X_pool, X_test, y_pool, y_test = train_test_split(
    X / 16.0, y, test_size=0.3, random_state=0, stratify=y)
fractions = [0.01, 0.02, 0.05, 0.1, 0.5]
seeds = range(3)

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
                                               random_state=seed)
            classifier = AutoencoderClassifier(autoencoder, random_state=seed, **params)
            accuracy[name][row, seed] = classifier.fit(X_pool, y_partial).score(X_test, y_test)

for name, scores in accuracy.items():
    print(f"{name:>28}: " + " ".join(f"{m:.3f}" for m in scores.mean(axis=1)))

# %%
# Mean test accuracy over the seeds, with the spread between them.
fig, ax = plt.subplots(figsize=(6, 4))
for name, scores in accuracy.items():
    ax.errorbar(fractions, scores.mean(axis=1), yerr=scores.std(axis=1), marker="o",
                capsize=3, label=name)
ax.set_xscale("log")
ax.set_xticks(fractions, [f"{f:.0%}\n({round(f * len(y_pool))})" for f in fractions])
ax.set_xlabel("fraction (number) of labelled training digits")
ax.set_ylabel("test accuracy")
ax.set_title(f"Digits, mean over {len(seeds)} seeds")
ax.legend()
fig.tight_layout()
fig.savefig(sys.argv[1] if len(sys.argv) > 1 else "plot_pretraining.png", dpi=100)
