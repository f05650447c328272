"""Sphinx configuration for skae's documentation.

Build offline with ``python -m sphinx -W -b html docs docs/_build/html``; the
gallery runs every example. ``SKAE_EXAMPLE_QUICK=1`` runs them with small
settings (a smoke build in a couple of minutes on 2 cores, figures not
meaningful). Nothing is downloaded: see ``sphinxext/offline_inventories.py``.
"""

import os
import sys
import tempfile
from pathlib import Path

import skae

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "sphinxext"))

from markdown_tables import markdown_to_rst  # noqa: E402
from offline_inventories import intersphinx_mapping as offline_mapping  # noqa: E402

# The Performance page includes benchmarks/README.md, converted here so that
# the tables and their method have one source.
(HERE / "generated").mkdir(exist_ok=True)
(HERE / "generated" / "benchmarks.inc").write_text(
    markdown_to_rst((HERE.parent / "benchmarks" / "README.md").read_text()))


def _cli_help():
    """The ``--help`` of ``skae`` and of each command, as literal blocks."""
    from skae._cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    blocks = [("skae --help", parser.format_help())]
    blocks += [(f"skae {name} --help", command.format_help())
               for name, command in commands.items()]
    text = ""
    for title, help_text in blocks:
        text += f"``{title}``\n\n::\n\n" + "".join(
            f"    {line}\n" if line else "\n" for line in help_text.splitlines()) + "\n"
    return text


# A fixed width, so that the page does not depend on the terminal that built it.
os.environ["COLUMNS"] = "90"
(HERE / "generated" / "cli_help.inc").write_text(_cli_help())

project = "skae"
copyright = "2026, the skae developers"
release = skae.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    # MathJax from the docs extra, copied into _static: formulas render offline.
    "sphinx-mathjax-offline",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
autodoc_typehints = "none"
# A summary table of every method on each class page, as scikit-learn's API
# pages have (the methods' own entries follow, listed in the page's sidebar).
numpydoc_show_class_members = True
numpydoc_class_members_toctree = False
templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py.md5",
                    "auto_examples/*.zip", "sphinxext"]

# Examples run one torch thread each, as the estimators do by default.
os.environ.setdefault("OMP_NUM_THREADS", "1")

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "doc_module": ("skae",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skae": None},
    "reset_modules": ("matplotlib", "gallery_hooks.set_example_output"),
    "remove_config_comments": True,
    "download_all_examples": False,
    "abort_on_example_error": True,
    # No remote notebooks or binder: nothing is fetched.
    "show_memory": False,
    # Its execution-times page loads scripts from a CDN.
    "write_computation_times": False,
}

if os.environ.get("SKAE_DOCS_ONLINE_INVENTORIES") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "pandas": ("https://pandas.pydata.org/docs", None),
        "joblib": ("https://joblib.readthedocs.io/en/stable", None),
        "dask_ml": ("https://ml.dask.org", None),
    }
else:
    intersphinx_mapping = offline_mapping(Path(tempfile.gettempdir()) / "skae-docs-inventories")

html_theme = "pydata_sphinx_theme"
html_title = f"skae {release}"
html_theme_options = {
    "navigation_with_keys": False,
    # The theme's default would fetch a version switcher and icons; keep it local.
    "icon_links": [],
    # The page's sidebar lists a class page's methods and attributes (the
    # entries one level below the class), as scikit-learn's API pages do.
    "show_toc_level": 2,
}
# In that list, "fit" rather than "AutoencoderTransformer.fit".
toc_object_entries_show_parents = "hide"
