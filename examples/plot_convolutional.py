"""
Reconstructing digits with a convolutional autoencoder
======================================================

A :class:`~skae.ConvolutionalAutoencoder` reads each row of the digits as an
8x8 image and reconstructs held-out digits from 8 numbers better than PCA.
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split

from skae import ConvolutionalAutoencoder

# Settings; SKAE_EXAMPLE_QUICK=1 (the tests, quick docs builds) runs small ones:
# a callback ends every fit after 3 epochs (a stop asked for, so no
# ConvergenceWarning), and the figure then means little.
QUICK = os.environ.get("SKAE_EXAMPLE_QUICK") == "1"
OUTPUT = os.environ.get("SKAE_EXAMPLE_OUTPUT", "plot_convolutional.png")
CALLBACKS = [lambda record: record.epoch >= 3] if QUICK else None

# %%
# Digits scaled to [0, 1]; a row of 64 pixels is read as one 8x8 image
# (``image_shape=None`` finds the square; ``(1, 8, 8)`` says it explicitly).
X, _ = load_digits(return_X_y=True)
X_train, X_test = train_test_split(X / 16.0, test_size=0.25, random_state=0)

# %%
# Both compress each digit to 8 numbers; the autoencoder keeps its defaults
# (two convolutions of 16 and 32 channels, at most 200 epochs) and stops early
# on 10% held-out digits (``early_stopping=True``): after about 140 epochs,
# before ``max_iter``.
n_components = 8
pca = PCA(n_components).fit(X_train)
cae = ConvolutionalAutoencoder(n_components, early_stopping=True, callbacks=CALLBACKS,
                               random_state=0).fit(X_train)
rows = {
    "original": X_test,
    "PCA": pca.inverse_transform(pca.transform(X_test)),
    "conv AE": cae.inverse_transform(cae.transform(X_test)),
}
for name, images in list(rows.items())[1:]:
    print(f"{name:>8}: mean squared error {np.mean((images - X_test) ** 2):.4f}")

# %%
# Ten held-out digits and their reconstructions from 8 numbers; each row
# gives its mean squared error over all held-out digits.
n_digits = 10
fig, axes = plt.subplots(len(rows), n_digits, figsize=(n_digits, len(rows) * 1.15))
for row, (name, images) in zip(axes, rows.items()):
    error = np.mean((images - X_test) ** 2)
    for ax, image in zip(row, images):
        ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    label = name if name == "original" else f"{name}\nMSE {error:.4f}"
    row[0].set_ylabel(label, rotation=0, ha="right", va="center")
fig.suptitle(f"{len(X_test)} held-out digits compressed to {n_components} numbers: "
             "convolutional autoencoder vs PCA")
fig.tight_layout()
fig.savefig(OUTPUT, dpi=100)
