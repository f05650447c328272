"""pytest settings for the whole tree.

The doctests of an optional module run only where its extra is installed
(``pip install -e ".[test]"`` installs them all).
"""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("dask") else ["skae/dask.py"]

# skae.to_onnx uses torch's torch.export-based exporter, from torch 2.6 on
# (the onnx extra's floor; skae itself runs on older torch): under an older
# torch the tests and doctests that export are skipped, and those that check
# the error naming the floor still runs.
_EXPORTER_FREE = {"test_an_old_torch_is_named"}


def _torch_release():
    import re

    import torch

    return tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])


def pytest_collection_modifyitems(config, items):
    if _torch_release() >= (2, 6):
        return
    import pytest

    skip = pytest.mark.skip(reason="to_onnx needs torch 2.6 or later: pip install 'skae[onnx]'")
    for item in items:
        path = item.nodeid.split("::")[0]
        exports = (path == "tests/test_onnx.py" and item.originalname not in _EXPORTER_FREE) \
            if hasattr(item, "originalname") else (
                path in ("skae/onnx.py", "skae/_onnx.py") or item.name.endswith(".to_onnx"))
        if exports:
            item.add_marker(skip)
