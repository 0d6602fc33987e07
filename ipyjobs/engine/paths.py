"""Where ipyjobs keeps its data."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

HOME_VARIABLE = "IPYJOBS_HOME"

_resolved: dict[str, Path] = {}


def data_home() -> Path:
    """``$IPYJOBS_HOME`` if set, else the platform's user data folder for ipyjobs.

    A relative ``$IPYJOBS_HOME`` is made absolute the first time it is seen, so a later
    ``os.chdir`` does not move the data folder.
    """
    configured = os.environ.get(HOME_VARIABLE)
    if not configured:
        return Path(platformdirs.user_data_dir("ipyjobs", appauthor=False))
    home = _resolved.get(configured)
    if home is None:
        home = _resolved[configured] = Path(configured).expanduser().absolute()
    return home
