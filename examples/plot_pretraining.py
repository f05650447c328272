"""
Unsupervised pretraining with few labels
========================================

An :class:`~skae.AutoencoderClassifier` first trains an autoencoder on every
digit, labelled or not, then a classifier built on its encoder on the
labelled digits. This example compares it with the same network trained from
scratch on the labelled digits alone, with 1% to 50% of them labelled.

With the autoencoder used here (a 16-number code, trained for reconstruction
with its own defaults), pretraining does not pay: over three label draws the
pretrained classifier was 0.2 to 3.5 points *less* accurate than the one
trained from scratch at every fraction (0.449 against 0.481 with 13 labels,
0.970 against 0.972 with 628). The :doc:`user guide
</user_guide/pretraining>` gives the measurements of other autoencoders.
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skae import AutoencoderClassifier, DenoisingAutoencoder

# Settings; SKAE_EXAMPLE_QUICK=1 (the tests, quick docs builds) runs small ones:
# fewer fractions and seeds, and a callback ends every phase of every fit after
# 5 epochs (a stop asked for, so no ConvergenceWarning); the figure then means
# little.
QUICK = os.environ.get("SKAE_EXAMPLE_QUICK") == "1"
CALLBACKS = [lambda record: record.epoch >= 5] if QUICK else None
OUTPUT = os.environ.get("SKAE_EXAMPLE_OUTPUT", "plot_pretraining.png")

# %%
# Digits scaled to [0, 1]; 30% are held out for testing. Of the rest, a
# fraction keeps its label and the others are marked ``-1`` (unlabelled).
X, y = load_digits(return_X_y=True)
X_pool, X_test, y_pool, y_test = train_test_split(
    X / 16.0, y, test_size=0.3, random_state=0, stratify=y)
fractions = [0.02, 0.1] if QUICK else [0.01, 0.02, 0.05, 0.1, 0.5]
seeds = range(2 if QUICK else 3)

# %%
# With pretraining, a denoising autoencoder learns a 16-number code from all
# the rows (stopping early on 10% of them held out, ``early_stopping=True``),
# then a classifier made of its encoder and a softmax layer is trained on the
# labelled rows. ``freeze_encoder="auto"`` (the default) keeps the encoder
# fixed below 20 labelled rows a class, training only the softmax layer on the
# codes, and fine-tunes it too above. Without pretraining, the same network
# starts from random weights and trains on the labelled rows only. Every phase
# converges before its ``max_iter``.
variants = {
    "pretrained": dict(),
    "from scratch": dict(pretrain=False, freeze_encoder=False),
}
accuracy = {name: np.zeros((len(fractions), len(seeds))) for name in variants}
frozen = np.zeros(len(fractions), dtype=bool)
for seed in seeds:
    order = np.random.RandomState(seed).permutation(len(y_pool))
    for row, fraction in enumerate(fractions):
        labelled = order[:round(fraction * len(y_pool))]
        y_partial = np.full_like(y_pool, -1)
        y_partial[labelled] = y_pool[labelled]
        for name, params in variants.items():
            autoencoder = DenoisingAutoencoder(16, noise="dropout", noise_level=0.3,
                                               early_stopping=True, random_state=seed)
            classifier = AutoencoderClassifier(autoencoder, callbacks=CALLBACKS,
                                               random_state=seed, **params)
            accuracy[name][row, seed] = classifier.fit(X_pool, y_partial).score(X_test, y_test)
            if params.get("pretrain", True):
                frozen[row] = classifier.freeze_encoder_

for name, scores in accuracy.items():
    print(f"{name:>12}: " + " ".join(f"{m:.3f}" for m in scores.mean(axis=1)))
print("encoder frozen: " + " ".join(f"{fraction:.0%}: {is_frozen}"
                                    for fraction, is_frozen in zip(fractions, frozen)))

# %%
# Mean test accuracy over the seeds; each seed draws other labelled rows and
# initialises the networks differently. The error bars are one standard
# deviation of the accuracy over the seeds. The legend says where the
# pretrained encoder was frozen and where it was fine-tuned.
def where(mask):
    return ", ".join(f"{fraction:.0%}" for fraction in np.asarray(fractions)[mask]) or "none"


labels = {"pretrained": f"pretrained (encoder frozen at {where(frozen)}; "
                        f"fine-tuned at {where(~frozen)})",
          "from scratch": "from scratch (labelled rows only)"}
fig, ax = plt.subplots(figsize=(6.5, 4.3))
for name, scores in accuracy.items():
    ax.errorbar(fractions, scores.mean(axis=1), yerr=scores.std(axis=1), marker="o",
                capsize=3, label=labels[name])
ax.set_xscale("log")
ax.set_xticks(fractions, [f"{f:.0%}\n({round(f * len(y_pool))})" for f in fractions])
ax.set_xlabel("fraction (number) of labelled training digits")
ax.set_ylabel("test accuracy")
ax.set_title(f"Digits, {len(y_test)} test rows: mean over {len(seeds)} label draws\n"
             "(error bars: one standard deviation over the draws)", fontsize="medium")
ax.legend(loc="lower right", fontsize="small")
fig.tight_layout()
fig.savefig(OUTPUT, dpi=100)
