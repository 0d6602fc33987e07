"""File I/O for large downloads: positional writes that bypass the page cache where they can,
hashing bytes back from disk, and the batching that feeds the writes from the event loop.

Why: writing a multi-GB download through the page cache copies every byte into fresh cache
pages, after the network stack the most expensive step of a download (notably in VMs), and
pushes out what the rest of the machine had cached. With ``O_DIRECT`` the bytes go from our
buffer to the disk; only the unaligned edges of a batch (a few KiB) go through the cache. Where
the file system refuses ``O_DIRECT``, everything is written through the cache.

The blocking functions run in worker threads; :class:`BatchWriter` is the event-loop side.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import mmap
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ..engine.diskspace import is_no_space, no_space_left
from ..engine.threads import run_in_thread

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from .partfile import PartFile, Segment

log = logging.getLogger(__name__)

#: Alignment of direct I/O: offsets, lengths and buffer addresses (a page; fits every disk).
ALIGN = 4096
#: Bytes per write: each stream fills a buffer of this size while the previous one is written.
BATCH = 8 << 20
#: Buffers per stream: one filling, the others queued or being written.
BUFFERS = 4
#: A partly filled buffer is written after this many seconds without a full one.
IDLE_FLUSH = 0.5
#: Hash at most this much per worker-thread call, so a cancel never waits long.
HASH_STEP = 64 << 20


def aligned_buffer(size: int) -> mmap.mmap:
    """Anonymous memory starting on a page boundary, as direct I/O needs."""
    return mmap.mmap(-1, size)


class DiskFile:
    """A file open for positional writes and reads; blocking, for worker threads.

    ``write`` expects ``data`` laid out in memory like the file: the address of ``data[i]`` is
    aligned where ``offset + i`` is (the :class:`BatchWriter` buffers are). Then the aligned
    middle is written directly and only the edges through the page cache.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.direct: int | None = None
        try:
            self.direct = os.open(path, os.O_RDWR | os.O_DIRECT)  # type: ignore[attr-defined]
        except (AttributeError, OSError):  # not Linux, or the file system refuses it
            log.debug("no direct I/O for %s; writing through the page cache", path)
        self._write_direct = self.direct is not None
        self._scratch: mmap.mmap | None = None

    def write(self, data: memoryview, offset: int) -> None:
        head = min(len(data), -offset % ALIGN)
        body = head + (len(data) - head) // ALIGN * ALIGN
        if not self._write_direct or self.direct is None or body == head:
            _pwrite_all(self.fd, data, offset)
            return
        try:
            _pwrite_all(self.direct, data[head:body], offset + head)
        except OSError as exc:  # alignment rules stricter than ours: stop trying
            if exc.errno != errno.EINVAL:
                raise
            log.debug("direct write to %s refused (%s); writing through the cache", self.path, exc)
            self._write_direct = False
            _pwrite_all(self.fd, data[head:body], offset + head)
        _pwrite_all(self.fd, data[:head], offset)
        _pwrite_all(self.fd, data[body:], offset + body)

    def hash_range(self, hasher: hashlib._Hash, start: int, end: int) -> None:
        """Feed bytes ``[start, end)`` to ``hasher``: read directly from the disk if direct I/O
        works (the bytes are not in the cache), else straight from the page cache."""
        if self.direct is None:
            _hash_mapped(self.fd, hasher, start, end)
            return
        if self._scratch is None:
            self._scratch = aligned_buffer(BATCH)
        view = memoryview(self._scratch)
        try:
            while start < end:
                base = start - start % ALIGN
                length = min(len(view), -(-(end - base) // ALIGN) * ALIGN)
                got = min(os.preadv(self.direct, [view[:length]], base), end - base)
                if got <= start - base:
                    raise OSError(f"{self.path} ends at byte {base + got}, expected {end}")
                hasher.update(view[start - base : got])
                start = base + got
        finally:
            view.release()

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def sync(self) -> None:
        """Make the written bytes durable (data and size; not other metadata)."""
        os.fdatasync(self.fd)

    def drop_cache(self, start: int, end: int) -> None:
        """Forget bytes ``[start, end)`` from the page cache (they are synced, and hashed)."""
        if end > start and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, start, end - start, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        for fd in (self.fd, self.direct):
            if fd is not None and fd >= 0:
                os.close(fd)
        self.fd, self.direct = -1, None
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None


class BatchWriter:
    """Lends one stream page-aligned buffers to receive into; each full buffer goes to the hash
    thread at once and is written from a worker thread while the stream receives into the next.

    Receiving straight into a few reused, aligned buffers lets the writes bypass the page cache
    and spares the worker thread a GIL hand-over per small read. ``window`` lends the free part
    of the current buffer; the stream fills a prefix of it, reports the count with ``advance``,
    and releases it, all before its next ``await``. A buffer is written once full, or once no
    full one came for ``IDLE_FLUSH`` seconds, so the bytes of a slow or stalled stream soon
    reach the disk (and the sidecar).
    ``window`` waits only when every buffer is queued or being written. ``flush`` writes what is
    buffered and waits until all of it is on disk, so ``segment.done`` counts it; call it
    (shielded) before leaving a segment. A write error is raised by the next ``window`` or
    ``flush``. Writes are shielded from cancellation: bytes handed over are never lost.
    """

    def __init__(self, part: PartFile) -> None:
        self._part = part
        self._free: list[mmap.mmap] = []
        queue: tuple[MemoryObjectSendStream, MemoryObjectReceiveStream] = (
            anyio.create_memory_object_stream(BUFFERS)  # (segment, offset, bytes, hashing)
        )
        self._send, self._receive = queue
        self._available = anyio.Semaphore(BUFFERS)  # buffers not queued or being written
        self._buffer: mmap.mmap | None = None
        self._start = self._filled = 0  # the bytes to write are _buffer[_start:_filled]
        self._offset = 0  # where _buffer[_start] goes in the file
        self._queued = 0  # bytes handed to the drain task, not yet counted in segment.done
        self._segment: Segment | None = None  # the segment being buffered
        self._error: Exception | None = None
        self._group = anyio.create_task_group()

    async def __aenter__(self) -> BatchWriter:
        await self._group.__aenter__()
        self._group.start_soon(self._drain)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._send.close()  # the drain task writes what is queued, then ends
        await self._group.__aexit__(None, None, None)
        for buffer in self._free:
            buffer.close()

    async def window(self, segment: Segment, limit: int) -> memoryview:
        """Room for at most ``limit`` next bytes of ``segment``; fill it and release it before
        the next ``await``."""
        self._raise_error()
        if self._buffer is None:
            await self._available.acquire()
            self._buffer = self._free.pop() if self._free else aligned_buffer(BATCH)
            self._offset = segment.position + self._queued
            # Lay the bytes out like the file, so the aligned middle can go direct.
            self._start = self._filled = self._offset % ALIGN
        self._segment = segment
        return memoryview(self._buffer)[self._filled : min(BATCH, self._filled + limit)]

    def advance(self, count: int) -> None:
        """``count`` bytes were received into the window."""
        self._filled += count
        if self._filled == BATCH:
            self._submit()

    async def flush(self) -> None:
        """Write what is buffered and wait until everything is on disk."""
        if self._buffer is not None:
            self._submit()
        with anyio.CancelScope(shield=True):
            for _ in range(BUFFERS):  # every buffer back: nothing is being written
                await self._available.acquire()
            for _ in range(BUFFERS):
                self._available.release()
        self._raise_error()

    def _submit(self) -> None:
        assert self._buffer is not None and self._segment is not None
        view = memoryview(self._buffer)[self._start : self._filled]
        self._queued += len(view)
        hashing = self._part.hash_soon(self._offset, view)  # the hash need not wait for the disk
        self._send.send_nowait((self._segment, self._offset, view, hashing))
        self._buffer = None

    def _raise_error(self) -> None:
        if self._error is not None:  # it stays: bytes after a failed write are never counted
            raise self._error

    async def _drain(self) -> None:
        # Shielded: queued buffers are written even on cancel; it ends once _send is closed.
        with anyio.CancelScope(shield=True):
            async with self._receive:
                while True:
                    with anyio.move_on_after(IDLE_FLUSH) as idle:
                        try:
                            segment, offset, view, hashing = await self._receive.receive()
                        except anyio.EndOfStream:
                            return
                    if idle.cancelled_caught:
                        if self._buffer is not None:  # not lent out: windows never span awaits
                            self._submit()
                        continue
                    try:
                        if self._error is None:
                            await self._part.write(offset, view, hashing)
                            self._part.count(segment, len(view))
                        else:  # bytes after a failed write are not wanted
                            await self._part.drop_hash(hashing)
                    except Exception as exc:
                        # Without its traceback: the frames in it hold slices of the buffer,
                        # which could then never be closed (BufferError hiding this error).
                        self._error = exc.with_traceback(None)
                    finally:
                        self._queued -= len(view)
                        buffer = view.obj
                        view.release()
                        self._free.append(buffer)  # type: ignore[arg-type]
                        self._available.release()


@contextlib.contextmanager
def _replacing(path: Path, doing: str) -> Iterator[Path]:
    """A temporary file for the block to write, then put in place of ``path`` atomically.

    Named ``<name>.<pid>-<thread>.tmp``: two processes or threads writing the same file never
    share one. A crash or a full disk leaves the old file whole and no temporary file behind;
    a full disk raises :class:`~ipyjobs.engine.diskspace.NoSpaceLeft` naming it."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if is_no_space(exc):
            raise no_space_left(path.parent, doing) from exc
        raise


def replace_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (see :func:`_replacing`)."""
    with _replacing(path, f"writing {path.name}") as temporary:
        temporary.write_text(text)


def copy_into_place(source: Path, path: Path) -> None:
    """Copy ``source`` to ``path`` atomically (see :func:`_replacing`): workers of a cluster
    sharing a data folder may copy the same model at once."""
    with _replacing(path, f"copying {path.name}") as temporary:
        shutil.copyfile(source, temporary)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    written = 0
    while written < len(data):
        written += os.pwrite(fd, data[written:], offset + written)


def _hash_mapped(fd: int, hasher: hashlib._Hash, start: int, end: int) -> None:
    """Hash bytes ``[start, end)`` of a file straight from the page cache (no copy)."""
    if end <= start:
        return
    base = start - start % mmap.ALLOCATIONGRANULARITY
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    with mmap.mmap(fd, end - base, flags=flags, prot=mmap.PROT_READ, offset=base) as mapped:
        view = memoryview(mapped)
        try:
            hasher.update(view[start - base :])
        finally:
            view.release()


async def sha256_of(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file, hashed in worker-thread steps (cancellable between steps)."""
    hasher = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        for start in range(0, size, HASH_STEP):
            end = min(size, start + HASH_STEP)
            await run_in_thread(_hash_mapped, fd, hasher, start, end)
    finally:
        os.close(fd)
    return hasher.hexdigest(), size
