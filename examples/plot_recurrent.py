"""
Sequences and their anomalies with a recurrent autoencoder
==========================================================

A :class:`~skae.RecurrentAutoencoder` compresses waves of varying frequency
and phase to 2 numbers with less error than PCA, and its per-sequence error
ranks the held-out sequences that hold a spike or a phase flip first.
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

from skae import RecurrentAutoencoder

# Settings; SKAE_EXAMPLE_QUICK=1 (the tests, quick docs builds) runs small ones:
# a callback ends every fit after 3 epochs (a stop asked for, so no
# ConvergenceWarning), and the figure then means little.
QUICK = os.environ.get("SKAE_EXAMPLE_QUICK") == "1"
OUTPUT = os.environ.get("SKAE_EXAMPLE_OUTPUT", "plot_recurrent.png")
CALLBACKS = [lambda record: record.epoch >= 3] if QUICK else None

# %%
# Noisy waves of 30 time steps: each has its own frequency (1 to 2 periods)
# and phase, so they lie on a curved 2-D surface that PCA's 2 components can
# only approximate by a plane.
rng = np.random.RandomState(0)
t = np.linspace(0, 2 * np.pi, 30)


def waves(n):
    frequency, phase = rng.uniform(1, 2, (n, 1)), rng.uniform(0, 2 * np.pi, (n, 1))
    return np.sin(frequency * t + phase) + rng.normal(scale=0.05, size=(n, t.size))


X_train, X_test = waves(150), waves(100)

# %%
# Ten held-out sequences get an anomaly: five a spike, five the second half
# upside down (a phase flip).
anomalous = np.zeros(len(X_test), dtype=bool)
anomalous[:10] = True
X_test[:5, 15] += 1.5
X_test[5:10, 15:] *= -1

# %%
# Both compress each sequence to 2 numbers. The recurrent autoencoder keeps its
# defaults (a GRU of 64 units in the encoder and in the decoder, started at
# PCA) and stops early on 10% held-out training sequences.
pca = PCA(2).fit(X_train)
rae = RecurrentAutoencoder(2, callbacks=CALLBACKS, random_state=0).fit(X_train)
normal = X_test[~anomalous]
reconstructions = {
    "PCA": pca.inverse_transform(pca.transform(normal)),
    "recurrent AE": rae.inverse_transform(rae.transform(normal)),
}
for name, reconstruction in reconstructions.items():
    print(f"{name:>12}: mean squared error on normal held-out sequences "
          f"{np.mean((reconstruction - normal) ** 2):.4f}")
scores = rae.score_samples(X_test)
print(f"ROC AUC of -score_samples for the anomalies: {roc_auc_score(anomalous, -scores):.3f}")

# %%
# Left: three normal held-out sequences and their reconstructions. Right: the
# reconstruction error of every held-out sequence (``-score_samples``); the
# anomalous ones stand out.
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
for index, colour in zip(range(3), ("C0", "C1", "C2")):
    left.plot(t, normal[index], color=colour, lw=2, alpha=0.4,
              label="sequence" if index == 0 else None)
    left.plot(t, reconstructions["PCA"][index], color=colour, ls=":",
              label="PCA" if index == 0 else None)
    left.plot(t, reconstructions["recurrent AE"][index], color=colour, ls="--",
              label="recurrent AE" if index == 0 else None)
left.set_title("Held-out sequences, reconstructed from 2 numbers")
left.set_xlabel("time")
left.legend(loc="lower left", fontsize="small")
order = np.argsort(scores)
right.bar(np.arange(len(scores)), -scores[order],
          color=np.where(anomalous[order], "C3", "C7"))
right.set_yscale("log")
right.set_title("Reconstruction error per sequence (red: anomalies)")
right.set_xlabel("held-out sequences, worst first")
fig.tight_layout()
fig.savefig(OUTPUT)
