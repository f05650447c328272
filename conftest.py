"""pytest settings for the whole tree.

The doctests of an optional module run only where its extra is installed
(``pip install -e ".[test]"`` installs them all).
"""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("dask") else ["skae/dask.py"]
