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
memory right after it is written (always the case for a single stream, so the file is never read
back); anything else is read back from the page cache once it is contiguous with the hashed
prefix. Both happen in worker threads; the event loop only schedules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anyio

log = logging.getLogger(__name__)

#: Hash at most this much per worker-thread call, so a cancel waits for one step at most.
HASH_STEP = 64 << 20
#: Read-back buffer for hashing from disk.
_READ_BLOCK = 4 << 20
#: Sync the part file and save the sidecar after this many new bytes ...
SYNC_BYTES = 48 << 20
#: ... or after this many seconds with unsynced bytes.
SYNC_SECONDS = 1.0
#: Bytes per write: each stream fills a buffer of this size while the previous is written.
BATCH = 4 << 20
#: Buffers per stream: one filling, the others queued or being written.
BUFFERS = 3
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 4)
_SIDECAR_VERSION = 1


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def sidecar_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")


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
        data["segments"] = [Segment(*map(_int_or_none, s)) for s in data["segments"]]
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
        self._fd: int | None = None
        self._hash = hashlib.sha256()
        self._hashed = 0
        self._hash_lock = threading.Lock()  # guards _hash and _hashed across worker threads
        self._unsynced = 0
        self._dropped = 0  # bytes from 0 dropped from the page cache
        self._sync_lock = anyio.Lock()
        self._written = _Signal()

    # -- opening and planning ----------------------------------------------------------------

    def open(self, url: str, sha256: str | None, size: int | None) -> Sidecar | None:
        """Open the part file, adopting the partial download found on disk if it belongs to
        this transfer (same URL, hash and size, sidecar consistent with the file); otherwise
        delete what is there. Returns the adopted state."""
        state = read_sidecar(self.dest)
        if state is not None and (state.url, state.sha256) == (url, sha256):
            if size is not None and state.size != size:
                state = None
        else:
            state = None
        try:
            if state is not None:
                length = self.path.stat().st_size
                if any(s.position > length for s in state.segments):
                    log.warning("%s is shorter than its sidecar says; starting over", self.path)
                    state = None
        except FileNotFoundError:
            state = None
        if state is None:
            self.remove()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self.state = state
        return state

    def start(self, state: Sidecar) -> None:
        """Begin a fresh download described by ``state``: empty the part file (sized to the
        total when known, so syncs never change its length), reset the hash, save the sidecar."""
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        if state.total:
            os.ftruncate(self._fd, state.total)
        self.state = state
        self._hash, self._hashed, self._unsynced, self._dropped = hashlib.sha256(), 0, 0, 0
        self.sidecar.write_text(state.to_json())

    def reset(self) -> None:
        """Forget everything received: the next pass starts from byte 0."""
        self.state = None
        self._hash, self._hashed, self._unsynced, self._dropped = hashlib.sha256(), 0, 0, 0
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
        self.sidecar.unlink(missing_ok=True)

    # -- writing, hashing, syncing -----------------------------------------------------------

    async def write(self, segment: Segment, data: memoryview) -> None:
        """Write ``data`` at ``segment.position`` from a worker thread, then count it as done."""
        await anyio.to_thread.run_sync(self._write_blocking, segment.position, data)
        segment.done += len(data)
        self._unsynced += len(data)
        self._written.notify()

    def _write_blocking(self, offset: int, data: memoryview) -> None:
        assert self._fd is not None
        written = 0
        while written < len(data):
            written += os.pwrite(self._fd, data[written:], offset + written)
        # Hash from memory if this batch continues the hashed prefix; never wait for the lock
        # (the read-back hasher holds it briefly and will pick these bytes up from disk).
        if self._hashed == offset and self._hash_lock.acquire(blocking=False):
            try:
                if self._hashed == offset:
                    self._hash.update(data)
                    self._hashed = offset + len(data)
            finally:
                self._hash_lock.release()

    async def follow_hash(self) -> None:
        """Keep hashing the contiguous prefix on disk as it grows; runs until cancelled."""
        assert self.state is not None
        while True:
            target = self.state.contiguous()
            if self._hashed < target:
                await self._hash_from_disk(min(target, self._hashed + HASH_STEP))
            else:
                await self._written.wait()

    async def _hash_from_disk(self, target: int) -> None:
        await anyio.to_thread.run_sync(self._hash_blocking, target)

    def _hash_blocking(self, target: int) -> None:
        assert self._fd is not None
        buffer = memoryview(bytearray(_READ_BLOCK))
        while True:
            with self._hash_lock:
                position = self._hashed
                if position >= target:
                    return
                n = os.preadv(self._fd, [buffer[: min(_READ_BLOCK, target - position)]], position)
                if n <= 0:
                    raise OSError(f"{self.path} ends at byte {position}, expected {target}")
                self._hash.update(buffer[:n])
                self._hashed = position + n

    async def keep_synced(self) -> None:
        """Sync and save the sidecar every ``SYNC_BYTES`` or ``SYNC_SECONDS``; runs until
        cancelled."""
        while True:
            with anyio.move_on_after(SYNC_SECONDS):
                while self._unsynced < SYNC_BYTES:
                    await self._written.wait()
            if self._unsynced:
                await self.sync()

    async def sync(self) -> None:
        """Make the bytes written so far durable, then record them in the sidecar."""
        if self.state is None or self._fd is None:
            return
        async with self._sync_lock:
            text, pending = self.state.to_json(), self._unsynced
            await anyio.to_thread.run_sync(self._sync_blocking, text)
            self._unsynced -= pending

    def _sync_blocking(self, text: str) -> None:
        assert self._fd is not None
        os.fdatasync(self._fd)
        temporary = self.sidecar.with_name(self.sidecar.name + ".tmp")
        temporary.write_text(text)
        os.replace(temporary, self.sidecar)
        # Synced and hashed bytes are not needed in memory any more: dropping them from the page
        # cache keeps a multi-GB download from evicting everything else, and lets the next
        # writes reuse the freed pages (much cheaper than fresh ones, notably in VMs).
        hashed = self._hashed
        if hashed > self._dropped and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._fd, self._dropped, hashed - self._dropped, _DONTNEED)
            self._dropped = hashed

    # -- the end -------------------------------------------------------------------------------

    async def finish(self) -> tuple[str, int]:
        """Hash what is not hashed yet, trim and fsync the part file; return (sha256, size)."""
        assert self.state is not None and self._fd is not None
        size = self.state.contiguous()
        while self._hashed < size:
            await self._hash_from_disk(min(size, self._hashed + HASH_STEP))
        fd = self._fd
        await anyio.to_thread.run_sync(_trim_and_fsync, fd, size)
        return self._hash.hexdigest(), size

    async def commit(self) -> None:
        """Atomically move the finished part file to ``dest`` and drop the sidecar."""
        self.close()
        await anyio.to_thread.run_sync(self._commit_blocking)

    def _commit_blocking(self) -> None:
        os.replace(self.path, self.dest)
        self.sidecar.unlink(missing_ok=True)
        _fsync_folder(self.dest.parent)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """Close and delete the part file and its sidecar."""
        self.close()
        self.state = None
        for path in (self.path, self.sidecar):
            path.unlink(missing_ok=True)


