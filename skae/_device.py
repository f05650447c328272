"""Device resolution, device memory, tensor conversion, seeding and thread control.

Everything here is independent of scikit-learn estimators; the engine and the
estimators call down into it.
"""

import contextlib
import functools
import os
import sys
import threading
import warnings

import numpy as np
import torch


def resolve_device(device):
    """Turn the ``device`` parameter into an available :class:`torch.device`.

    ``"auto"`` picks CUDA when available, else Apple MPS, else the CPU.

    Raises
    ------
    ValueError
        If the string is not a device name torch understands, or names a
        device this machine does not have.
    """
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"device={device!r} is not a device name; use 'auto', 'cpu', 'cuda', "
            "'cuda:N', 'mps' or a torch.device."
        ) from exc
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on "
                "this machine; use device='cpu' or device='auto'."
            )
        index = resolved.index if resolved.index is not None else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but only "
                f"{torch.cuda.device_count()} CUDA device(s) are present; use an "
                "index below that or device='auto'."
            )
        return resolved
    if resolved.type == "mps":
        if not _mps_available():
            raise ValueError(
                f"device={device!r} was requested but Apple MPS is not available "
                "on this machine; use device='cpu' or device='auto'."
            )
        return resolved
    raise ValueError(
        f"device={device!r} is not supported; use 'auto', 'cpu', 'cuda', "
        "'cuda:N' or 'mps'."
    )


def _mps_available():
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def device_is_available(device):
    """Whether a previously resolved device exists on this machine."""
    try:
        resolve_device(device)
    except ValueError:
        return False
    return True


