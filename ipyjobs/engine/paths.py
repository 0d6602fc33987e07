"""Where ipyjobs keeps its data."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

HOME_VARIABLE = "IPYJOBS_HOME"


def data_home() -> Path:
    """``$IPYJOBS_HOME`` if set, else the platform's user data folder for ipyjobs."""
    configured = os.environ.get(HOME_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_data_dir("ipyjobs", appauthor=False))
