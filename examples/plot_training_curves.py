"""
Loss and validation curves
==========================

Every skae estimator records its training: ``loss_curve_`` (mean training
loss per epoch) and, with ``early_stopping=True``, ``validation_scores_`` (the
score of held-out rows per epoch), whose best epoch's weights are the ones
kept. A :class:`~skae.VariationalAutoencoder` also records the two parts of
its loss. This example plots them for a small and a large autoencoder trained
on 150 rows: the large one drives its training loss towards zero while its
validation error levels off and then rises.
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from skae import AutoencoderTransformer, VariationalAutoencoder

# Settings; SKAE_EXAMPLE_QUICK=1 (the tests, quick docs builds) runs small ones:
# a callback ends every fit after 15 epochs (a stop asked for, so no
# ConvergenceWarning), and the figure then means little.
QUICK = os.environ.get("SKAE_EXAMPLE_QUICK") == "1"
OUTPUT = os.environ.get("SKAE_EXAMPLE_OUTPUT", "plot_training_curves.png")
CALLBACKS = [lambda record: record.epoch >= 15] if QUICK else None

# %%
# 200 digits scaled to [0, 1]; ``early_stopping=True`` holds out 25% of them
# and scores them (minus their mean squared error) after every epoch. With
# ``tol=0`` any improvement counts, and a patience of 100 epochs lets the
# curves run on past the best epoch, to show what early stopping avoids: the
# fits end there (after 460-700 epochs), not at ``max_iter=1000``.
#
# Both train from random weights (``init="random"``) so that the curves show
# training from scratch, and early stopping keeps an epoch. With the default
# PCA start, the large network's 32 principal components already reconstruct
# the held-out digits with error 0.0027, and every epoch of its training
# scored 15% or more worse than that: early stopping kept the start, not an
# epoch, with a ConvergenceWarning. That start is the better model here (on
# few rows a PCA start is hard to beat); this example is about the curves.
X, _ = load_digits(return_X_y=True)
X = X / 16.0
X_small = X[:200]
models = {
    "small: 64 -> 32 -> 8": AutoencoderTransformer(8, hidden_layer_sizes=(32,)),
    "large: 64 -> 512 -> 256 -> 32": AutoencoderTransformer(32, hidden_layer_sizes=(512, 256)),
}
for name, model in models.items():
    model.set_params(early_stopping=True, validation_fraction=0.25, tol=0, n_iter_no_change=100,
                     batch_size=32, max_iter=1000, alpha=0, init="random", callbacks=CALLBACKS,
                     random_state=0).fit(X_small)
    best_epoch = int(np.argmax(model.validation_scores_)) + 1
    print(f"{name}: {model.n_iter_} epochs, best validation error "
          f"{-model.best_validation_score_:.4f} at epoch {best_epoch} (weights kept)")

# %%
# A variational autoencoder's loss is a reconstruction term plus ``beta``
# times a KL term; each is recorded (``reconstruction_curve_``,
# ``kl_curve_``) beside their sum; it converges after about 50 epochs, before
# ``max_iter=100``.
vae = VariationalAutoencoder(2, beta=0.05, hidden_layer_sizes=(128,), learning_rate_init=0.003,
                             max_iter=100, callbacks=CALLBACKS, random_state=0).fit(X)
print(f"variational autoencoder: {vae.n_iter_} epochs")

# %%
# Left: training loss and validation error of the two autoencoders, with
# the epoch whose weights early stopping keeps. Right: the VAE's loss parts.
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
for (name, model), color in zip(models.items(), ["C0", "C3"]):
    epochs = np.arange(1, model.n_iter_ + 1)
    left.plot(epochs, model.loss_curve_, color=color, linestyle="--",
              label=f"{name}, training loss")
    left.plot(epochs, -np.asarray(model.validation_scores_), color=color,
              label=f"{name}, validation error")
    best_epoch = int(np.argmax(model.validation_scores_)) + 1
    left.scatter([best_epoch], [-model.best_validation_score_], color=color, zorder=3,
                 edgecolor="black")
left.scatter([], [], color="white", edgecolor="black", label="best epoch (weights kept)")
left.set_yscale("log")
left.set_xlabel("epoch")
left.set_ylabel("mean squared error")
left.set_title("Autoencoders on 150 training + 50 validation digits", fontsize="medium")
left.legend(fontsize="small")

epochs = np.arange(1, vae.n_iter_ + 1)
# The Gaussian likelihood's constant, (d / 2) log(2 pi), is 58.8 nats for 64
# pixels; it is taken off to show how the reconstruction term moves.
constant = X.shape[1] / 2 * np.log(2 * np.pi)
right.plot(epochs, np.asarray(vae.reconstruction_curve_) - constant, color="C0",
           label="reconstruction: 0.5 x summed squared error")
right.set_xlabel("epoch")
right.set_ylabel("reconstruction term minus its constant (nats)", color="C0")
kl_axis = right.twinx()
kl_axis.plot(epochs, vae.kl_curve_, color="C1", label="KL(q(z|x) || N(0, I))")
kl_axis.set_ylabel(f"KL term (nats; weighted by beta={vae.beta} in the loss)", color="C1")
right.set_title("VariationalAutoencoder(2) on all digits: the two loss parts",
                fontsize="medium")
lines = right.get_lines() + kl_axis.get_lines()
right.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize="small")
fig.tight_layout()
fig.savefig(OUTPUT, dpi=100)
