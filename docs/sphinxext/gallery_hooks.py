"""sphinx-gallery hooks for skae's examples."""

import os
import tempfile
from pathlib import Path

# The examples save their figure as a script run would; in a docs build the
# gallery scrapes the open figures instead, so the saved copy goes to a
# scratch folder rather than into examples/.
_FIGURE_DIR = Path(tempfile.gettempdir()) / "skae-docs-example-figures"


def set_example_output(gallery_conf, fname, when=None):
    """``reset_modules`` hook: point ``SKAE_EXAMPLE_OUTPUT`` at a scratch file."""
    _FIGURE_DIR.mkdir(parents=True, exist_ok=True)
    os.environ["SKAE_EXAMPLE_OUTPUT"] = str(_FIGURE_DIR / f"{Path(fname).stem}.png")
