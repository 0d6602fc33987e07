"""One file's outputs on disk: claimed, staged, committed with the done-marker, or nothing.

For each input file (outputs ``<stem>.<format>``, marker ``<stem>.ipyjobs.json``), in a worker
thread, :func:`process_file`:

1. **claims** the file: an exclusive ``flock`` on ``.ipyjobs-<key>.lock`` beside the outputs, so
   two kernels on one folder never do a file twice (the other one gets ``busy``, and later waits
   for the claim and finds the file done). The kernel drops the lock when its holder dies.
2. checks the marker again (another job may have finished the file meanwhile);
3. removes what a killed run left for this file (its staging folder), which is safe because the
   claim is held, then stages the new outputs in a fresh ``.ipyjobs-<key>.tmp/`` folder beside
   them. Staged names are short: only the final names have to fit the file system;
4. **commits**: the marker is staged too, then each output is renamed into place and the marker
   last. Any failure removes what was staged and the outputs renamed so far: a failed file
   leaves no output, and a file with a valid marker is never redone.

Every ``Exception`` of a file's work (``OSError`` of any kind included) becomes a ``failed``
outcome with a one-line cause (:mod:`.causes`). On cancel (``Cancelled``) the staged files
are removed and the claim released as the error passes on.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..engine import current_token
from .causes import describe

MARKER_SUFFIX = ".ipyjobs.json"
#: How often a job waiting for another job's claim looks again, in seconds.
CLAIM_POLL = 0.1
#: ``flock`` errors of file systems that have no locks (some network and FUSE ones).
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


def _key(stem: Path) -> str:
    return hashlib.sha256(os.fsencode(stem.name)).hexdigest()[:16]


def lock_path(stem: Path) -> Path:
    return stem.with_name(f".ipyjobs-{_key(stem)}.lock")


def staging_path(stem: Path) -> Path:
    return stem.with_name(f".ipyjobs-{_key(stem)}.tmp")


def output_file(stem: Path, fmt: str) -> Path:
    """``<stem>.<fmt>`` (``with_suffix`` would eat a dotted stem)."""
    return stem.with_name(f"{stem.name}.{fmt}")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


@dataclass
class DoneMarker:
    """A small JSON file committed with a file's outputs: with the same fingerprint and all
    outputs present, the file is skipped next time."""

    stem: Path
    fingerprint: str

    @property
    def path(self) -> Path:
        """``<stem>.ipyjobs.json``; when that name is longer than the file system allows (the
        outputs' names may still fit), a shortened name ending in the stem's hash."""
        name = self.stem.name + MARKER_SUFFIX
        limit = _name_max(self.stem.parent) if len(os.fsencode(name)) > 128 else 255
        if len(os.fsencode(name)) <= limit:
            return self.stem.with_name(name)
        keep = limit - len(MARKER_SUFFIX) - 18
        short = os.fsencode(self.stem.name)[:keep].decode("utf-8", "ignore")
        return self.stem.with_name(f"{short}~{_key(self.stem)}{MARKER_SUFFIX}")

    def is_done(self) -> bool:
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        return record.get("fingerprint") == self.fingerprint and all(
            Path(p).exists() for p in record.get("outputs", [])
        )


class FileClaim:
    """An exclusive claim on one output stem, across threads and processes (``flock``).

    The lock file is removed on release; an acquirer checks that the file it locked is still
    the one at the path (else a releaser removed it meanwhile, and it tries again). A lock file
    left by a killed process is just taken over.
    """

    def __init__(self, stem: Path) -> None:
        self.path = lock_path(stem)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    os.close(fd)
                    raise
                self._fd = fd  # a file system without locks: the claim is this process's only
                return True
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)  # removed by its releaser after we opened it: take the new one

    def acquire(self, poll: float = CLAIM_POLL) -> None:
        """Wait for the claim; the job's token is checked between tries (cancel raises)."""
        token = current_token()
        while not self.try_acquire():
            if token is not None:
                token.check()
            time.sleep(poll)

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked: see the class docstring
            os.close(self._fd)
            self._fd = None


class Staging:
    """The hidden folder a file's outputs are written in before they are committed."""

    def __init__(self, stem: Path, formats: Iterable[str]) -> None:
        self.stem = stem
        self.formats = tuple(formats)
        self.folder = staging_path(stem)

    def output(self, fmt: str) -> Path:
        """Where the work writes format ``fmt`` (``<folder>/out.<fmt>``)."""
        return self.folder / f"out.{fmt}"

    @property
    def base(self) -> Path:
        """``<folder>/out``, for programs that add the format's suffix themselves."""
        return self.folder / "out"

    def commit(self, marker: DoneMarker, details: dict[str, Any]) -> list[Path]:
        """Rename every staged output into place, then the marker; on failure, undo."""
        finals = [output_file(self.stem, fmt) for fmt in self.formats]
        record = {"fingerprint": marker.fingerprint, "outputs": [str(p) for p in finals]}
        staged_marker = self.folder / "marker.json"
        staged_marker.write_text(json.dumps({**record, **details}))
        moved: list[Path] = []
        try:
            for fmt, final in zip(self.formats, finals, strict=True):
                os.replace(self.output(fmt), final)
                moved.append(final)
            os.replace(staged_marker, marker.path)
        except BaseException:
            for path in moved:
                path.unlink(missing_ok=True)
            raise
        return finals


@contextmanager
def _staged(stem: Path, formats: Iterable[str]) -> Iterator[Staging]:
    staging = Staging(stem, formats)
    shutil.rmtree(staging.folder, ignore_errors=True)  # a killed run's debris
    staging.folder.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging.folder, ignore_errors=True)


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file, as plain data (an executor may run the work elsewhere)."""

    status: Literal["done", "failed", "skipped", "busy"]
    """``skipped``: found done after claiming it (another job did it); ``busy``: another job
    holds its claim."""
    outputs: tuple[str, ...] = ()
    error: str | None = None
    """One line for the item error."""
    log: str | None = None
    """The full text behind ``error`` (a program's stderr, a traceback), for the job's log."""
    details: dict[str, Any] = field(default_factory=dict)


def process_file(
    source: Path,
    stem: Path,
    fingerprint: str,
    formats: Iterable[str],
    work: Callable[[Staging], dict[str, Any]],
    wait: bool = False,
) -> FileOutcome:
    """Claim, stage, run ``work(staging)`` (it writes ``staging.output(fmt)`` for each format
    and returns details for the marker), commit. In a worker thread; see the module docstring.

    ``wait``: wait for another job's claim instead of returning ``busy``.
    """
    claim = FileClaim(stem)
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        if wait:
            claim.acquire()
        elif not claim.try_acquire():
            return FileOutcome("busy")
        try:
            marker = DoneMarker(stem, fingerprint)
            if marker.is_done():
                return FileOutcome("skipped")
            with _staged(stem, formats) as staging:
                details = work(staging)
                outputs = staging.commit(marker, details)
        finally:
            claim.release()
    except Exception as exc:  # a cancel (``Cancelled``, a BaseException) passes through
        error, log = describe(exc, stem.parent, f"outputs of {source.name}")
        return FileOutcome("failed", error=error, log=log)
    return FileOutcome("done", tuple(str(p) for p in outputs), details=details)


def already_done(stem: Path, fingerprint: str) -> bool:
    """Whether the file's marker is valid (it is then skipped without being claimed). A run
    killed in the instant between its commit and its release left its claim or staging folder:
    those are removed here, under the claim, if no one holds it."""
    if not DoneMarker(stem, fingerprint).is_done():
        return False
    if os.path.lexists(lock_path(stem)) or os.path.lexists(staging_path(stem)):
        claim = FileClaim(stem)
        try:
            if claim.try_acquire():
                shutil.rmtree(staging_path(stem), ignore_errors=True)
                claim.release()
        except OSError:  # a folder now read-only: the debris stays, the file is still done
            pass
    return True
