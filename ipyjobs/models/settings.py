"""Environment switches of the model manager, read when used (so a notebook can change them)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from .errors import InvalidModelEntry

MIRROR_VARIABLE = "IPYJOBS_MODEL_MIRROR"
OFFLINE_VARIABLE = "IPYJOBS_OFFLINE"

_TRUE = {"1", "true", "yes", "on"}


def offline() -> bool:
    """Whether the network is forbidden (``IPYJOBS_OFFLINE=1``)."""
    return os.environ.get(OFFLINE_VARIABLE, "").strip().lower() in _TRUE


def mirror() -> str | None:
    """The mirror base URL (``IPYJOBS_MODEL_MIRROR``), without a trailing slash, or ``None``.

    Raises ``InvalidModelEntry`` naming the variable when it is not an http(s) URL.
    """
    value = os.environ.get(MIRROR_VARIABLE, "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidModelEntry(
            f"{MIRROR_VARIABLE}={value!r} is not a valid mirror: give a base URL such as "
            "'http://models.example.org/ipyjobs' (http or https, with a host)"
        )
    return value.rstrip("/")
