"""
Sparse autoencoder features of the digits
=========================================

A :class:`~skae.SparseAutoencoder` with 100 sigmoid units learns features of
the digits, shown as the units' input weights; as features for a logistic
regression they are compared with the raw pixels and scikit-learn's ``BernoulliRBM``.
"""

import os

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import BernoulliRBM
from sklearn.pipeline import make_pipeline

from skae import SparseAutoencoder

# Settings; SKAE_EXAMPLE_QUICK=1 (the tests, quick docs builds) runs small ones:
# a callback ends the fit after 5 epochs (a stop asked for, so no
# ConvergenceWarning), and the figure then means little.
QUICK = os.environ.get("SKAE_EXAMPLE_QUICK") == "1"
OUTPUT = os.environ.get("SKAE_EXAMPLE_OUTPUT", "plot_sparse_features.png")
CALLBACKS = [lambda record: record.epoch >= 5] if QUICK else None

# %%
# The digits scaled to [0, 1], three quarters to train on.
X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25,
                                                    random_state=0, stratify=y)

# %%
# 100 units for 64 pixels: an over-complete code, kept from copying its
# input by the sparsity penalty, which pushes every unit's mean activation
# towards ``sparsity_target=0.05``. The defaults otherwise (the fit stops
# by itself after about 280 epochs).
sparse = SparseAutoencoder(100, random_state=0, callbacks=CALLBACKS)
features = sparse.fit(X_train).transform(X_test)
print(f"mean activation on held-out digits: {features.mean():.3f} "
      f"(target {sparse.sparsity_target})")

# %%
# Each unit's input weights (``components_``) as an 8x8 image. They look
# noisy: with the squared error every unit stays near its target activation
# and encodes a digit in small variations (see the user guide's "What goes
# wrong"), and the pixels that are blank in nearly every digit (the left and
# right borders) give their weights no gradient, so these keep their random
# start.
fig, axes = plt.subplots(10, 10, figsize=(6, 6))
for axis, weights in zip(axes.ravel(), sparse.components_):
    axis.imshow(weights.reshape(8, 8), cmap="gray_r")
    axis.set_axis_off()
fig.suptitle("Input weights of the 100 sparse units")

# %%
# The same logistic regression on three representations, its ``C`` chosen
# by cross-validation on the training digits for each (as scikit-learn's
# gallery chose ``C`` for its RBM pipeline); the RBM has that gallery's
# settings.
classifier = GridSearchCV(LogisticRegression(max_iter=3000), {"C": [1, 10, 100, 1000]},
                          cv=3)
rbm = BernoulliRBM(n_components=100, learning_rate=0.06, n_iter=2 if QUICK else 20,
                   random_state=0)
pipelines = {
    "raw pixels": classifier,
    "BernoulliRBM(100)": make_pipeline(rbm, classifier),
    "SparseAutoencoder(100)": make_pipeline(sparse, classifier),
}
for name, pipeline in pipelines.items():
    accuracy = pipeline.fit(X_train, y_train).score(X_test, y_test)
    print(f"{name:24s} held-out accuracy {accuracy:.3f}")

fig.savefig(OUTPUT)
