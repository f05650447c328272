"""Data larger than memory: memmaps and lazy arrays are read in blocks, never copied whole."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from skae import AutoencoderTransformer, ConvolutionalAutoencoder, VariationalAutoencoder
from skae._sources import BlockSource, LazyRows, reads_in_blocks

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FAST = dict(n_components=3, max_iter=3, random_state=0, device="cpu", batch_size=32)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 1 KiB (20 rows of 12 float32), windows of 4: small data take the block path."""
    monkeypatch.setattr("skae._sources.BLOCK_BYTES", 12 * 4 * 20)
    monkeypatch.setattr("skae._sources.WINDOW_BLOCKS", 4)


@pytest.fixture
def table(tmp_path):
    rng = np.random.RandomState(0)
    X = (rng.normal(size=(1000, 3)) @ rng.normal(size=(3, 12))).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    return X, np.load(tmp_path / "X.npy", mmap_mode="r")


class SlicedOnly:
    """An array-like that reads rows only through slices, and records them (like
    an HDF5 dataset on disk)."""

    def __init__(self, X):
        self.X, self.shape, self.dtype, self.reads = X, X.shape, X.dtype, []

    def __getitem__(self, rows):
        assert isinstance(rows, slice), f"read {rows!r}: not a contiguous slice"
        self.reads.append((rows.start, rows.stop))
        return np.array(self.X[rows])


def test_which_arrays_are_read_in_blocks(table, small_blocks):
    X, memmap = table
    assert reads_in_blocks(memmap) and reads_in_blocks(SlicedOnly(X))
    assert not reads_in_blocks(X)  # in memory: one tensor, as before
    assert not reads_in_blocks(memmap[:50])  # one window: read whole
    assert not reads_in_blocks(torch.from_numpy(X))


def test_a_memmap_within_one_window_gives_the_in_memory_model(table):
    X, memmap = table
    assert not reads_in_blocks(memmap)  # 48 kB, under the default window
    in_memory = AutoencoderTransformer(**FAST).fit(X)
    mapped = AutoencoderTransformer(**FAST).fit(memmap)
    assert_array_equal(mapped.loss_curve_, in_memory.loss_curve_)


@pytest.mark.parametrize("Estimator", [AutoencoderTransformer, VariationalAutoencoder])
def test_fit_and_transform_on_a_memmap_in_blocks(Estimator, table, small_blocks):
    X, memmap = table
    model = Estimator(**FAST).fit(memmap)
    assert model.n_features_in_ == 12 and model.n_iter_ == 3
    # Reproducible, and inference on the memmap is inference on the array.
    assert_array_equal(Estimator(**FAST).fit(memmap).loss_curve_, model.loss_curve_)
    assert_allclose(model.transform(memmap), model.transform(X), rtol=1e-6, atol=1e-7)
    assert_allclose(model.score_samples(memmap), model.score_samples(X), rtol=1e-6)
    # Shuffled blocks train as well as a full shuffle (the same loss to a few %).
    in_memory = Estimator(**{**FAST, "max_iter": 20}).fit(X)
    blocks = Estimator(**{**FAST, "max_iter": 20}).fit(memmap)
    assert blocks.score(X) == pytest.approx(in_memory.score(X), rel=0.2)


def test_float64_memmap_is_inferred_in_float64(tmp_path, table, small_blocks):
    X, _ = table
    np.save(tmp_path / "X64.npy", X.astype(np.float64))
    memmap = np.load(tmp_path / "X64.npy", mmap_mode="r")
    model = AutoencoderTransformer(**FAST).fit(memmap)
    codes = model.transform(memmap)
    assert codes.dtype == np.float64
    assert_allclose(codes, model.transform(X.astype(np.float64)), rtol=1e-12)


def test_a_lazy_array_is_only_ever_sliced(table, small_blocks):
    X, _ = table
    lazy = SlicedOnly(X)
    model = AutoencoderTransformer(early_stopping=True, **FAST).fit(lazy)
    assert len(model.validation_scores_) == 3
    # Every read was a block of at most 20 contiguous rows.
    assert max(stop - start for start, stop in lazy.reads) <= 20
    lazy.reads.clear()
    assert_allclose(model.transform(lazy), model.transform(X), rtol=1e-6, atol=1e-7)


