"""RecurrentAutoencoder on real sequences (UCR archive): held-out error, PCA and dense AE beside.

For a few univariate sets of the UCR time-series classification archive, as
the ``aeon`` package ships them inside its wheel (``.ts`` files read here
directly; nothing is downloaded, and aeon itself is not imported: ``pip install
--no-deps aeon`` is enough, or ``pip install "skae[bench]"``), each method is
fitted on the archive's TRAIN sequences and scored on its TEST sequences: the
mean squared reconstruction error per value of a held-out sequence (the
series are z-normalised by the archive). All methods get the same code size
``k``:

* ``PCA(k)``;
* ``AutoencoderTransformer(k)`` at its defaults (a dense network that reads a
  sequence as a row of unrelated features; it starts at PCA);
* ``RecurrentAutoencoder(k)`` at its defaults (GRU encoder and decoder, with
  the linear paths that start it at PCA).

Only ``n_components`` and ``random_state`` are set, so re-running this after a
change of defaults measures the new ones. Each autoencoder is fitted with
``SEEDS`` seeds; the table shows the median error and fit time over them,
the seeds interleaved (seed 0 of every method, then seed 1, ...). Every fit
runs on one thread (torch intra-op threads and NumPy's BLAS limited to 1).

Run ``python benchmarks/bench_recurrent.py`` (about 2 minutes on one idle
core); ``--quick`` is a smoke run of a few seconds (one short set, one seed,
few epochs) whose figures mean nothing.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import importlib.util
import pathlib
import platform
import time
import warnings

import numpy as np
import sklearn
import torch
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

import skae
from skae import AutoencoderTransformer, RecurrentAutoencoder

N_THREADS = 1
SETS = ("GunPoint", "ItalyPowerDemand", "ArrowHead")
SEEDS = (0, 1, 2)
N_COMPONENTS = 4


def ucr_folder():
    """The folder of UCR sets inside the installed ``aeon`` package (not imported)."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or spec.origin is None:
        raise SystemExit('bench_recurrent.py reads the UCR sets aeon ships: '
                         'pip install --no-deps aeon (or pip install "skae[bench]").')
    return pathlib.Path(spec.origin).parent / "datasets" / "data"


def load_ts(path):
    """Sequences of a ``.ts`` file of equal-length series: ``(n, n_timesteps, n_channels)``.

    The format: ``#`` comments, ``@`` headers up to ``@data``, then one case
    a line, its channels separated by ``:`` (values by ``,``), the class
    label last.
    """
    cases, in_data = [], False
    for line in pathlib.Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith("@data"):
            in_data = True
        elif in_data:
            channels = line.split(":")[:-1]
            cases.append([[float(value) for value in channel.split(",")]
                          for channel in channels])
    return np.asarray(cases).transpose(0, 2, 1)


def load_set(name):
    folder = ucr_folder() / name
    return (load_ts(folder / f"{name}_TRAIN.ts")[..., 0],
            load_ts(folder / f"{name}_TEST.ts")[..., 0])


def held_out_error(model, X):
    reconstruction = model.inverse_transform(model.transform(X)).reshape(X.shape)
    return float(((reconstruction - X) ** 2).mean())


def timed_fit(model, X):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        model.fit(X)
        seconds = time.perf_counter() - start
    return seconds, sum(issubclass(w.category, sklearn.exceptions.ConvergenceWarning)
                        for w in caught)


def run(quick):
    sets = SETS[1:2] if quick else SETS
    seeds = SEEDS[:1] if quick else SEEDS
    extra = {"max_iter": 3} if quick else {}
    print(f"skae {skae.__version__}, torch {torch.__version__}, scikit-learn "
          f"{sklearn.__version__}, Python {platform.python_version()}, "
          f"{platform.processor() or platform.machine()}, {N_THREADS} thread(s)")
    print(f"Held-out mean squared error per value (UCR TEST split; fit on TRAIN), "
          f"k={N_COMPONENTS} codes; medians over seeds {list(seeds)}.\n")
    header = (f"| {'set':<17} | {'train x length':>14} | {'PCA':>7} | {'dense AE':>8} | "
              f"{'recurrent AE':>12} | {'RAE min-max':>15} | {'RAE / PCA':>9} | {'RAE / AE':>8} | "
              f"{'AE fit s':>8} | {'RAE fit s':>9} | {'RAE epochs':>10} |")
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    ratios, warned = [], {"ae": 0, "rae": 0}
    for name in sets:
        X_train, X_test = load_set(name)
        if quick:
            X_train, X_test = X_train[:40], X_test[:40]
        pca_error = held_out_error(PCA(N_COMPONENTS).fit(X_train), X_test)
        runs = {"ae": [], "rae": []}
        for seed in seeds:  # interleaved: each seed of every method in turn
            for key, Model in (("ae", AutoencoderTransformer), ("rae", RecurrentAutoencoder)):
                model = Model(N_COMPONENTS, random_state=seed, **extra)
                seconds, n_warnings = timed_fit(model, X_train)
                runs[key].append((held_out_error(model, X_test), seconds, model.n_iter_))
                warned[key] += n_warnings
        ae, rae = (np.median(np.asarray(runs[key]), axis=0) for key in ("ae", "rae"))
        spread = f"{min(r[0] for r in runs['rae']):.4f}-{max(r[0] for r in runs['rae']):.4f}"
        ratios.append((rae[0] / pca_error, rae[0] / ae[0]))
        print(f"| {name:<17} | {f'{X_train.shape[0]} x {X_train.shape[1]}':>14} | "
              f"{pca_error:>7.4f} | {ae[0]:>8.4f} | {rae[0]:>12.4f} | {spread:>15} | "
              f"{rae[0] / pca_error:>9.3f} | {rae[0] / ae[0]:>8.3f} | {ae[1]:>8.1f} | "
              f"{rae[1]:>9.1f} | {rae[2]:>10.0f} |", flush=True)
    worst_pca, worst_ae = (max(r[i] for r in ratios) for i in (0, 1))
    print(f"\nGoal: recurrent AE at most PCA's error (worst ratio {worst_pca:.3f}) and close to "
          f"the dense AE's (worst ratio {worst_ae:.3f}).")
    print(f"Fits that ended with a ConvergenceWarning: dense AE {warned['ae']}, recurrent AE "
          f"{warned['rae']} (of {len(sets) * len(seeds)} each).")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: one set, one seed, 3 epochs (figures mean nothing)")
    args = parser.parse_args()
    torch.set_num_threads(N_THREADS)
    with threadpool_limits(N_THREADS):
        run(args.quick)


if __name__ == "__main__":
    main()
