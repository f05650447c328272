"""The documentation: every public name has a page, and the site builds offline.

The build test runs ``sphinx-build -W`` (warnings are errors) on a copy of
``docs/`` and ``examples/`` in a temporary folder, with every gallery example
executed in quick mode and any network access made to fail, so that it proves
the build needs no download. It needs the ``docs`` extra and is skipped
without it; ``-m "not docs"`` deselects it.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import skae

ROOT = Path(__file__).parents[1]
DOCS_PACKAGES = ["sphinx", "numpydoc", "sphinx_gallery", "pydata_sphinx_theme", "matplotlib"]


def test_api_reference_lists_every_public_name():
    api = (ROOT / "docs" / "api.rst").read_text()
    listed = set(re.findall(r"^   ([A-Za-z_][\w.]*)$", api, flags=re.M))
    public = {name for name in skae.__all__ if not name.startswith("__")}
    assert public <= listed, f"missing from docs/api.rst: {sorted(public - listed)}"


def test_every_user_guide_page_is_in_its_toctree():
    guide = ROOT / "docs" / "user_guide"
    toctree = (guide / "index.rst").read_text()
    pages = {path.stem for path in guide.glob("*.rst")} - {"index"}
    assert {page for page in pages if f"   {page}\n" not in toctree} == set()


@pytest.mark.docs
@pytest.mark.skipif(any(importlib.util.find_spec(name) is None for name in DOCS_PACKAGES),
                    reason='needs the docs extra: pip install -e ".[docs]"')
def test_docs_build_offline_with_warnings_as_errors(tmp_path):
    for folder in ["docs", "examples", "benchmarks"]:
        shutil.copytree(ROOT / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("_build", "auto_examples", "generated",
                                                      "sg_execution_times.rst", "*.png"))
    unreachable = "http://127.0.0.1:9"  # any download attempt fails at once
    env = {**os.environ, "SKAE_EXAMPLE_QUICK": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "HTTP_PROXY": unreachable, "HTTPS_PROXY": unreachable, "NO_PROXY": "",
           "http_proxy": unreachable, "https_proxy": unreachable, "no_proxy": ""}
    env.pop("SKAE_DOCS_ONLINE_INVENTORIES", None)
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(tmp_path / "docs"), str(tmp_path / "html")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    html = tmp_path / "html"
    methods = (html / "generated" / "skae.VariationalAutoencoder.html").read_text()
    for method in ["fit", "partial_fit", "transform", "sample", "score_samples"]:
        assert f'id="skae.VariationalAutoencoder.{method}"' in methods
    examples = sorted(path.stem for path in (ROOT / "examples").glob("plot_*.py"))
    assert examples == sorted(path.stem for path in (html / "auto_examples").glob("plot_*.html"))