def test_the_conv_autoencoder_reads_a_memmap_of_images_in_blocks(tmp_path, small_blocks):
    images = np.random.RandomState(0).rand(600, 1, 3, 4).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    memmap = np.load(tmp_path / "images.npy", mmap_mode="r")
    model = ConvolutionalAutoencoder(channels=(2,), **FAST).fit(memmap)
    assert model.image_shape_ == (1, 3, 4)
    assert_allclose(model.transform(memmap), model.transform(images), rtol=1e-6, atol=1e-7)


def test_non_finite_rows_on_disk_are_refused_and_leave_the_model_as_it_was(
        tmp_path, table, small_blocks):
    X, memmap = table
    model = AutoencoderTransformer(**FAST).fit(memmap)
    codes = model.transform(X)
    bad = X.copy()
    bad[777, 5] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    bad = np.load(tmp_path / "bad.npy", mmap_mode="r")
    with pytest.raises(ValueError, match=r"NaN or infinity \(first in row 777\)"):
        model.fit(bad)
    assert_array_equal(model.transform(X), codes)
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.transform(bad)
    with pytest.raises(ValueError, match="12 features"):
        model.transform(np.load(tmp_path / "X.npy", mmap_mode="r")[:, :5].copy())


def test_block_source_visits_every_row_once_in_shuffled_blocks():
    X = np.arange(103, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    source = BlockSource(X, block_rows=10, blocks_per_window=3, device="cpu")
    generator = torch.Generator().manual_seed(0)
    epochs = [torch.cat([batch[:, 0] for batch, _ in source.batches(7, generator)])
              for _ in range(2)]
    for rows in epochs:
        assert sorted(rows.tolist()) == list(range(103))
    assert not torch.equal(epochs[0], epochs[1])  # a new order every epoch
    in_order = torch.cat([batch[:, 0] for batch, _ in source.batches(7)])
    assert in_order.tolist() == list(range(103))
    kept, held_out = source.split(0.25, torch.Generator().manual_seed(0))
    assert kept.n_rows + held_out.n_rows == 103 and held_out.n_rows >= 26
    assert set(kept.blocks).isdisjoint(held_out.blocks)  # whole blocks


def test_lazy_rows_check_values_as_they_are_read():
    X = np.ones((10, 3))
    X[7, 1] = np.inf
    rows = LazyRows(X)
    assert rows.dtype == np.float64 and rows[:5].shape == (5, 3)
    with pytest.raises(ValueError, match="in row 7"):
        rows[5:]
    assert LazyRows(np.ones((4, 2), dtype=np.int16)).dtype == np.float32


PEAK_MEMORY = """
import threading, time, warnings, numpy as np, sys
from skae import AutoencoderTransformer

def anonymous():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024

class Peak:
    def __enter__(self):
        self.base, self.peak, self.running = anonymous(), 0, True
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()
        return self
    def watch(self):
        while self.running:
            self.peak = max(self.peak, anonymous())
            time.sleep(0.002)
    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, anonymous())
    @property
    def growth(self):
        return self.peak - self.base

warnings.simplefilter("ignore")
X = np.load(sys.argv[1], mmap_mode="r")
params = dict(n_components=4, hidden_layer_sizes=(32,), max_iter=1, batch_size=1000,
              random_state=0, device="cpu")
AutoencoderTransformer(**params).fit(np.asarray(X[:2000]))  # load every code path first
model = AutoencoderTransformer(**params)
with Peak() as fit:
    model.fit(X)
with Peak() as transform:
    codes = model.transform(X)
print(fit.growth / X.nbytes, (transform.growth - codes.nbytes) / X.nbytes)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_anonymous_memory_of_fit_and_transform_is_a_small_fraction_of_x(tmp_path):
    """A 200 MB float32 file: one epoch of fit and a transform, in a fresh process."""
    path = tmp_path / "big.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(1_000_000, 50))
    rng = np.random.default_rng(0)
    for start in range(0, X.shape[0], 100_000):
        X[start:start + 100_000] = rng.standard_normal((100_000, 50), dtype=np.float32)
    X.flush()
    del X
    code = textwrap.dedent(PEAK_MEMORY)
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    fit_share, transform_share = map(float, result.stdout.split())
    # Blocks of 16 MiB of a 200 MB table: the rest is allocator slack.
    assert fit_share < 0.2, fit_share
    assert transform_share < 0.2, transform_share
