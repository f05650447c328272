"""The documentation: every public name has a page, and the site builds offline.

The build runs ``sphinx-build -W`` (warnings are errors) on a copy of
``docs/`` and ``examples/`` in a temporary folder, with every gallery example
executed in quick mode and any network access made to fail, so that it proves
the build needs no download; the tests marked ``docs`` then read the built
site: it loads no script or stylesheet from elsewhere, renders its formulas
with its own MathJax, and its class pages list their methods. They need the
``docs`` extra and are skipped without it; ``-m "not docs"`` deselects them.
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
DOCS_PACKAGES = ["sphinx", "numpydoc", "sphinx_gallery", "pydata_sphinx_theme", "matplotlib",
                 "sphinx-mathjax-offline", "bs4"]


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


needs_docs_extra = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in DOCS_PACKAGES),
    reason='needs the docs extra: pip install -e ".[docs]"')


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    """The site, built once for every test below: offline, warnings as errors."""
    tmp_path = tmp_path_factory.mktemp("docs")
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
    return tmp_path / "html"


def soup(path):
    from bs4 import BeautifulSoup  # installed with pydata-sphinx-theme

    return BeautifulSoup(path.read_text(), "html.parser")


@pytest.mark.docs
@needs_docs_extra
def test_docs_build_offline_with_warnings_as_errors(html):
    methods = (html / "generated" / "skae.VariationalAutoencoder.html").read_text()
    for method in ["fit", "partial_fit", "transform", "sample", "score_samples"]:
        assert f'id="skae.VariationalAutoencoder.{method}"' in methods
    examples = sorted(path.stem for path in (ROOT / "examples").glob("plot_*.py"))
    assert examples == sorted(path.stem for path in (html / "auto_examples").glob("plot_*.html"))


@pytest.mark.docs
@needs_docs_extra
def test_no_page_loads_a_script_or_stylesheet_from_elsewhere(html):
    """Offline, a page works only with what the site itself holds."""
    external = re.compile(r"^(https?:)?//")
    loaded = []
    for page in html.rglob("*.html"):
        document = soup(page)
        loaded += [(page.name, tag["src"]) for tag in document.find_all("script", src=True)
                   if external.match(tag["src"])]
        loaded += [(page.name, tag["href"]) for tag in document.find_all("link", href=True)
                   if "stylesheet" in tag.get("rel", []) and external.match(tag["href"])]
    assert loaded == []


@pytest.mark.docs
@needs_docs_extra
def test_math_renders_with_the_sites_own_mathjax(html):
    page = html / "user_guide" / "variational.html"
    document = soup(page)
    assert document.find(class_="math"), "the page has no formula left to render"
    scripts = [tag["src"] for tag in document.find_all("script", src=True)
               if "mathjax" in tag["src"].lower()]
    assert scripts, "no MathJax script on a page with formulas"
    for src in scripts:
        local = (page.parent / src.split("?")[0]).resolve()
        assert local.is_file() and local.stat().st_size > 100_000, src


@pytest.mark.docs
@needs_docs_extra
def test_class_page_has_a_methods_table_and_lists_them_in_its_sidebar(html):
    """As scikit-learn's API pages: a summary table of the methods, and the
    page's sidebar ("On this page") shows them, not folded away."""
    document = soup(html / "generated" / "skae.AutoencoderTransformer.html")
    wanted = {"fit", "transform", "inverse_transform", "score_samples", "partial_fit"}

    rubric = document.find("p", class_="rubric", string="Methods")
    assert rubric is not None, "no Methods summary on the page"
    table = rubric.find_next("table", class_="autosummary")
    in_table = {link["href"].rpartition(".")[2] for link in table.find_all("a", href=True)}
    assert wanted <= in_table

    sidebar = document.find("nav", id="pst-page-toc-nav")
    shown = set()
    for link in sidebar.find_all("a", href=True):
        # The theme folds away every nested list not marked to be shown.
        if all("pst-show_toc_level" in ul.get("class", []) for ul in link.find_parents("ul")):
            shown.add(link["href"].rpartition(".")[2])
    assert wanted <= shown, f"the sidebar shows only {sorted(shown)}"
