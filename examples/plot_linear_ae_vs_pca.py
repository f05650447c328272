"""
A linear autoencoder finds the PCA subspace
===========================================

An :class:`~skae.AutoencoderTransformer` with ``activation="identity"`` and no
hidden layer, trained on the squared error, spans the same subspace as
:class:`~sklearn.decomposition.PCA` (Baldi and Hornik, 1989). This example
measures how close it gets (the principal angles between the two subspaces)
and how a nonlinear autoencoder compares on held-out reconstruction error.
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from scipy.linalg import subspace_angles
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skae import AutoencoderTransformer

# Settings; SKAE_EXAMPLE_QUICK=1 (the tests, quick docs builds) runs small ones:
# a callback ends every fit after 20 epochs (a stop asked for, so no
# ConvergenceWarning), and the figure then means little.
QUICK = os.environ.get("SKAE_EXAMPLE_QUICK") == "1"
OUTPUT = os.environ.get("SKAE_EXAMPLE_OUTPUT", "plot_linear_ae_vs_pca.png")
CALLBACKS = [lambda record: record.epoch >= 20] if QUICK else None
SIZES = [2, 6] if QUICK else [2, 4, 6, 8, 10]

# %%
# The 30 features of the breast cancer table, standardised (the scaler is
# fitted on the training rows only); a quarter of the rows is held out.
X, _ = load_breast_cancer(return_X_y=True)
X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)


def held_out_error(model):
    return np.mean((model.inverse_transform(model.transform(X_test)) - X_test) ** 2)


# %%
# For each code size k: PCA, a linear autoencoder and a nonlinear one. The
# linear decoder is ``x = W z + b``, so decoding the unit codes and
# subtracting the decoded zero code gives the columns of ``W``, whose span is
# compared with PCA's components (``scipy.linalg.subspace_angles``). Both
# autoencoders hold out 10% of the training rows to stop early
# (``early_stopping=True``); each fit converges within 80 epochs, well before
# ``max_iter=1000``.
angles, errors = {}, {"PCA": [], "linear autoencoder": [], "nonlinear autoencoder (64 ReLU)": []}
eigenvalue_ratio = {}
for k in SIZES:
    pca = PCA(k).fit(X_train)
    linear = AutoencoderTransformer(k, hidden_layer_sizes=(), activation="identity", alpha=0,
                                    learning_rate_init=0.003, max_iter=1000, tol=1e-6,
                                    n_iter_no_change=20, early_stopping=True,
                                    callbacks=CALLBACKS, random_state=0).fit(X_train)
    nonlinear = AutoencoderTransformer(k, hidden_layer_sizes=(64,), learning_rate_init=0.003,
                                       max_iter=1000, early_stopping=True,
                                       callbacks=CALLBACKS, random_state=0).fit(X_train)
    W = linear.inverse_transform(np.eye(k)) - linear.inverse_transform(np.zeros((1, k)))
    angles[k] = np.degrees(subspace_angles(W.T, pca.components_.T))
    variances = PCA(k + 1).fit(X_train).explained_variance_
    eigenvalue_ratio[k] = variances[k - 1] / variances[k]
    for name, model in zip(errors, [pca, linear, nonlinear]):
        errors[name].append(held_out_error(model))
    print(f"k={k:2d}: largest principal angle {angles[k].max():5.1f} deg "
          f"(variance ratio of components k and k+1: {eigenvalue_ratio[k]:.2f}); "
          + ", ".join(f"{name} {values[-1]:.4f}" for name, values in errors.items()))

# %%
# Left: every principal angle between the two subspaces, per code size. An
# angle stays large only where PCA's k-th and (k+1)-th variances are nearly
# equal: there the k-th direction is barely determined, for PCA as for the
# autoencoder, and the reconstruction error hardly depends on it. Right: the
# held-out mean squared error of the three models.
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
for k in SIZES:
    left.scatter(np.full(k, k), angles[k], color="C0", s=18)
    left.annotate(f"{eigenvalue_ratio[k]:.2f}", (k, angles[k].max()), xytext=(6, 0),
                  textcoords="offset points", va="center", fontsize="small", color="C3")
left.set_xticks(SIZES)
left.set_xlabel("code size k")
left.set_ylabel("principal angle to the PCA subspace (degrees)")
left.set_title("Linear autoencoder vs PCA: principal angles\n"
               "(red: variance ratio of PCA components k and k+1)", fontsize="medium")
for (name, values), marker in zip(errors.items(), "osd"):
    right.plot(SIZES, values, marker=marker, label=name)
right.set_xticks(SIZES)
right.set_xlabel("code size k")
right.set_ylabel("held-out mean squared error (standardised)")
right.set_title("Reconstruction error on held-out rows", fontsize="medium")
right.legend()
fig.suptitle("Breast cancer table, 30 standardised features")
fig.tight_layout()
fig.savefig(OUTPUT, dpi=100)
