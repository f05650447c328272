"""Scale: data on disk, sparse data, growing tables, bfloat16 — tables, not tests.

    python benchmarks/bench_scale.py                # every section, about 25 minutes on 2 cores
    python benchmarks/bench_scale.py --quick        # small sizes, about a minute
    python benchmarks/bench_scale.py --sections memmap,sparse,scaling,precision

Sections (method printed above each table):

- memmap: a 4,000,000 x 50 float32 file (800 MB). One epoch of ``fit`` and one
  ``transform`` with X memmapped (read in shuffled blocks) against the same
  data loaded into memory: rows/s, and peak anonymous memory (``RssAnon``,
  which excludes the file's page-cache pages) grown during the call, over
  the size of X. Each measurement runs in a fresh process.
- sparse: a synthetic TF-IDF matrix, 100,000 x 20,000 at about 0.5% nonzeros
  (8 GB if dense): skae (a linear autoencoder, float32 and bfloat16) against
  ``TruncatedSVD`` at the same k: fit and transform time, peak memory grown,
  and held-out relative reconstruction error ``||X - X_hat||^2 / ||X||^2``.
- scaling: dense tables with growing rows (1e4..1e6 x 100) and growing columns
  (1e4 x 1e2..1e4): one epoch of skae against ``PCA`` and ``IncrementalPCA``
  fits, all on one thread.
- precision: ``precision="bfloat16"`` against float32: seconds per epoch and
  held-out error after the same epochs.

Every process uses one thread (torch and BLAS), and the machine may be shared:
figures are medians of interleaved repeats, with CPU and wall seconds. Files
go to a temporary folder that is deleted at the end.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

# --------------------------------------------------------------------------- #
# Measuring.


def anonymous_bytes():
    """RssAnon of this process: its private memory, not file pages (memmaps)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class Peak:
    """Wall and CPU seconds of a block, and its peak growth of RssAnon (sampled every 2 ms)."""

    def __enter__(self):
        self.base = self.peak = anonymous_bytes()
        self.running = True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def _watch(self):
        while self.running:
            self.peak = max(self.peak, anonymous_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, anonymous_bytes())

    @property
    def growth(self):
        return self.peak - self.base


def median(values):
    return float(np.median(values))


