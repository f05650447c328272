"""Correctness checks that need a CUDA GPU: run wherever one is present.

    python benchmarks/check_gpu.py            # every check, about a minute
    python benchmarks/check_gpu.py pickle     # only the named checks

Each check prints PASS or FAIL with its figures; the exit status is the number
of failures (0 when all pass). Without CUDA it says so and exits 0, so CI on
CPU-only machines can call it harmlessly. ``--dry-run`` runs the same code
with the CPU standing in for the GPU (to check the script itself).

Checks:
- pickle: every estimator fitted on the GPU pickles, and loads in a fresh
  process that sees no GPU (``CUDA_VISIBLE_DEVICES=""``) with a warning,
  giving the same outputs as on the GPU to float tolerance.
- agree: a fit on the GPU and one on the CPU from the same seed give codes
  that agree closely (they differ by kernel rounding only).
"""

import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import warnings

import numpy as np
import torch

import skae


def _data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(2000, 64)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    y[::2] = -1
    return X, y


DEVICE = "cuda"


def _estimators():
    fast = dict(max_iter=5, random_state=0, device=DEVICE)
    return [
        skae.AutoencoderTransformer(8, **fast),
        skae.DenoisingAutoencoder(8, **fast),
        skae.VariationalAutoencoder(8, **fast),
        skae.ConvolutionalAutoencoder(8, channels=(8, 16), **fast),
        skae.AutoencoderClassifier(skae.AutoencoderTransformer(8, **fast), **fast),
    ]


def _output(model, X):
    return model.predict_proba(X) if hasattr(model, "predict_proba") else model.transform(X)


def check_pickle():
    X, y = _data()
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        for model in _estimators():
            name = type(model).__name__
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(X, y) if name == "AutoencoderClassifier" else model.fit(X)
            assert model.device_.type == DEVICE, model.device_
            path = os.path.join(folder, f"{name}.pkl")
            np.save(os.path.join(folder, "X.npy"), X)
            np.save(os.path.join(folder, f"{name}.npy"), _output(model, X))
            with open(path, "wb") as file:
                pickle.dump(model, file)
            code = textwrap.dedent(f"""
                import pickle, warnings, numpy as np, torch
                assert not torch.cuda.is_available()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    model = pickle.load(open({path!r}, "rb"))
                fell_back = any("not available here" in str(w.message) for w in caught)
                assert fell_back == {DEVICE == "cuda"}, caught
                assert model.device_.type == "cpu"
                X = np.load({os.path.join(folder, "X.npy")!r})
                out = (model.predict_proba(X) if hasattr(model, "predict_proba")
                       else model.transform(X))
                expected = np.load({os.path.join(folder, name + ".npy")!r})
                print(float(np.abs(out - expected).max()))
            """)
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
            result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                    text=True, timeout=300)
            ok = result.returncode == 0 and float(result.stdout.split()[-1]) < 1e-4
            failures += not ok
            detail = (f"max |cpu - gpu| = {result.stdout.split()[-1]}" if result.returncode == 0
                      else result.stderr.strip().splitlines()[-1])
            print(f"  pickle {name:28s} {'PASS' if ok else 'FAIL'}  {detail}")
    return failures


def check_agree():
    X, _ = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = dict(n_components=8, max_iter=3, random_state=0, shuffle=False)
        gpu = skae.AutoencoderTransformer(device=DEVICE, **params).fit(X).transform(X)
        cpu = skae.AutoencoderTransformer(device="cpu", **params).fit(X).transform(X)
    difference = float(np.abs(gpu - cpu).max() / np.abs(cpu).max())
    ok = difference < 1e-2
    print(f"  agree  GPU vs CPU fit, relative max difference {difference:.2e} "
          f"{'PASS' if ok else 'FAIL'}")
    return int(not ok)


CHECKS = {"pickle": check_pickle, "agree": check_agree}


def main(names):
    global DEVICE
    if "--dry-run" in names:
        names = [name for name in names if name != "--dry-run"]
        DEVICE = "cpu"
        print("check_gpu --dry-run: the CPU stands in for the GPU")
    elif not torch.cuda.is_available():
        print("check_gpu: CUDA is not available on this machine; nothing to check.")
        return 0
    else:
        print(f"check_gpu on {torch.cuda.get_device_name()} (torch {torch.__version__})")
    failures = sum(CHECKS[name]() for name in (names or CHECKS))
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return failures


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
