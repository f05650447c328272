"""
Denoising digits with a denoising autoencoder
=============================================

A :class:`~skae.DenoisingAutoencoder` trained on noisy digits cleans noisy
digits it has never seen, where a plain autoencoder passes the noise through.
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

from skae import AutoencoderTransformer, DenoisingAutoencoder

# %%
# Digits scaled to [0, 1]; the held-out images get Gaussian noise.
X, _ = load_digits(return_X_y=True)
X_train, X_test = train_test_split(X / 16.0, test_size=0.25, random_state=0)
noise_level = 0.3
noisy = X_test + np.random.RandomState(0).normal(scale=noise_level, size=X_test.shape)

# %%
# The same network, trained on clean images and on noisy ones. Its code is
# wide enough (32 numbers for 64 pixels) to copy noise through. Both train
# for a fixed 100 epochs, so the warning that they could go on is silenced.
warnings.simplefilter("ignore", ConvergenceWarning)
params = dict(n_components=32, hidden_layer_sizes=(128,), max_iter=100, tol=0, random_state=0)
plain = AutoencoderTransformer(**params).fit(X_train)
denoiser = DenoisingAutoencoder(noise_level=noise_level, **params).fit(X_train)

rows = {"clean": X_test, "noisy": noisy}
for name, model in [("plain autoencoder", plain), ("denoising autoencoder", denoiser)]:
    rows[name] = model.inverse_transform(model.transform(noisy))
for name, images in rows.items():
    print(f"{name:>22}: mean squared error {np.mean((images - X_test) ** 2):.4f}")

# %%
# Ten held-out digits: clean, noisy, and reconstructed from the noisy ones.
n_digits = 10
fig, axes = plt.subplots(len(rows), n_digits, figsize=(n_digits, len(rows) * 1.15))
for row, (name, images) in zip(axes, rows.items()):
    for ax, image in zip(row, images):
        ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(name.replace(" ", "\n"), rotation=0, ha="right", va="center")
fig.tight_layout()
fig.savefig(sys.argv[1] if len(sys.argv) > 1 else "plot_denoising.png", dpi=100)
