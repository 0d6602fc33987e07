"""Errors of the model manager. Each message names the problem and the fix."""

from __future__ import annotations

from ..engine import JobError
from ..engine.diskspace import NoSpaceLeft


class ModelError(JobError):
    """Base class of model catalog, store and download errors."""


class UnknownModel(ModelError, KeyError):
    """No catalog entry has this name; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class InvalidModelEntry(ModelError, ValueError):
    """A catalog entry (usually a user's own) is malformed: bad file name, hash, URL or size."""


class CorruptStoreFile(ModelError):
    """A file of the model store that cannot be rebuilt (your own entries) is unreadable; the
    message names it and says how to fix it."""


class ModelInUse(ModelError):
    """The model cannot be deleted while a download or a job uses it."""


class OfflineError(ModelError):
    """The model is missing and the network is switched off (``IPYJOBS_OFFLINE``)."""


class DownloadError(ModelError):
    """A download failed for good (after retries, or on an error retrying cannot fix)."""


class ChecksumMismatch(DownloadError):
    """The downloaded bytes do not have the expected SHA-256; the file was deleted."""


class NotEnoughSpace(DownloadError, NoSpaceLeft):
    """The disk has less free space than the download needs, or filled up during it. Also a
    :class:`~ipyjobs.engine.diskspace.NoSpaceLeft` (and an ``OSError`` with ``ENOSPC``), so one
    ``except NoSpaceLeft`` catches every full disk."""


class NotTheModel(DownloadError):
    """The server sent something that is clearly not the model (an HTML page, another size);
    nothing was kept."""
