"""
Generating digits with a variational autoencoder
================================================

A :class:`~skae.VariationalAutoencoder` with a 2-D latent space generates new
digits from its prior and lays the digits out by class without seeing labels.
"""

import sys
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from skae import VariationalAutoencoder

# %%
# Pixels scaled to [0, 1] vary by far less than the unit variance of the
# VAE's Gaussian likelihood, so ``beta`` (which acts as that variance) is
# lowered to 0.05. The model trains for a fixed 150 epochs.
X, y = load_digits(return_X_y=True)
X = X / 16.0
warnings.simplefilter("ignore", ConvergenceWarning)
vae = VariationalAutoencoder(n_components=2, beta=0.05, hidden_layer_sizes=(128,),
                             max_iter=150, learning_rate_init=0.003, random_state=0)
vae.fit(X)
print(f"ELBO {vae.score(X):.2f} nats per digit; last epoch: reconstruction "
      f"{vae.reconstruction_curve_[-1]:.2f}, KL {vae.kl_curve_[-1]:.2f}")

# %%
# Left: 64 digits decoded from codes drawn from the prior N(0, I).
# Right: the posterior means of all digits, coloured by their (unused) class.
samples = vae.sample(64, random_state=0)
mosaic = samples.reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(64, 64)
codes = vae.transform(X)

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5.2))
left.imshow(mosaic, cmap="gray_r", vmin=0, vmax=1)
left.set_xticks(np.arange(8, 64, 8) - 0.5, labels=[])
left.set_yticks(np.arange(8, 64, 8) - 0.5, labels=[])
left.tick_params(length=0)
left.grid(color="white", linewidth=2)
left.set_title("Digits sampled from the prior")
scatter = right.scatter(codes[:, 0], codes[:, 1], c=y, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
fig.colorbar(scatter, ax=right, ticks=range(10), label="digit")
right.set_xlabel("latent dimension 1")
right.set_ylabel("latent dimension 2")
right.set_title("Posterior means of the digits")
fig.tight_layout()
fig.savefig(sys.argv[1] if len(sys.argv) > 1 else "plot_vae.png", dpi=100)
