"""``python -m skae``: the ``skae`` command line (see :mod:`skae._cli`)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
