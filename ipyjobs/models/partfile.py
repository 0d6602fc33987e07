"""The partial download on disk: ``<name>.part`` and its ``<name>.part.json`` sidecar.

Why: a model download must survive retries, pauses, cancels and kernel restarts without fetching
a byte twice, and must never be mistaken for a finished file. The part file holds the bytes at
their final offsets, so parallel segments need no merging; the sidecar says which byte ranges are
really there, which version of the server's file they came from (the validator sent back in
``If-Range``) and what the result must hash to.

Consistency rule: the sidecar never claims bytes that are not on disk. It is written only after
an ``fdatasync`` of the part file, from segment offsets snapshotted before that sync. After a
crash the part file may hold more than the sidecar says, never less. Syncing every few dozen MB
while the transfer runs also means the final ``fsync`` before the rename has little left to do.

Hashing follows the writes: a batch that lands exactly at the hashed position is hashed from
memory while it is written (always the case for a single stream, so nothing is read back);
bytes of later pieces, and bytes found on disk when resuming, are read back once they are
contiguous with the hashed prefix (parallel pieces are used when the network, not the machine,
is the limit, so the reading costs nothing that matters). All hashing happens on one thread,
writing and syncing in worker threads; the event loop only schedules. The I/O itself is in
:mod:`.diskio`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anyio

from ..engine.threads import run_in_thread
from .diskio import HASH_STEP, DiskFile, replace_text

log = logging.getLogger(__name__)

#: Sync the part file and save the sidecar after this many new bytes ...
SYNC_BYTES = 48 << 20
#: ... or after this many seconds with unsynced bytes.
SYNC_SECONDS = 1.0
_SIDECAR_VERSION = 1


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def sidecar_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")


def partial_files(dest: Path) -> list[Path]:
    """Every file a partial download of ``dest`` may leave: the part file, its sidecar, and the
    sidecar's temporary copies (:func:`~.diskio.replace_text`; left if a process died while
    writing one)."""
    sidecar = sidecar_path(dest)
    return [part_path(dest), sidecar, *sidecar.parent.glob(f"{glob.escape(sidecar.name)}.*.tmp")]


@dataclass
class Segment:
    """Bytes ``[start, end)`` of the file, of which the first ``done`` are on disk.

    ``end`` is ``None`` for a body of unknown length until it has ended.
    """

    start: int
    end: int | None
    done: int = 0

    @property
    def position(self) -> int:
        """The next byte to fetch."""
        return self.start + self.done

    @property
    def complete(self) -> bool:
        return self.end is not None and self.position >= self.end


@dataclass
class Sidecar:
    """What the sidecar file records; ``segments`` are sorted and cover the file without gaps."""

    url: str
    sha256: str | None
    size: int | None  # the size the caller expected
    total: int | None  # the size the server announced (None: unknown)
    etag: str | None = None
    last_modified: str | None = None
    segments: list[Segment] = field(default_factory=list)

    @property
    def present(self) -> int:
        """Bytes on disk."""
        return sum(segment.done for segment in self.segments)

    @property
    def validator(self) -> str | None:
        """What to send in ``If-Range``: a strong ETag, else Last-Modified (weak ETags never
        match for ranges)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def contiguous(self) -> int:
        """End of the prefix of the file that is entirely on disk."""
        for segment in self.segments:
            if not segment.complete:
                return segment.position
        return max((segment.position for segment in self.segments), default=0)

    def to_json(self) -> str:
        data = asdict(self)
        data["segments"] = [[s.start, s.end, s.done] for s in self.segments]
        data["version"] = _SIDECAR_VERSION
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Sidecar:
        data = json.loads(text)
        if data.pop("version", None) != _SIDECAR_VERSION:
            raise ValueError("unknown sidecar version")
        data["segments"] = [
            Segment(int(start), _int_or_none(end), int(done))
            for start, end, done in data["segments"]
        ]
        return cls(**data)


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def read_sidecar(dest: Path) -> Sidecar | None:
    """The sidecar of ``dest``'s partial download, or ``None`` if absent or unreadable."""
    try:
        return Sidecar.from_json(sidecar_path(dest).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable %s: %s", sidecar_path(dest), exc)
        return None


class _Signal:
    """Wakes every task waiting at the moment ``notify()`` is called."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class PartFile:
    """The part file of one download, open for writing, with its sidecar state and hash.

    Methods are called on the event loop; blocking work goes to worker threads, in steps small
    enough that a cancel never waits long. On cancel, callers run :meth:`sync` shielded, which
    leaves the part file and the sidecar consistent for the next attempt.
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.path = part_path(dest)
        self.sidecar = sidecar_path(dest)
        self.state: Sidecar | None = None
        self._file: DiskFile | None = None
        self._hasher: ThreadPoolExecutor | None = None  # the one thread that hashes
        self._sync_lock = anyio.Lock()
        self._changed = _Signal()  # bytes were written
        self._forget_bytes()

    def _forget_bytes(self) -> None:
        self._hash = hashlib.sha256()
        self._hashed = 0  # the hash covers bytes [0, _hashed)
        self._unsynced = 0  # bytes written since the last sync
        self._dropped = 0  # bytes [0, _dropped) were dropped from the page cache

    @property
    def file(self) -> DiskFile:
        assert self._file is not None, "the part file is not open"
        return self._file

    # -- opening and planning ----------------------------------------------------------------

    def open(self, url: str, sha256: str | None, size: int | None) -> Sidecar | None:
        """Open the part file, adopting the partial download found on disk if it belongs to
        this transfer (same URL, hash and size, and the file as long as the sidecar says);
        otherwise delete what is there. Returns the adopted state."""
        state = read_sidecar(self.dest)
        if state is not None and (
            (state.url, state.sha256) != (url, sha256) or (size and state.size != size)
        ):
            state = None
        if state is not None:
            length = self.path.stat().st_size if self.path.exists() else -1
            if any(segment.position > length for segment in state.segments):
                log.warning("%s is shorter than its sidecar says; starting over", self.path)
                state = None
        if state is None:
            self.remove()
        self._file = DiskFile(self.path)
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="ipyjobs-hash")
        self.state = state
        return state

    def start(self, state: Sidecar) -> None:
        """Begin a fresh download described by ``state``: empty the part file (sized to the
        total when known, so syncs never change its length), reset the hash, save the sidecar."""
        self.file.truncate(0)
        if state.total:
            self.file.truncate(state.total)
        self.state = state
        self._forget_bytes()
        replace_text(self.sidecar, state.to_json())

    def reset(self) -> None:
        """Forget everything received: the next pass starts from byte 0."""
        self.state = None
        self._forget_bytes()
        self.file.truncate(0)
        self.sidecar.unlink(missing_ok=True)

    # -- writing, hashing, syncing -----------------------------------------------------------

    def hash_soon(self, offset: int, data: memoryview) -> Future[None]:
        """Hash ``data``, the bytes at ``offset``, from memory on the hash thread if they
        continue the hashed prefix when their turn comes (else they are read back later). Keep
        ``data`` unchanged until the future is done."""
        assert self._hasher is not None
        return self._hasher.submit(self._hash_from_memory, offset, data)

    async def write(self, offset: int, data: memoryview, hashing: Future[None]) -> None:
        """Write ``data`` at ``offset`` from a worker thread; returns once ``hashing`` (its
        :meth:`hash_soon`) is done too, so the caller may reuse ``data``. ``data`` is laid out in
        memory like the file (see :class:`~.diskio.DiskFile`). :meth:`count` it afterwards."""
        await run_in_thread(self._write_blocking, offset, data, hashing)

    def _write_blocking(self, offset: int, data: memoryview, hashing: Future[None]) -> None:
        try:
            self.file.write(data, offset)
        finally:
            hashing.result()

    async def drop_hash(self, hashing: Future[None]) -> None:
        """Give up a :meth:`hash_soon` whose bytes are not written; returns once their buffer
        may be reused."""
        if not hashing.cancel():
            await run_in_thread(hashing.result)

    def count(self, segment: Segment, written: int) -> None:
        """``written`` more bytes of ``segment`` are on disk."""
        segment.done += written
        self._unsynced += written
        self._changed.notify()

    # Hashing happens on the one hash thread, in the order it is asked for, so the hash and
    # ``_hashed`` need no lock: bytes are hashed from memory if they continue the prefix when
    # their turn comes, otherwise read back from disk once the prefix reaches them.

    def _hash_from_memory(self, offset: int, data: memoryview) -> None:
        if self._hashed == offset:
            self._hash.update(data)
            self._hashed += len(data)

    async def follow_hash(self) -> None:
        """Keep hashing the contiguous prefix as it grows; runs until cancelled."""
        assert self.state is not None
        while True:
            target = self.state.contiguous()
            if self._hashed < target:
                await self._hash_from_disk(target)
            else:
                await self._changed.wait()

    async def _hash_from_disk(self, target: int) -> None:
        """Hash up to ``target`` from disk, in steps of ``HASH_STEP`` (a cancel waits for one)."""
        while self._hashed < target:
            step = min(target, self._hashed + HASH_STEP)
            await run_in_thread(self._hash_from_disk_blocking, step)

    def _hash_from_disk_blocking(self, target: int) -> None:
        assert self._hasher is not None
        self._hasher.submit(self._read_back, target).result()

    def _read_back(self, target: int) -> None:
        if self._hashed < target:
            self.file.hash_range(self._hash, self._hashed, target)
            self._hashed = target

    async def keep_synced(self) -> None:
        """Sync and save the sidecar every ``SYNC_BYTES`` or ``SYNC_SECONDS``; runs until
        cancelled."""
        while True:
            with anyio.move_on_after(SYNC_SECONDS):
                while self._unsynced < SYNC_BYTES:
                    await self._changed.wait()
            if self._unsynced:
                await self.sync()

    async def sync(self) -> None:
        """Make the bytes written so far durable, then record them in the sidecar."""
        if self.state is None or self._file is None:
            return
        async with self._sync_lock:
            text, pending = self.state.to_json(), self._unsynced
            await run_in_thread(self._sync_blocking, text)
            self._unsynced -= pending

    def _sync_blocking(self, text: str) -> None:
        self.file.sync()
        replace_text(self.sidecar, text)
        # Synced and hashed bytes are not needed in memory: dropping what the page cache holds
        # of them keeps a multi-GB download from pushing out everything else.
        hashed = self._hashed
        self.file.drop_cache(self._dropped, hashed)
        self._dropped = max(self._dropped, hashed)

    # -- the end -------------------------------------------------------------------------------

    async def finish(self) -> tuple[str, int]:
        """Hash what is not hashed yet, trim and fsync the part file; return (sha256, size)."""
        assert self.state is not None
        size = self.state.contiguous()
        await self._hash_from_disk(size)
        await run_in_thread(self._trim_and_fsync, size)
        return self._hash.hexdigest(), size

    async def read_start(self, count: int) -> bytes:
        """The first ``count`` bytes of the part file (to recognise what it is)."""
        return await run_in_thread(os.pread, self.file.fd, count, 0)

    def _trim_and_fsync(self, size: int) -> None:
        if self.file.size() != size:
            self.file.truncate(size)
        os.fsync(self.file.fd)

    async def commit(self) -> None:
        """Atomically move the finished part file to ``dest`` and drop the sidecar."""
        self.close()
        await run_in_thread(self._commit_blocking)

    def _commit_blocking(self) -> None:
        os.replace(self.path, self.dest)
        self.sidecar.unlink(missing_ok=True)
        _fsync_folder(self.dest.parent)

    def close(self) -> None:
        if self._hasher is not None:
            self._hasher.shutdown(wait=False)  # idle: every write waited for its hash
            self._hasher = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        """Close and delete the part file and its sidecar."""
        self.close()
        self.state = None
        for path in partial_files(self.dest):
            path.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
