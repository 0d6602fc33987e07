"""ipyjobs: run long model-backed jobs from a Jupyter notebook.

The public API is re-exported here; ``ipyjobs.engine`` holds the job system itself.
"""

from .engine import *  # noqa: F403
from .engine import __all__ as __all__

__version__ = "0.1.0"