def memory_of(device):
    """Bytes of memory ``device`` has in all, or None where it cannot be told.

    A CUDA device's own memory; for the CPU (and Apple MPS, which shares
    it) the machine's RAM and swap (psutil's figures when psutil is
    installed, else the RAM from ``os.sysconf``), within the process's
    address-space limit (``ulimit -v``) and the limit of the Linux control
    group (a container) it runs in, read once per process. This is what the
    device can hold at all, not what is free now: a size above it can never
    be allocated, and a size below it is left to the allocator.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type not in ("cpu", "mps"):
        return None
    return _host_memory()


@functools.lru_cache(maxsize=1)
def _host_memory():
    # Read once: every fit asks, and the figures change only by hand.
    try:
        import psutil

        total = int(psutil.virtual_memory().total + psutil.swap_memory().total)
    except (ImportError, OSError):  # psutil absent, or unable to read this system
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # not a POSIX system
            return None
    try:
        import resource  # POSIX

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]  # ulimit -v
        if limit != resource.RLIM_INFINITY:
            total = min(total, limit)
    except (ImportError, OSError, ValueError):
        pass
    for path in ("/sys/fs/cgroup/memory.max",  # cgroup v2; v1 below
                 "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as file:
                total = min(total, int(file.read()))
            break
        except (OSError, ValueError):  # absent, or "max" (no limit)
            continue
    return total if total > 0 else None


def _bytes_in_words(n_bytes):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.3g} {unit}" if unit != "bytes" else f"{int(n_bytes)} bytes"
        n_bytes /= 1024


def check_memory(n_bytes, device, what, fix):
    """Raise :class:`MemoryError` before allocating more than ``device`` holds in all.

    ``what`` names what would take the memory (the parameter that sizes it,
    with its value) and ``fix`` says what to do; both go into the message.
    Sizes that might fit are let through: only what :func:`memory_of` says
    can never be allocated is refused.
    """
    total = memory_of(device)
    if total is not None and n_bytes > total:
        device = torch.device(device)
        where = "this machine" if device.type != "cuda" else f"the GPU {device}"
        raise MemoryError(
            f"{what} would need {_bytes_in_words(n_bytes)}, more than the "
            f"{_bytes_in_words(total)} of memory {where} has; {fix}.")


def to_tensor(X, device):
    """Convert an array to a float32 tensor on ``device``, copying at most once.

    A C-contiguous, writable float32 array on the CPU is shared, not copied.
    """
    array = np.asarray(X)
    if array.dtype != np.float32 or not array.flags.c_contiguous:
        array = np.ascontiguousarray(array, dtype=np.float32)
    elif not array.flags.writeable:
        # torch refuses to wrap read-only memory (e.g. a joblib memmap) without
        # a warning; a copy is the honest alternative.
        array = array.copy()
    return torch.from_numpy(array).to(device)


def to_pinned_tensor(X):
    """Copy an array into one float32 tensor in pinned (page-locked) host memory.

    Pinned memory is what CUDA copies from asynchronously; the array is
    converted on the way, with no intermediate copy.
    """
    tensor = torch.empty(X.shape, dtype=torch.float32, pin_memory=torch.cuda.is_available())
    tensor.numpy()[...] = X
    return tensor


def seed_from_random_state(random_state):
    """Draw a 63-bit integer seed from a ``random_state`` parameter.

    ``None`` takes fresh entropy from the operating system instead of the
    global NumPy generator, so fitting never moves the global random state.
    """
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    return int(random_state)


def derive_seed(seed, *keys):
    """A seed for one stream, derived from the estimator seed and stream keys."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def make_generator(seed, device):
    """A :class:`torch.Generator` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


#: The most intra-op threads ``n_threads`` may ask for. More threads than
#: cores only slow torch down, and torch's OpenMP runtime ends the whole
#: process (a segmentation fault, or libgomp's "Thread creation failed")
#: when it cannot start the threads asked for: 20,000 did on a 2-core Linux
#: machine, 4,096 did not. 1,024 leaves room for the largest CPUs.
MAX_THREADS = 1024

_THREADS_LOCK = threading.Lock()
_threads_users = 0
_threads_saved = None
_per_thread = None


def _thread_counts_are_per_thread():
    """Whether ``torch.set_num_threads`` in one Python thread leaves the others alone.

    It does with torch's OpenMP backend (the default of the Linux, Windows
    and macOS wheels: OpenMP keeps the count per thread) and does not with
    its native thread pool. Found once by setting a count in a helper thread.
    """
    global _per_thread
    if _per_thread is None:
        before = torch.get_num_threads()
        other = 1 if before != 1 else 2
        helper = threading.Thread(target=torch.set_num_threads, args=(other,))
        helper.start()
        helper.join()
        _per_thread = torch.get_num_threads() == before
        if not _per_thread:
            torch.set_num_threads(before)
    return _per_thread


@contextlib.contextmanager
def torch_threads(n_threads):
    """Use ``n_threads`` intra-op threads for the duration of the block.

    The count is restored afterwards. Where torch keeps one count per
    thread (its default OpenMP backend), each block restores its own
    thread's count; where the count is process-wide, blocks that overlap
    from several threads share it, and the last one to end restores the
    count the first one found. ``None`` leaves it untouched; a count
    outside ``[1, MAX_THREADS]`` raises :class:`ValueError`.
    """
    global _threads_users, _threads_saved
    if n_threads is None:
        yield
        return
    if not 1 <= n_threads <= MAX_THREADS:
        # Inference reads n_threads without validating the parameters, and
        # too many threads end the process instead of raising.
        raise ValueError(
            f"n_threads must be None or an int in [1, {MAX_THREADS}], got {n_threads!r}; "
            "use at most the machine's cores (os.cpu_count()).")
    with _THREADS_LOCK:
        per_thread = _thread_counts_are_per_thread()
        previous = torch.get_num_threads()
        if not per_thread:
            if _threads_users == 0:
                _threads_saved = previous
            _threads_users += 1
        if previous != n_threads:
            torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            if per_thread:
                restore = previous
            else:
                _threads_users -= 1
                restore = _threads_saved if _threads_users == 0 else None
            if restore is not None and torch.get_num_threads() != restore:
                torch.set_num_threads(restore)


def in_parallel_worker():
    """Whether this call runs inside a joblib worker (threads or processes) or
    a Dask worker: where a parallel search runs its fits."""
    from joblib.parallel import get_active_backend

    if getattr(get_active_backend()[0], "nesting_level", 0) > 0:
        return True
    dask_distributed = sys.modules.get("distributed")
    if dask_distributed is not None:
        try:
            dask_distributed.get_worker()
            return True
        except ValueError:
            pass
    return False


_denormal = threading.local()


@contextlib.contextmanager
def flush_denormal():
    """Treat denormal floats as zero on the CPU for the duration of the block.

    Weights that decay towards zero in long fits become denormal, and CPU
    arithmetic on denormals is many times slower (a fit of 800 epochs was
    measured 13x slower by its end). The setting is the calling thread's
    (the CPU's control register); blocks nest, and the outermost one puts
    back torch's default (off) when it ends.
    """
    depth = getattr(_denormal, "depth", 0)
    if depth == 0:
        torch.set_flush_denormal(True)
    _denormal.depth = depth + 1
    try:
        yield
    finally:
        _denormal.depth = depth
        if depth == 0:
            torch.set_flush_denormal(False)


def map_location_for(device, owner):
    """The device to load a pickled model onto, warning when it falls back."""
    if device_is_available(device):
        return torch.device(device)
    warnings.warn(
        f"{owner} was fitted on {device}, which is not available here; its "
        "weights are loaded on the CPU.",
        UserWarning,
        stacklevel=3,
    )
    return torch.device("cpu")
