"""
Generating digits with a variational autoencoder
================================================

A :class:`~skae.VariationalAutoencoder` with a 2-D latent space generates new
digits from its prior and lays the digits out by class without seeing labels.
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from skae import VariationalAutoencoder

# Settings; SKAE_EXAMPLE_QUICK=1 (the tests, quick docs builds) runs small ones:
# a callback ends every fit after 5 epochs (a stop asked for, so no
# ConvergenceWarning), and the figure then means little.
QUICK = os.environ.get("SKAE_EXAMPLE_QUICK") == "1"
OUTPUT = os.environ.get("SKAE_EXAMPLE_OUTPUT", "plot_vae.png")
CALLBACKS = [lambda record: record.epoch >= 5] if QUICK else None

# %%
# Pixels scaled to [0, 1] vary by far less than the unit variance of the
# VAE's Gaussian likelihood. ``beta``, which acts as that variance, is left
# at its default, ``"auto"``: the pixels' mean variance (``beta_``, about
# 0.07), so the KL term does not flatten every code onto the prior.
X, y = load_digits(return_X_y=True)
X = X / 16.0
vae = VariationalAutoencoder(n_components=2, hidden_layer_sizes=(128,), callbacks=CALLBACKS,
                             random_state=0)
vae.fit(X)
print(f"{vae.n_iter_} epochs; beta_ = {vae.beta_:.3f}; ELBO {vae.score(X):.2f} nats per digit; "
      f"last epoch: reconstruction {vae.reconstruction_curve_[-1]:.2f}, "
      f"KL {vae.kl_curve_[-1]:.2f}")

# %%
# 64 digits decoded from codes drawn from the prior N(0, I), laid out as
# 8 x 8 tiles with a white gap of two pixels between them (drawn as NaN).
samples = vae.sample(64, random_state=0).reshape(64, 8, 8)
gap = 2
mosaic = np.full((8 * (8 + gap) - gap, 8 * (8 + gap) - gap), np.nan)
for index, image in enumerate(samples):
    top, left_edge = (index // 8) * (8 + gap), (index % 8) * (8 + gap)
    mosaic[top:top + 8, left_edge:left_edge + 8] = image
codes = vae.transform(X)

# %%
# Left: the samples. Right: the posterior means of all digits, coloured by
# their class, which the model never saw.
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5.2))
gray = plt.get_cmap("gray_r").with_extremes(bad="white")
left.imshow(np.clip(mosaic, 0, 1), cmap=gray, vmin=0, vmax=1)
left.axis("off")
left.set_title("64 digits sampled from the prior N(0, I)")
scatter = right.scatter(codes[:, 0], codes[:, 1], c=y, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
fig.colorbar(scatter, ax=right, ticks=range(10), label="digit (not used in training)")
right.set_xlabel("latent dimension 1 (posterior mean)")
right.set_ylabel("latent dimension 2 (posterior mean)")
right.set_title(f"Posterior means of the {len(X)} digits")
fig.suptitle(f"VariationalAutoencoder(n_components=2), beta_={vae.beta_:.3f}: "
             f"ELBO {vae.score(X):.1f} nats per digit")
fig.tight_layout()
fig.savefig(OUTPUT, dpi=100)
