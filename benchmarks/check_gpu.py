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
- stream: training rows kept in pinned host memory and copied to the GPU one
  batch ahead on a side stream (what skae does when X would crowd the GPU)
  give the model that training with X on the GPU gives; a memmap read in
  blocks on the GPU infers as the array does. Prints both throughputs.
- sparse: a CSR matrix kept on the GPU (batches made dense there) gives the
  model of its dense twin.
- bf16: ``precision="bfloat16"`` (autocast) against float32 on a table wide
  enough for tensor cores: throughput ratio and held-out error ratio.
- ddp: ``distributed=True`` under torchrun with NCCL on 2 GPUs (skipped with
  fewer): the same weights on both processes, close to one process with the
  global batch. The dry run uses 2 CPU processes and gloo.
"""

import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import time
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
# The dry run checks the script, not the speed: it trains on a tenth of the rows.
ROWS = 1.0


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


def _quiet_fit(model, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(*args)


def _weights(model):
    return [p.detach().cpu().numpy() for p in model.module_.parameters()]


def _largest_difference(first, second):
    return max(float(np.abs(a - b).max()) for a, b in zip(_weights(first), _weights(second)))


def check_stream():
    import skae._sources as sources

    rng = np.random.RandomState(0)
    X = (rng.normal(size=(int(100_000 * ROWS), 16)) @ rng.normal(size=(16, 256))).astype(
        np.float32)
    params = dict(n_components=16, hidden_layer_sizes=(128,), max_iter=2, batch_size=512,
                  random_state=0, device=DEVICE)
    seconds = {}
    models = {}
    saved = sources._DEVICE_MEMORY_FRACTION, sources.TensorSource
    try:
        for name in ("on device", "streamed"):
            if name == "streamed":
                # Any X now crowds the GPU; on the dry run's CPU, whose data
                # never stream, in-memory data take StreamingSource's CPU path.
                sources._DEVICE_MEMORY_FRACTION = 0.0
                if DEVICE != "cuda":
                    sources.TensorSource = lambda X, y=None: sources.StreamingSource.from_array(
                        X, y, X.device)
            started = time.perf_counter()
            models[name] = _quiet_fit(skae.AutoencoderTransformer(**params), X)
            seconds[name] = time.perf_counter() - started
    finally:
        sources._DEVICE_MEMORY_FRACTION, sources.TensorSource = saved
    difference = _largest_difference(models["on device"], models["streamed"])
    ok = difference <= 1e-6
    print(f"  stream pinned host rows vs rows on the device: max |weight difference| "
          f"{difference:.1e}; {X.shape[0] * 2 / seconds['streamed']:,.0f} vs "
          f"{X.shape[0] * 2 / seconds['on device']:,.0f} rows/s  {'PASS' if ok else 'FAIL'}")
    failures = int(not ok)
    # A memmap read in blocks through a pinned buffer.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "X.npy")
        np.save(path, X)
        memmap = np.load(path, mmap_mode="r")
        saved_block = sources.BLOCK_BYTES
        sources.BLOCK_BYTES = 1 << 16  # many windows even for this small file
        try:
            model = _quiet_fit(skae.AutoencoderTransformer(**params), memmap)
            codes = model.transform(memmap)
        finally:
            sources.BLOCK_BYTES = saved_block
        difference = float(np.abs(codes - model.transform(X)).max())
        ok = np.isfinite(model.loss_curve_).all() and difference < 1e-5
        print(f"  stream memmap in blocks through pinned memory: loss {model.loss_curve_[-1]:.4f}"
              f" (in memory {models['on device'].loss_curve_[-1]:.4f}), transform max "
              f"|difference| {difference:.1e}  {'PASS' if ok else 'FAIL'}")
        failures += int(not ok)
        del memmap
    return failures


def check_sparse():
    import scipy.sparse as sp

    X = sp.random(20_000, 2_000, density=0.01, format="csr", random_state=0,
                  dtype=np.float32)
    params = dict(n_components=8, max_iter=2, random_state=0, device=DEVICE)
    sparse = _quiet_fit(skae.AutoencoderTransformer(**params), X)
    dense = _quiet_fit(skae.AutoencoderTransformer(**params), X.toarray())
    difference = _largest_difference(sparse, dense)
    codes = float(np.abs(sparse.transform(X) - dense.transform(X.toarray())).max())
    ok = difference <= 1e-6 and codes <= 1e-5
    print(f"  sparse CSR on the device vs dense: max |weight difference| {difference:.1e}, "
          f"codes {codes:.1e}  {'PASS' if ok else 'FAIL'}")
    return int(not ok)


def check_bf16():
    rng = np.random.RandomState(0)
    n_rows = int(60_000 * ROWS)
    X = (rng.normal(size=(n_rows, 32)) @ rng.normal(size=(32, 1024))
         + 0.1 * rng.normal(size=(n_rows, 1024))).astype(np.float32)
    X /= X.std()
    train, test = X[:n_rows * 5 // 6], X[n_rows * 5 // 6:]
    params = dict(n_components=32, hidden_layer_sizes=(1024, 512), max_iter=5,
                  batch_size=1024, random_state=0, device=DEVICE)
    rows = {}
    for precision in ("float32", "bfloat16"):  # warm-up: kernels, autotuning
        _quiet_fit(skae.AutoencoderTransformer(precision=precision, **params), train[:4096])
    for precision in ("float32", "bfloat16", "float32", "bfloat16"):
        model = skae.AutoencoderTransformer(precision=precision, **params)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        _quiet_fit(model, train)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        error = np.mean((model.inverse_transform(model.transform(test)) - test) ** 2)
        rows.setdefault(precision, []).append((seconds, error))
    time32 = min(s for s, _ in rows["float32"])
    time16 = min(s for s, _ in rows["bfloat16"])
    error32, error16 = rows["float32"][0][1], rows["bfloat16"][0][1]
    # Five epochs of two trajectories: their held-out errors differ by more than
    # rounding either way; bf16 must not be clearly worse.
    ok = np.isfinite(error16) and error16 <= 1.25 * error32
    print(f"  bf16   autocast vs float32, {len(train):,} x 1,024, 1024-512-32: speed-up "
          f"{time32 / time16:.2f}x, held-out error ratio {error16 / error32:.3f}  "
          f"{'PASS' if ok else 'FAIL'}")
    return int(not ok)


DDP_SCRIPT = """
import os, sys, warnings, numpy as np, torch, torch.distributed as dist
from skae import AutoencoderTransformer
warnings.simplefilter("ignore")
backend, device = sys.argv[2], sys.argv[3]
dist.init_process_group(backend)
rng = np.random.RandomState(0)
X = (rng.normal(size=(8192, 8)) @ rng.normal(size=(8, 64))).astype(np.float32)
model = AutoencoderTransformer(n_components=8, batch_size=64, max_iter=3, random_state=0,
                               device=device, distributed=True).fit(X)
