"""
Autoencoder codes of the digits, mapped with t-SNE
==================================================

An autoencoder compresses the 64 pixels of each digit to 16 codes, and t-SNE
maps the codes to a 2-D scatter plot coloured by digit, in one pipeline.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.manifold import TSNE, trustworthiness
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from skae import AutoencoderTransformer

# Settings; the test suite runs this script with smaller ones.
MAX_ITER = int(os.environ.get("SKAE_EXAMPLE_MAX_ITER", 200))
N_SAMPLES = int(os.environ.get("SKAE_EXAMPLE_N_SAMPLES", 1797))
OUTPUT = os.environ.get("SKAE_EXAMPLE_OUTPUT", "plot_digits_tsne.png")

X, y = load_digits(return_X_y=True)
X, y = X[:N_SAMPLES], y[:N_SAMPLES]

pipeline = make_pipeline(
    MinMaxScaler(),
    AutoencoderTransformer(
        n_components=16,
        hidden_layer_sizes=(128, 64),
        max_iter=MAX_ITER,
        early_stopping=True,
        random_state=0,
    ),
    TSNE(n_components=2, perplexity=min(30.0, (N_SAMPLES - 1) / 3), random_state=0),
)
embedding = pipeline.fit_transform(X)
autoencoder = pipeline.named_steps["autoencodertransformer"]
codes = autoencoder.transform(pipeline.named_steps["minmaxscaler"].transform(X))

print(f"autoencoder: {autoencoder.n_iter_} epochs, best validation score "
      f"{autoencoder.best_validation_score_:.4f} (minus the mean squared error)")
print(f"trustworthiness of the 2-D map w.r.t. the codes: {trustworthiness(codes, embedding):.3f}")

fig, ax = plt.subplots(figsize=(7, 6))
scatter = ax.scatter(embedding[:, 0], embedding[:, 1], c=y, cmap="tab10", s=6)
ax.legend(*scatter.legend_elements(), title="digit", loc="best", fontsize="small")
ax.set_title("Digits: 64 pixels -> 16 autoencoder codes -> t-SNE")
ax.set_xticks([])
ax.set_yticks([])
fig.tight_layout()
fig.savefig(OUTPUT, dpi=120)
print(f"wrote {OUTPUT}")
