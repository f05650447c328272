"""Does unsupervised pretraining pay? Accuracy against the fraction of labels.

On scikit-learn's digits (scaled to [0, 1]), 30% of the rows are held out for
testing; of the other 1,257, a random fraction keeps its label and the rest
are marked ``-1``. Each :class:`skae.AutoencoderClassifier` pretrains its
autoencoder on all 1,257 rows and trains the classifier on the labelled ones;
the baseline ("scratch") is the same network trained from random weights on
the labelled rows only (``pretrain=False``). "frozen" trains only the output
layer on the pretrained encoder (the default); "fine-tuned" trains the whole
network from the pretrained weights at a tenth of the default learning rate.
Every cell is the mean test accuracy over seeds (each seed draws its own
labelled rows and initialisation); the last columns are the mean gains over
scratch, with their standard deviation over seeds.

Run ``python benchmarks/bench_pretraining.py [n_seeds]`` (about ten minutes
on one thread with the default five seeds).
"""

import sys
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skae import (
    AutoencoderClassifier,
    AutoencoderTransformer,
    ConvolutionalAutoencoder,
    DenoisingAutoencoder,
)

FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.5)
N_THREADS = 1

ENCODERS = {
    "dense AE (64-100-16)": lambda seed: AutoencoderTransformer(
        16, hidden_layer_sizes=(100,), random_state=seed),
    "denoising AE (dropout 0.3)": lambda seed: DenoisingAutoencoder(
        16, hidden_layer_sizes=(100,), noise="dropout", noise_level=0.3, random_state=seed),
    "conv AE (16, 32 channels)": lambda seed: ConvolutionalAutoencoder(
        16, batch_size=32, learning_rate_init=0.003, max_iter=40, tol=1e-4,
        early_stopping=False, random_state=seed),
}

VARIANTS = {
    "scratch": dict(pretrain=False, freeze_encoder=False),
    "frozen": dict(freeze_encoder=True),
    "fine-tuned": dict(freeze_encoder=False, learning_rate_init=0.001),
}


def main(n_seeds):
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_pool, X_test, y_pool, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y)
    print(f"digits: {len(y_pool)} training rows, {len(y_test)} test rows; "
          f"{n_seeds} seeds; torch threads: {N_THREADS}")
    for name, make_encoder in ENCODERS.items():
        start = time.perf_counter()
        accuracy = {variant: np.zeros((len(FRACTIONS), n_seeds)) for variant in VARIANTS}
        for seed in range(n_seeds):
            order = np.random.RandomState(seed).permutation(len(y_pool))
            for row, fraction in enumerate(FRACTIONS):
                y_partial = np.full_like(y_pool, -1)
                labelled = order[:max(10, round(fraction * len(y_pool)))]
                y_partial[labelled] = y_pool[labelled]
                for variant, params in VARIANTS.items():
                    classifier = AutoencoderClassifier(
                        make_encoder(seed), random_state=seed, n_threads=N_THREADS, **params)
                    classifier.fit(X_pool, y_partial)
                    accuracy[variant][row, seed] = classifier.score(X_test, y_test)
        print(f"\n{name} ({time.perf_counter() - start:.0f} s)")
        print(f"{'labels':>14} " + " ".join(f"{v:>11}" for v in VARIANTS)
              + "   gain of frozen, fine-tuned (sd over seeds)")
        for row, fraction in enumerate(FRACTIONS):
            n_labels = max(10, round(fraction * len(y_pool)))
            means = [accuracy[v][row].mean() for v in VARIANTS]
            gains = [accuracy[v][row] - accuracy["scratch"][row] for v in ("frozen", "fine-tuned")]
            print(f"{fraction:>6.0%} ({n_labels:>4}) " + " ".join(f"{m:>11.3f}" for m in means)
                  + "   " + ", ".join(f"{g.mean():+.3f} ({g.std():.3f})" for g in gains))

if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    torch.set_num_threads(N_THREADS)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