weights = torch.cat([p.detach().flatten() for p in model.module_.parameters()])
np.save(os.path.join(sys.argv[1], f"rank{dist.get_rank()}.npy"), weights.cpu().numpy())
print(dist.get_rank(), model.device_)
dist.destroy_process_group()
"""


def check_ddp():
    if DEVICE == "cuda" and torch.cuda.device_count() < 2:
        print("  ddp    SKIP: needs 2 GPUs (found 1)")
        return 0
    backend, device = ("nccl", "auto") if DEVICE == "cuda" else ("gloo", "cpu")
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "train.py")
        with open(script, "w") as file:
            file.write(DDP_SCRIPT)
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
             script, folder, backend, device], capture_output=True, text=True, timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
        if result.returncode != 0:
            print(f"  ddp    FAIL: {result.stderr.strip().splitlines()[-1]}")
            return 1
        first, second = (np.load(os.path.join(folder, f"rank{rank}.npy")) for rank in (0, 1))
    rng = np.random.RandomState(0)
    X = (rng.normal(size=(8192, 8)) @ rng.normal(size=(8, 64))).astype(np.float32)
    single = _quiet_fit(skae.AutoencoderTransformer(
        n_components=8, batch_size=128, max_iter=3, random_state=0, device=DEVICE), X)
    reference = np.concatenate([w.ravel() for w in _weights(single)])
    same = bool(np.array_equal(first, second))
    difference = float(np.abs(first - reference).max())
    ok = same and difference < 1e-3
    devices = " ".join(line.split()[-1] for line in result.stdout.split("\n") if line.strip())
    print(f"  ddp    2 processes ({backend}; {devices}): identical weights {same}, max |vs one "
          f"process with the global batch| {difference:.1e}  {'PASS' if ok else 'FAIL'}")
    return int(not ok)


CHECKS = {"pickle": check_pickle, "agree": check_agree, "stream": check_stream,
          "sparse": check_sparse, "bf16": check_bf16, "ddp": check_ddp}


def main(names):
    global DEVICE, ROWS
    if "--dry-run" in names:
        names = [name for name in names if name != "--dry-run"]
        DEVICE, ROWS = "cpu", 0.1
        print("check_gpu --dry-run: the CPU stands in for the GPU (on a tenth of the rows)")
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
