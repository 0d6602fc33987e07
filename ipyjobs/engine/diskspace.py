"""One clear error for a full disk, wherever it happens (outputs, downloads, temp files).

``OSError(ENOSPC)`` says only "No space left on device"; a user needs to know which disk, how
full it is, and what to do. :func:`no_space_left` turns the bare error into :class:`NoSpaceLeft`,
which names the folder, the mount point and the bytes free.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from .errors import JobError


class NoSpaceLeft(JobError, OSError):
    """The disk holding a folder is full. Also an ``OSError`` (errno ``ENOSPC``)."""

    def __init__(self, message: str) -> None:
        JobError.__init__(self, message)
        self.errno = errno.ENOSPC
        self.strerror = message

    def __str__(self) -> str:
        return str(self.args[0])


def is_no_space(exc: BaseException) -> bool:
    """True for an ``OSError`` that means the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def mount_point(path: str | os.PathLike[str]) -> Path:
    """The mount point of the file system holding ``path`` (its nearest existing ancestor)."""
    current = Path(path).resolve()
    while not current.exists() and current != current.parent:
        current = current.parent
    while not os.path.ismount(current):
        current = current.parent
    return current


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes free to this user on the disk holding ``path`` (its nearest existing ancestor)."""
    current = Path(path).resolve()
    while not current.exists() and current != current.parent:
        current = current.parent
    return shutil.disk_usage(current).free


def no_space_left(
    path: str | os.PathLike[str], what: str = "", needed: int | None = None
) -> NoSpaceLeft:
    """A :class:`NoSpaceLeft` for ``path``: "no space left on <mount> (<folder>): N bytes free".

    ``what`` says what was being written (``"the transcript of a.wav"``); ``needed`` adds how
    many bytes it needed. Raise it ``from`` the original ``OSError`` to keep the cause.
    """
    folder = Path(path)
    free = free_bytes(folder)
    message = f"no space left on {mount_point(folder)} ({folder}): {free:,} bytes free"
    if needed is not None:
        message += f", {needed:,} needed"
    if what:
        message = f"{what}: {message}"
    return NoSpaceLeft(message + ". Free some space there, or write to another disk.")
