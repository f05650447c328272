"""The package namespace: lazy names and submodules, and a light ``import skae``."""

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import skae

ROOT = Path(skae.__file__).resolve().parent.parent
PUBLIC_SUBMODULES = sorted(info.name for info in pkgutil.iter_modules(skae.__path__)
                           if not info.name.startswith("_"))


def _run(code):
    """Run ``code`` in a fresh interpreter that imports this tree's skae."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_skae_leaves_torch_unimported():
    loaded = _run("import json, sys, skae; "
                  "print(json.dumps([skae.__file__, 'torch' in sys.modules]))")
    assert Path(loaded[0]).resolve() == Path(skae.__file__).resolve()
    assert loaded[1] is False


def test_public_submodules_are_found():
    assert {"dask", "model_selection", "utils"} <= set(PUBLIC_SUBMODULES)


@pytest.mark.parametrize("name", PUBLIC_SUBMODULES)
def test_every_public_submodule_is_an_attribute_without_its_own_import(name):
    # Issue 16: ``import skae; skae.model_selection.smallest_within`` raised
    # AttributeError. A fresh interpreter: this one has imported them all.
    found = _run(f"import json, sys, skae; before = 'skae.{name}' in sys.modules; "
                 f"module = skae.{name}; print(json.dumps([before, module.__name__, "
                 f"'{name}' in dir(skae), module is sys.modules['skae.{name}']]))")
    assert found == [False, f"skae.{name}", True, True]


def test_model_selection_reachable_as_the_issue_wrote_it():
    assert _run("import json, skae; "
                "print(json.dumps(callable(skae.model_selection.smallest_within)))")


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        skae.nosuch  # noqa: B018
    assert not hasattr(skae, "_engine_not_there")


def test_every_name_dir_lists_resolves():
    # inspect.getmembers (skae.utils.all_estimators) reads each of them.
    names = _run("import json, skae; "
                 "print(json.dumps([n for n in dir(skae) if not hasattr(skae, n)]))")
    assert names == []
