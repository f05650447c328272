"""
Morphing digits through a variational autoencoder's codes
=========================================================

:meth:`~skae.VariationalAutoencoder.interpolate` decodes evenly spaced codes
between two digits' posterior means: the path runs through digits the model
has learned, where a cross-fade of the pixels shows one digit over the other.
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from skae import VariationalAutoencoder

# Settings; SKAE_EXAMPLE_QUICK=1 (the tests, quick docs builds) runs small ones:
# a callback ends the fit after 5 epochs (a stop asked for, so no
# ConvergenceWarning), and the figure then means little.
QUICK = os.environ.get("SKAE_EXAMPLE_QUICK") == "1"
OUTPUT = os.environ.get("SKAE_EXAMPLE_OUTPUT", "plot_interpolation.png")
CALLBACKS = [lambda record: record.epoch >= 5] if QUICK else None
N_STEPS = 8

# %%
# A VAE with an 8-dimensional code on the digits scaled to [0, 1], with a
# Bernoulli likelihood (``loss="log_loss"``), whose decoded digits are sharper
# than the Gaussian's (see :doc:`/user_guide/variational`).
X, y = load_digits(return_X_y=True)
X = X / 16.0
vae = VariationalAutoencoder(n_components=8, hidden_layer_sizes=(128,), loss="log_loss",
                             callbacks=CALLBACKS, random_state=0)
vae.fit(X)
print(f"{vae.n_iter_} epochs; ELBO {vae.score(X):.2f} nats per digit")

# %%
# Five pairs of digits, the first of each class in the data. ``interpolate``
# returns, for each pair, ``N_STEPS`` rows decoded from codes evenly spaced
# between the two posterior means; its first and last steps are the two
# digits' reconstructions. The cross-fade blends the pixels with the same
# weights.
pairs = [(0, 6), (1, 7), (3, 8), (4, 9), (2, 5)]
first = {digit: np.flatnonzero(y == digit)[0] for digit in range(10)}
X_from = X[[first[a] for a, _ in pairs]]
X_to = X[[first[b] for _, b in pairs]]
paths = vae.interpolate(X_from, X_to, n_steps=N_STEPS)
t = np.linspace(0, 1, N_STEPS)[None, :, None]
blends = (1 - t) * X_from[:, None, :] + t * X_to[:, None, :]

# %%
# Each pair takes two rows between the two original digits: the path through
# the codes (top) and the cross-fade (bottom); tiles are separated by a white
# gap (drawn as NaN). The path's ends are reconstructions, blurrier than the
# originals beside them. Between them the path redraws the strokes, and may
# pass through shapes of other digits the model has learned (from the 2 to the
# 5 through an 8-like and a 9-like digit); the cross-fade keeps both digits'
# strokes at part ink, one over the other, until the end.
gap = 2
n_rows, n_columns = 2 * len(pairs), N_STEPS + 2
mosaic = np.full((n_rows * (8 + gap) - gap, n_columns * (8 + gap) - gap), np.nan)


def put(row, column, image):
    top, left = row * (8 + gap), column * (8 + gap)
    mosaic[top:top + 8, left:left + 8] = image.reshape(8, 8)


for index in range(len(pairs)):
    for offset, frames in enumerate((paths[index], blends[index])):
        row = 2 * index + offset
        put(row, 0, X_from[index])
        for step, frame in enumerate(frames):
            put(row, 1 + step, frame)
        put(row, N_STEPS + 1, X_to[index])

fig, ax = plt.subplots(figsize=(7.5, 8))
gray = plt.get_cmap("gray_r").with_extremes(bad="white")
ax.imshow(np.clip(mosaic, 0, 1), cmap=gray, vmin=0, vmax=1)
ax.set_xticks([(8 + gap) * c + 3.5 for c in (0, 1, N_STEPS, N_STEPS + 1)],
              ["from", "step 1", f"step {N_STEPS}", "to"])
ax.set_yticks([(8 + gap) * r + 3.5 for r in range(n_rows)],
              ["codes", "pixels"] * len(pairs))
ax.tick_params(length=0)
for side in ax.spines.values():
    side.set_visible(False)
ax.set_title(f"VariationalAutoencoder(n_components=8, loss='log_loss').interpolate\n"
             f"(n_steps={N_STEPS}): through the codes, and a cross-fade of the pixels")
fig.tight_layout()
fig.savefig(OUTPUT, dpi=100)
