import os
import random
import signal

import numpy as np
import pytest
import torch
from hypothesis import settings
from sklearn.datasets import load_digits

# The same examples in every run (CI included), so that a red run is
# reproducible; SKAE_HYPOTHESIS_RANDOM=1 explores new ones.
settings.register_profile("skae", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("explore" if os.environ.get("SKAE_HYPOTHESIS_RANDOM") else "skae")


@pytest.fixture(scope="session")
def digits():
    """The digits scaled to [0, 1], as float64."""
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture
def blobs():
    """A small float64 table with a low-dimensional structure."""
    rng = np.random.RandomState(0)
    latent = rng.normal(size=(120, 3))
    return latent @ rng.normal(size=(3, 10)) + 0.05 * rng.normal(size=(120, 10))


class _GlobalRandomStates:
    """Snapshot of the global NumPy, torch and ``random`` states."""

    def __init__(self):
        self.states = self._read()

    @staticmethod
    def _read():
        return (np.random.get_state()[1].copy(),  # noqa: NPY002 - the legacy global state
                torch.get_rng_state().clone(), random.getstate())

    def assert_unchanged(self):
        numpy_state, torch_state, python_state = self._read()
        np.testing.assert_array_equal(numpy_state, self.states[0])
        assert torch.equal(torch_state, self.states[1])
        assert python_state == self.states[2]


@pytest.fixture
def global_rng():
    """Call ``global_rng.assert_unchanged()`` to check that skae left the global
    random states (NumPy, torch, ``random``) as they were when the test began."""
    return _GlobalRandomStates()


@pytest.fixture(autouse=True)
def _sigint_as_in_a_terminal():
    """Run every test with Python's own Ctrl-C handler, as a terminal gives it.

    A suite started in the background (``pytest &``, nohup, some CI runners)
    inherits SIGINT ignored; skae then rightly leaves Ctrl-C alone (it only
    defers ``KeyboardInterrupt``), and the tests that press Ctrl-C, in this
    process or in a child (exec resets a handled signal, not an ignored
    one), would test nothing. Restored after each test.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is signal.SIG_IGN:
            signal.signal(signal.SIGINT, previous)
