"""ipyjobs: run long model-backed jobs from a Jupyter notebook.

The public API is re-exported here; ``ipyjobs.engine`` holds the job system itself.
"""

import logging as _logging

from .engine import *  # noqa: F403
from .engine import __all__ as __all__

# Warnings go to the application's logging set-up, never to a cell's stderr through logging's
# last-resort handler.
_logging.getLogger("ipyjobs").addHandler(_logging.NullHandler())

__version__ = "0.1.0"