class BatchWriter:
    """Collects one stream's bytes in buffers and writes each full buffer from a worker thread
    while the stream goes on receiving into the next one.

    Copying chunks into a few reused buffers costs one memcpy, and saves the worker thread from
    a GIL hand-over per small chunk (which, with the loop busy, costs far more). ``add`` waits
    only when every buffer is full or being written. ``flush`` writes what is buffered and waits
    until all of it is on disk, so ``segment.done`` counts it; call it (shielded) before giving
    up a segment. A write error is raised by the next ``add`` or ``flush``. The writes are
    shielded: a cancel never loses bytes that were handed over.
    """

    def __init__(self, part: PartFile) -> None:
        self._part = part
        self._free: list[bytearray] = []
        self._send, self._receive = anyio.create_memory_object_stream[
            tuple[Segment, bytearray, int]
        ](BUFFERS)
        self._returned = anyio.Semaphore(BUFFERS)  # counts buffers not queued for writing
        self._buffer: memoryview | None = None
        self._filled = 0
        self._error: Exception | None = None
        self._group = anyio.create_task_group()

    async def __aenter__(self) -> BatchWriter:
        await self._group.__aenter__()
        self._group.start_soon(self._drain)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._send.close()  # the drain task writes what is queued, then ends
        await self._group.__aexit__(None, None, None)

    async def add(self, segment: Segment, chunk: bytes) -> None:
        """Buffer ``chunk``, the next bytes of ``segment``."""
        data = memoryview(chunk)
        while data:
            if self._buffer is None:
                self._raise_error()
                await self._returned.acquire()
                self._buffer = memoryview(self._free.pop() if self._free else bytearray(BATCH))
            n = min(len(data), BATCH - self._filled)
            self._buffer[self._filled : self._filled + n] = data[:n]
            self._filled += n
            data = data[n:]
            if self._filled == BATCH:
                self._submit(segment)

    async def flush(self, segment: Segment) -> None:
        """Write what is buffered for ``segment`` and wait until everything is on disk."""
        if self._buffer is not None:
            self._submit(segment)
        with anyio.CancelScope(shield=True):
            for _ in range(BUFFERS):  # all buffers back: nothing is being written
                await self._returned.acquire()
            for _ in range(BUFFERS):
                self._returned.release()
        self._raise_error()

    def _submit(self, segment: Segment) -> None:
        assert self._buffer is not None
        self._send.send_nowait((segment, self._buffer.obj, self._filled))  # type: ignore[arg-type]
        self._buffer, self._filled = None, 0

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    async def _drain(self) -> None:
        # Shielded: queued buffers are written even on cancel; it ends once _send is closed.
        with anyio.CancelScope(shield=True):
            async with self._receive:
                async for segment, buffer, size in self._receive:
                    try:
                        if self._error is None:
                            await self._part.write(segment, memoryview(buffer)[:size])
                    except Exception as exc:
                        self._error = exc
                    finally:
                        self._free.append(buffer)
                        self._returned.release()


def _trim_and_fsync(fd: int, size: int) -> None:
    if os.fstat(fd).st_size != size:
        os.ftruncate(fd, size)
    os.fsync(fd)


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


async def sha256_of(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file, hashed in worker-thread steps (cancellable between steps)."""
    hasher = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        position = 0
        while position < size:
            step = min(size, position + HASH_STEP)
            await anyio.to_thread.run_sync(_hash_range, fd, hasher, position, step)
            position = step
    finally:
        os.close(fd)
    return hasher.hexdigest(), size


def _hash_range(fd: int, hasher: hashlib._Hash, start: int, end: int) -> None:
    buffer = memoryview(bytearray(min(_READ_BLOCK, end - start)))
    while start < end:
        n = os.preadv(fd, [buffer[: min(len(buffer), end - start)]], start)
        if n <= 0:
            raise OSError(f"file ended at byte {start}, expected {end}")
        hasher.update(buffer[:n])
        start += n
