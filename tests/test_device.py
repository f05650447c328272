"""Device resolution, tensor conversion, seeds and thread control."""

import threading

import numpy as np
import pytest
import torch

from skae._device import (
    derive_seed,
    map_location_for,
    resolve_device,
    seed_from_random_state,
    to_tensor,
    torch_threads,
)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_resolve_cpu(device):
    assert resolve_device(device) == torch.device("cpu")


def test_auto_resolves_to_an_available_device():
    device = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert device.type == expected
    else:
        assert device.type in ("mps", "cpu")


@pytest.mark.parametrize("device, match", [
    ("gpu", "not a device name"),
    ("xla", "not supported"),
    ("cuda:99", "CUDA|only"),
])
def test_unknown_or_missing_devices_are_clear_errors(device, match):
    with pytest.raises(ValueError, match=match):
        resolve_device(device)


def test_to_tensor_shares_float32_memory_and_copies_otherwise():
    shared = np.ones((3, 2), dtype=np.float32)
    tensor = to_tensor(shared, "cpu")
    tensor[0, 0] = 5.0
    assert shared[0, 0] == 5.0
    converted = np.ones((3, 2))
    tensor = to_tensor(converted, "cpu")
    assert tensor.dtype == torch.float32
    tensor[0, 0] = 5.0
    assert converted[0, 0] == 1.0
    read_only = np.ones((3, 2), dtype=np.float32)
    read_only.flags.writeable = False
    assert to_tensor(read_only, "cpu").data_ptr() != read_only.ctypes.data
    strided = np.ones((4, 4), dtype=np.float32)[:, ::2]
    assert to_tensor(strided, "cpu").is_contiguous()


def test_seeds_are_reproducible_and_streams_independent():
    assert seed_from_random_state(3) == 3
    a = seed_from_random_state(np.random.RandomState(0))
    assert a == seed_from_random_state(np.random.RandomState(0))
    assert seed_from_random_state(None) != seed_from_random_state(None)
    assert derive_seed(1, 2) == derive_seed(1, 2)
    assert len({derive_seed(1, key) for key in range(10)}) == 10
    assert 0 <= derive_seed(1, 2) < 2**63


def test_overlapping_thread_blocks_each_get_their_count_and_restore_it():
    """Two fits from two threads overlap, the first to start ending last and the
    other way round: inside, each block runs with its count; after both, every
    thread has the count it had before (whether torch keeps one count per
    thread, as with OpenMP, or one for the process)."""
    before = torch.get_num_threads()
    outer_entered, inner_done = threading.Event(), threading.Event()
    seen = {}

    def outer():
        outer_before = torch.get_num_threads()
        with torch_threads(1):
            outer_entered.set()
            inner_done.wait(10)
            seen["outer inside"] = torch.get_num_threads()
        seen["outer after"] = torch.get_num_threads() == outer_before

    worker = threading.Thread(target=outer)
    worker.start()
    outer_entered.wait(10)
    with torch_threads(1):
        seen["inner inside"] = torch.get_num_threads()
    inner_done.set()
    worker.join(10)
    assert seen == {"outer inside": 1, "inner inside": 1, "outer after": True}
    assert torch.get_num_threads() == before


def test_none_leaves_threads_alone():
    before = torch.get_num_threads()
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_map_location_falls_back_to_cpu_with_a_warning():
    assert map_location_for("cpu", "Model") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning, match="fitted on cuda:0, which is not available"):
            assert map_location_for("cuda:0", "Model") == torch.device("cpu")
