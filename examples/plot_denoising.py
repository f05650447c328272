"""
Denoising digits with a denoising autoencoder
=============================================

A :class:`~skae.DenoisingAutoencoder` trained on noisy digits cleans noisy
digits it has never seen, where a plain autoencoder of the same shape passes
much of the noise through.
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skae import AutoencoderTransformer, DenoisingAutoencoder

# Settings; SKAE_EXAMPLE_QUICK=1 (the tests, quick docs builds) runs small ones:
# a callback ends every fit after 5 epochs (a stop asked for, so no
# ConvergenceWarning), and the figure then means little.
QUICK = os.environ.get("SKAE_EXAMPLE_QUICK") == "1"
OUTPUT = os.environ.get("SKAE_EXAMPLE_OUTPUT", "plot_denoising.png")
CALLBACKS = [lambda record: record.epoch >= 5] if QUICK else None

# %%
# Digits scaled to [0, 1]; the held-out images get Gaussian noise of
# standard deviation 0.3 (pixels are not clipped back into [0, 1]).
X, _ = load_digits(return_X_y=True)
X_train, X_test = train_test_split(X / 16.0, test_size=0.25, random_state=0)
noise_level = 0.3
noisy = X_test + np.random.RandomState(0).normal(scale=noise_level, size=X_test.shape)

# %%
# Both autoencoders keep their defaults (a PCA start, at most 200 epochs)
# except for a code wide enough to copy noise through, 32 numbers for 64
# pixels, and early stopping on 10% held-out digits (``early_stopping=True``),
# which ends the fits after about 20 (plain) and 80 (denoising) epochs,
# before ``max_iter``. The denoising one is trained with noise of the level it
# will meet; its early stopping judges the held-out digits by that denoising
# error.
#
# The plain one also learns ten times slower (``learning_rate_init=3e-4``):
# its PCA start, 32 principal components, already reconstructs clean digits
# almost perfectly, and at the default rate every epoch scored 11-26% worse
# than that start on the held-out digits (early stopping kept the start, with
# a ConvergenceWarning that says to lower the rate). At 3e-4 its epochs stay
# within 0.3% of the start, and early stopping keeps the start: the plain
# autoencoder here is PCA, which passes noise through.
params = dict(n_components=32, early_stopping=True, callbacks=CALLBACKS, random_state=0)
plain = AutoencoderTransformer(learning_rate_init=3e-4, **params).fit(X_train)
denoiser = DenoisingAutoencoder(noise="gaussian", noise_level=noise_level, **params).fit(X_train)

rows = {"clean": X_test, "noisy input": noisy}
for name, model in [("plain autoencoder", plain), ("denoising autoencoder", denoiser)]:
    rows[name] = model.inverse_transform(model.transform(noisy))
error = {name: np.mean((images - X_test) ** 2) for name, images in rows.items()}
for name, value in list(error.items())[1:]:
    print(f"{name:>22}: mean squared error to the clean digits {value:.4f}")

# %%
# Ten held-out digits: clean, noisy, and reconstructed from the noisy ones;
# each row says its mean squared error to the clean images (over all held-out
# digits, not only the ten shown).
n_digits = 10
fig, axes = plt.subplots(len(rows), n_digits, figsize=(n_digits, len(rows) * 1.2 + 0.6))
for row, (name, images) in zip(axes, rows.items()):
    for ax, image in zip(row, images):
        ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    label = name.replace(" ", "\n", 1)
    if name != "clean":
        label += f"\nMSE {error[name]:.4f}"
    row[0].set_ylabel(label, rotation=0, ha="right", va="center")
fig.suptitle(f"Held-out digits with Gaussian noise (standard deviation {noise_level}), "
             "reconstructed from the noisy ones\n"
             f"MSE: mean squared error to the clean digits, over all {len(X_test)} held-out images")
fig.tight_layout()
fig.savefig(OUTPUT, dpi=100)