def run_worker(task):
    """Run one task in a fresh process (memory is measured from a clean start)."""
    result = subprocess.run([sys.executable, __file__, "--worker", json.dumps(task)],
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"worker {task['task']} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(title, header, rows, method):
    print(f"\n### {title}\n")
    print(method.strip() + "\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    sys.stdout.flush()


def load_info():
    return f"load average {os.getloadavg()[0]:.2f} at start, {os.cpu_count()} CPUs"


# --------------------------------------------------------------------------- #
# Data.


def write_table(path, n_rows, n_columns, rank=5, seed=0, chunk=200_000):
    """A low-rank-plus-noise float32 table written to a .npy file block by block."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((rank, n_columns), dtype=np.float32)
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                  shape=(n_rows, n_columns))
    for start in range(0, n_rows, chunk):
        rows = min(chunk, n_rows - start)
        latent = rng.standard_normal((rows, rank), dtype=np.float32)
        X[start:start + rows] = latent @ mixing + 0.3 * rng.standard_normal(
            (rows, n_columns), dtype=np.float32)
    X.flush()
    del X


def tfidf(n_documents, n_words, density, n_topics=50, seed=0):
    """A TF-IDF matrix of synthetic documents: each mixes 3 of ``n_topics``
    topics, each topic a sparse reweighting of Zipf-distributed word
    frequencies; sublinear TF and l2-normalised rows, as text pipelines do."""
    from sklearn.feature_extraction.text import TfidfTransformer

    rng = np.random.default_rng(seed)
    frequencies = 1.0 / np.arange(1, n_words + 1)
    topics = rng.gamma(0.1, size=(n_topics, n_words)) * frequencies
    cumulative = np.cumsum(topics / topics.sum(axis=1, keepdims=True), axis=1)
    tokens = int(density * n_words * 1.5)  # repeated words merge: ~density remains
    document = np.repeat(np.arange(n_documents), tokens)
    topic = rng.integers(0, n_topics, size=(n_documents, 3))[
        document, rng.integers(0, 3, size=document.size)]
    word = np.empty(document.size, dtype=np.int64)
    uniform = rng.random(document.size)
    for index in range(n_topics):
        chosen = topic == index
        word[chosen] = np.searchsorted(cumulative[index], uniform[chosen])
    np.minimum(word, n_words - 1, out=word)
    counts = sp.csr_matrix((np.ones(document.size, np.float32), (document, word)),
                           shape=(n_documents, n_words))
    counts.sum_duplicates()
    return TfidfTransformer(sublinear_tf=True).fit_transform(counts).astype(np.float32)


# --------------------------------------------------------------------------- #
# Worker tasks (fresh processes).

# One epoch over every row, as the plain loops train: no held-out rows, no PCA start.
MEMMAP_PARAMS = dict(n_components=10, max_iter=1, random_state=0, device="cpu", n_threads=1,
                     early_stopping=False, init="random")


def task_memmap(path, variant):
    from skae import AutoencoderTransformer

    warnings.simplefilter("ignore")
    X = np.load(path, mmap_mode="r")
    AutoencoderTransformer(**MEMMAP_PARAMS).fit(np.array(X[:5000]))  # load every code path
    if variant == "in memory":
        X = np.load(path)
    model = AutoencoderTransformer(**MEMMAP_PARAMS)
    with Peak() as fit:
        model.fit(X)
    with Peak() as transform:
        codes = model.transform(X)
    return {"fit_wall": fit.wall, "fit_cpu": fit.cpu, "fit_growth": fit.growth,
            "transform_wall": transform.wall, "transform_cpu": transform.cpu,
            "transform_growth": transform.growth, "codes_bytes": codes.nbytes,
            "process_peak": max(fit.peak, transform.peak), "x_bytes": X.nbytes,
            "loss": model.loss_curve_[-1]}


def _svd_error(svd, X, chunk=1000):
    error = 0.0
    for start in range(0, X.shape[0], chunk):
        rows = X[start:start + chunk]
        reconstruction = svd.transform(rows) @ svd.components_
        error += float(((rows.toarray() - reconstruction) ** 2).sum())
    return error


def task_sparse(path, method, k, epochs):
    from sklearn.decomposition import TruncatedSVD

    from skae import AutoencoderTransformer

    warnings.simplefilter("ignore")
    X = sp.load_npz(path).tocsr()
    n_test = X.shape[0] // 10
    train, test = X[:-n_test], X[-n_test:]
    if method == "TruncatedSVD":
        model = TruncatedSVD(k, random_state=0)
    else:
        # A linear autoencoder, the model class of the SVD; no weight decay
        # (with TF-IDF's small entries a coupled L2 penalty outweighs the
        # reconstruction gradient), and Adam at 1e-2.
        model = AutoencoderTransformer(
            k, hidden_layer_sizes=(), activation="identity", alpha=0.0,
            learning_rate_init=1e-2, batch_size=256, max_iter=epochs, random_state=0,
            early_stopping=False, init="random",
            device="cpu", n_threads=1,
            precision="bfloat16" if "bfloat16" in method else "float32")
        model.fit(train[:2000])  # load every code path
    with Peak() as fit:
        model.fit(train)
    with Peak() as transform:
        model.transform(train)
    total = float(test.multiply(test).sum())
    if method == "TruncatedSVD":
        error = _svd_error(model, test)
    else:
        # Minus the per-row mean squared error, chunk by chunk (score_samples
        # is a log-likelihood).
        error = -float(model._predict(model._score_samples_tensor, test).sum(
            dtype=np.float64)) * test.shape[1]
    return {"fit_wall": fit.wall, "fit_cpu": fit.cpu, "fit_growth": fit.growth,
            "transform_wall": transform.wall, "transform_growth": transform.growth,
            "error": error / total, "csr_bytes": int(train.data.nbytes + train.indices.nbytes
                                                     + train.indptr.nbytes)}


def task_scaling_memory(path, method):
    from threadpoolctl import threadpool_limits

    warnings.simplefilter("ignore")
    X = np.load(path)
    model = _scaling_contenders()[method]()
    with threadpool_limits(1), Peak() as fit:
        model.fit(X)
    return {"growth": fit.growth, "x_bytes": X.nbytes}


TASKS = {"memmap": task_memmap, "sparse": task_sparse, "scaling_memory": task_scaling_memory}


# --------------------------------------------------------------------------- #
# Sections.


def section_memmap(folder, quick, repeats):
    n_rows = 200_000 if quick else 4_000_000
    path = os.path.join(folder, "table.npy")
    write_table(path, n_rows, 50)
    x_bytes = n_rows * 50 * 4
    results = {"memmap": [], "in memory": []}
    for _ in range(repeats):
        for variant in results:  # interleaved
            results[variant].append(run_worker({"task": "memmap", "path": path,
                                                "variant": variant}))
    os.remove(path)
    rows = []
    for variant, runs in results.items():
        rows.append([
            variant,
            f"{n_rows / median([r['fit_wall'] for r in runs]):,.0f}",
            f"{median([r['fit_cpu'] / r['fit_wall'] for r in runs]):.2f}",
            f"{n_rows / median([r['transform_wall'] for r in runs]):,.0f}",
            f"{median([r['fit_growth'] for r in runs]) / x_bytes:.3f}",
            f"{median([r['transform_growth'] - r['codes_bytes'] for r in runs]) / x_bytes:.3f}",
            f"{median([r['process_peak'] for r in runs]) / x_bytes:.2f}",
            f"{median([r['loss'] for r in runs]):.4f}",
        ])
    table(
        f"Data on disk: {n_rows:,} x 50 float32 ({x_bytes / 1e6:,.0f} MB), one epoch of fit "
        f"and a transform; median of {repeats} interleaved fresh processes; {load_info()}",
        ["X", "fit rows/s", "fit CPU/wall", "transform rows/s", "fit RssAnon growth / X",
         "transform RssAnon growth (less the codes) / X", "process peak RssAnon / X",
         "loss of the epoch"], rows,
        "AutoencoderTransformer(n_components=10) (hidden 100, batch 200), 1 torch thread. "
        "`memmap`: `np.load(path, mmap_mode='r')`, read in shuffled windows of 16 blocks of "
        "1 MiB (the file is in the page cache: written just before; a cold read adds the "
        "disk's time). `in memory`: `np.load(path)`, whose X itself is anonymous memory "
        "(counted in the process peak, not in the growth). Growth is the peak of RssAnon "
        "during the call minus RssAnon before it; the codes (n x 10 float32) are the "
        "transform's output and are not counted.")


def section_sparse(folder, quick, repeats):
    n_documents, n_words = (10_000, 5_000) if quick else (100_000, 20_000)
    k, epochs = 50, (2 if quick else 5)
    started = time.perf_counter()
    X = tfidf(n_documents, n_words, 0.005 if not quick else 0.01)
    density = X.nnz / (X.shape[0] * X.shape[1])
    path = os.path.join(folder, "tfidf.npz")
    sp.save_npz(path, X, compressed=False)
    print(f"\n(sparse data: {X.shape[0]:,} x {X.shape[1]:,}, {density:.2%} nonzeros, made in "
          f"{time.perf_counter() - started:.0f} s)")
    del X
    methods = ["TruncatedSVD", "skae, float32", "skae, bfloat16"]
    results = {method: [] for method in methods}
    for _ in range(repeats):
        for method in methods:
            results[method].append(run_worker({"task": "sparse", "path": path,
                                               "method": method, "k": k, "epochs": epochs}))
    os.remove(path)
    dense_bytes = n_documents * 0.9 * n_words * 4
    rows = []
    for method, runs in results.items():
        fit = median([r["fit_wall"] for r in runs])
        rows.append([
            method,
            f"{fit:.1f}" + ("" if method == "TruncatedSVD" else f" ({fit / epochs:.1f} per epoch)"),
            f"{median([r['fit_cpu'] / r['fit_wall'] for r in runs]):.2f}",
            f"{median([r['transform_wall'] for r in runs]):.2f}",
            f"{median([r['fit_growth'] for r in runs]) / 2**20:,.0f}",
            f"{median([r['error'] for r in runs]):.4f}",
        ])
    csr_mb = results[methods[0]][0]["csr_bytes"] / 2**20
    table(
        f"Sparse TF-IDF, {n_documents:,} x {n_words:,} ({density:.2%} nonzeros; training CSR "
        f"{csr_mb:,.0f} MiB, {dense_bytes / 2**30:.1f} GiB if dense), k = {k}; median of "
        f"{repeats} fresh process(es) per row; {load_info()}",
        ["method", "fit s", "fit CPU/wall", "transform s (train rows)",
         "fit RssAnon growth MiB", "held-out relative error"], rows,
        f"Synthetic documents (50 topics over Zipf word frequencies, 3 topics each), sublinear "
        f"TF-IDF, l2 rows; the last 10% of rows held out. `TruncatedSVD(k)` (randomized, 5 "
        f"power iterations). skae: `AutoencoderTransformer(k, hidden_layer_sizes=(), "
        f"activation='identity', alpha=0, learning_rate_init=1e-2, batch_size=256, "
        f"max_iter={epochs})`, the linear model class of the SVD, on the CSR matrix (kept "
        f"compressed, each batch made dense); its error comes from `score_samples` (per-row "
        f"mean squared error). Relative error: squared error over the held-out squared norm. "
        f"One thread each.")


def _scaling_contenders():
    from sklearn.decomposition import PCA, IncrementalPCA

    from skae import AutoencoderTransformer

    return {
        "skae, 1 epoch": lambda: AutoencoderTransformer(
            n_components=10, max_iter=1, random_state=0, device="cpu", n_threads=1,
            early_stopping=False, init="random"),
        "PCA": lambda: PCA(n_components=10, random_state=0),
        "IncrementalPCA": lambda: IncrementalPCA(n_components=10, batch_size=1000),
    }


def section_scaling(folder, quick, repeats):
    from threadpoolctl import threadpool_limits

    shapes = ([(10_000, 100), (100_000, 100), (10_000, 1_000)] if quick else
              [(10_000, 100), (100_000, 100), (1_000_000, 100),
               (10_000, 1_000), (10_000, 10_000), (100_000, 1_000)])
    contenders = _scaling_contenders()
    warnings.simplefilter("ignore")
    rows = []
    with threadpool_limits(1):
        for n_rows, n_columns in shapes:
            path = os.path.join(folder, "scaling.npy")
            write_table(path, n_rows, n_columns, rank=10)
            X = np.load(path)
            contenders["skae, 1 epoch"]().fit(X[:2000])  # load every code path
            seconds = {name: [] for name in contenders}
            for _ in range(repeats):
                for name, make in contenders.items():
                    model = make()
                    started = time.perf_counter()
                    model.fit(X)
                    seconds[name].append(time.perf_counter() - started)
                    if name == "PCA":
                        solver = getattr(model, "_fit_svd_solver", "?")
            # Memory in fresh processes: in this one the heap keeps what earlier
            # fits freed, which hides later growth.
            growth = {name: run_worker({"task": "scaling_memory", "path": path,
                                        "method": name})["growth"] for name in contenders}
            os.remove(path)
            times = {name: median(values) for name, values in seconds.items()}
            rows.append([
                f"{n_rows:,} x {n_columns:,}", f"{X.nbytes / 2**20:,.0f}",
                *[f"{times[name]:.2f}" for name in contenders], solver,
                f"{times['skae, 1 epoch'] / times['PCA']:.2f}",
                f"{times['skae, 1 epoch'] / times['IncrementalPCA']:.2f}",
                *[f"{growth[name] / X.nbytes:.2f}" for name in contenders],
            ])
            del X
    table(
        f"Growing tables: fit seconds, one thread; median of {repeats} interleaved repeats; "
        f"{load_info()}",
        ["rows x columns", "X MiB", *[f"{name} s" for name in contenders], "PCA's solver",
         "skae epoch / PCA", "skae epoch / IncrementalPCA",
         *[f"{name} RssAnon growth / X" for name in contenders]], rows,
        "float32 tables of rank 10 plus noise, in memory. skae: `AutoencoderTransformer("
        "n_components=10)` (hidden 100, batch 200), one epoch (`max_iter=1`); it needs tens "
        "of epochs to converge. `PCA(n_components=10)` with its 'auto' solver (the one it "
        "chose is shown: `covariance_eigh` forms the p x p covariance in one pass) and "
        "`IncrementalPCA(n_components=10, batch_size=1000)` fit to completion. Memory: "
        "peak RssAnon growth during a fit in a fresh process (X loaded before), over X's "
        "size.")


def section_precision(folder, quick, repeats):
    from skae import AutoencoderTransformer

    warnings.simplefilter("ignore")
    cases = [  # rows, columns, hidden layers, code
        (100_000, 100, (64,), 10),
        (20_000, 784, (256,), 32),
        (10_000, 2_000, (1024, 512), 32),
    ]
    if quick:
        cases = [(n // 10, p, hidden, k) for n, p, hidden, k in cases[:2]]
    epochs = 2 if quick else 5
    rows = []
    for n_rows, n_columns, hidden, k in cases:
        rng = np.random.default_rng(0)
        X = (rng.standard_normal((n_rows + n_rows // 5, 16), dtype=np.float32)
             @ rng.standard_normal((16, n_columns), dtype=np.float32))
        X += 0.3 * rng.standard_normal(X.shape, dtype=np.float32)
        X /= X.std()
        train, test = X[:n_rows], X[n_rows:]
        results = {"float32": [], "bfloat16": []}
        for precision in results:
            AutoencoderTransformer(k, hidden_layer_sizes=hidden, max_iter=1, device="cpu",
                                   precision=precision).fit(train[:2000])  # warm up
        for _ in range(repeats):
            for precision in results:
                model = AutoencoderTransformer(
                    k, hidden_layer_sizes=hidden, max_iter=epochs, batch_size=256,
                    early_stopping=False, init="random",
                    random_state=0, device="cpu", n_threads=1, precision=precision)
                started = time.perf_counter()
                model.fit(train)
                seconds = time.perf_counter() - started
                error = np.mean((model.inverse_transform(model.transform(test)) - test) ** 2)
                results[precision].append((seconds / epochs, error))
        epoch32 = median([s for s, _ in results["float32"]])
        epoch16 = median([s for s, _ in results["bfloat16"]])
        error32 = median([e for _, e in results["float32"]])
        error16 = median([e for _, e in results["bfloat16"]])
        rows.append([f"{n_rows:,} x {n_columns:,}", "-".join(map(str, (n_columns, *hidden, k))),
                     f"{epoch32:.2f}", f"{epoch16:.2f}", f"{epoch32 / epoch16:.2f}",
                     f"{error32:.4f}", f"{error16:.4f}", f"{error16 / error32:.3f}"])
    table(
        f"precision='bfloat16' against float32 on the CPU (AMX: "
        f"{'yes' if _has_amx() else 'no'}); {epochs} epochs, batch 256, one thread; median "
        f"of {repeats} interleaved repeats; {load_info()}",
        ["table", "network (encoder)", "float32 s/epoch", "bfloat16 s/epoch", "speed-up",
         "float32 held-out MSE", "bfloat16 held-out MSE", "error ratio"], rows,
        "Rank-16 tables plus noise, standardised; a sixth of the rows held out. "
        "`AutoencoderTransformer(k, hidden_layer_sizes=..., precision=...)`; the held-out "
        "mean squared error is minus `score`, computed in float32 for both.")


def _has_amx():
    try:
        with open("/proc/cpuinfo") as info:
            return "amx_bf16" in info.read()
    except OSError:
        return False


SECTIONS = {"memmap": section_memmap, "sparse": section_sparse, "scaling": section_scaling,
            "precision": section_precision}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--folder", default=None, help="where to write the data files")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        task = json.loads(args.worker)
        name = task.pop("task")
        print(json.dumps(TASKS[name](**task)))
        return
    import torch

    print(f"bench_scale: torch {torch.__version__}, 1 thread per process "
          f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}), {load_info()}")
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        for name in args.sections.split(","):
            repeats = args.repeats or (1 if args.quick else
                                       {"memmap": 3, "sparse": 1, "scaling": 3,
                                        "precision": 2}[name])
            SECTIONS[name](folder, args.quick, repeats)


if __name__ == "__main__":
    main()
