"""Downloading model files: one URL to one verified file, resumable, shared across processes.

Why this is more than ``httpx.stream``: model files are large, mirrors and CDNs misbehave, and
notebooks get paused, cancelled and restarted. :func:`fetch` therefore

* streams into ``<name>.part`` with a ``<name>.part.json`` sidecar (:mod:`.partfile`) and only
  ever puts a file at ``dest`` after its SHA-256 matched: verify, fsync, atomic rename;
* resumes with ``Range`` + ``If-Range``, so a retry, a pause, or the next call after a cancel or
  a crash continues where the bytes on disk end (:mod:`.transfer`);
* retries connection errors, stalls, truncated bodies and 408/429/5xx with exponential backoff
  and jitter, honouring ``Retry-After``; other 4xx fail at once;
* holds ``<name>.lock`` (filelock) for the whole transfer, so two kernels download a file once;
* fetches large files from range-capable servers in pieces over several connections, hashing
  the contiguous prefix while the rest arrives.

On cancel (``JobCancelled`` at a checkpoint, or anyio cancellation of the task) the connections
are closed, received bytes are written, the part file is synced and its sidecar saved (shielded),
and the lock is released: the next call resumes from there.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import filelock
import httpcore
import httpx

from ..engine import JobContext
from .diskio import sha256_of
from .partfile import part_path, read_sidecar
from .transfer import Download, timeout_for

log = logging.getLogger(__name__)

#: How often a fetch waiting for another process's lock looks again.
_LOCK_POLL = 0.1
#: Bytes per socket read on the connections of clients made here (httpcore's default: 64 KiB).
_READ_SIZE = 1 << 20


@dataclass(frozen=True)
class Transfer:
    """One file to download."""

    url: str
    dest: Path
    """The final path; its folder is created if missing."""
    sha256: str | None
    """Expected SHA-256 (hex); ``None``: computed and returned, not checked."""
    size: int | None
    """Expected size, if known: for the free-space check and as progress total."""
    label: str
    """What the file is, for messages: ``"whisper model tiny.en"``."""


@dataclass(frozen=True)
class TransferResult:
    path: Path
    sha256: str
    size: int
    received: int
    """Body bytes fetched over the network by this call."""
    resumed_from: int
    """Bytes already in the partial file when this call started."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard :func:`fetch` tries, and when it uses parallel connections."""

    attempts: int = 8
    """Failed requests in a row before giving up; a request that delivered bytes resets it."""
    backoff: float = 0.5
    """The first retry waits this long (plus jitter); each further one twice as long."""
    max_backoff: float = 30.0
    """Longest wait between attempts, also for a server's ``Retry-After``."""
    connect_timeout: float = 15.0
    stall_timeout: float = 30.0
    """No byte for this long counts as a stall: the request is retried."""
    parallel_min_size: int = 64 * 2**20
    """Files from this size on are fetched over several connections (if the server allows)."""
    parallel_streams: int = 4


def disk_free(path: Path) -> int:
    """Free bytes on the file system holding ``path``; tests replace this function."""
    return shutil.disk_usage(path).free


def partial_size(dest: Path) -> int:
    """Bytes of ``dest`` already in its partial download (0 if there is none)."""
    dest = Path(dest)
    state = read_sidecar(dest)
    if state is None or not part_path(dest).exists():
        return 0
    return state.present


async def fetch(
    transfer: Transfer,
    ctx: JobContext,
    *,
    client: httpx.AsyncClient | None = None,
    policy: RetryPolicy = RetryPolicy(),  # frozen: sharing the default is safe
) -> TransferResult:
    """Download ``transfer.url`` to ``transfer.dest``, resuming any partial download of it.

    Returns once ``dest`` holds the complete file with the expected SHA-256. Raises
    ``DownloadError`` (after retries, or at once on 404 and similar), ``ChecksumMismatch`` (the
    partial file is deleted, nothing is kept), ``NotEnoughSpace``, or ``JobCancelled``.

    While another process downloads the same ``dest``, waits (pause and cancel still act), then
    returns that result without fetching. An existing ``dest`` counts as done only if its
    SHA-256 matches; without an expected hash it is downloaded again. ``client`` is used as is
    and not closed; by default one is made for this call (proxy variables are honoured,
    redirects followed).
    """
    dest = Path(transfer.dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = transfer.sha256.lower() if transfer.sha256 else None
    async with _locked(dest, ctx, transfer.label):
        if expected is not None and dest.is_file():
            digest, size = await sha256_of(dest)
            if digest == expected:
                ctx.progress(size, size, unit="bytes", message="already downloaded")
                return TransferResult(dest, digest, size, received=0, resumed_from=0)
            log.warning("%s has SHA-256 %s, not %s: downloading it again", dest, digest, expected)
        async with _client(client, policy) as http:
            download = Download(
                transfer, expected, ctx, http, policy, free_space=lambda path: disk_free(path)
            )
            digest, size = await download.run()
    return TransferResult(dest, digest, size, download.received, download.resumed_from)


@asynccontextmanager
async def _locked(dest: Path, ctx: JobContext, label: str) -> AsyncIterator[None]:
    """Hold ``<name>.lock`` for the block. Polls without blocking the loop; pause and cancel
    act between polls."""
    lock = filelock.FileLock(str(dest.with_name(dest.name + ".lock")))
    waiting = False
    while True:
        try:
            lock.acquire(blocking=False)
            break
        except filelock.Timeout:
            if not waiting:
                waiting = True
                log.info("waiting for another process downloading %s to %s", label, dest)
                ctx.progress(message=f"waiting for another download of {label}")
            await ctx.checkpoint()
            await anyio.sleep(_LOCK_POLL)
    try:
        yield
    finally:
        lock.release()


@asynccontextmanager
async def _client(
    client: httpx.AsyncClient | None, policy: RetryPolicy
) -> AsyncIterator[httpx.AsyncClient]:
    if client is not None:
        yield client
        return
    async with httpx.AsyncClient(follow_redirects=True, timeout=timeout_for(policy)) as own:
        _widen_reads(own)
        yield own


def _widen_reads(client: httpx.AsyncClient) -> None:
    """Make the client's direct connections read up to ``_READ_SIZE`` bytes per socket read.

    httpcore reads 64 KiB at a time, and each read costs the event loop a fixed amount of
    Python work (timeouts, h11 events, stream wake-ups); on a fast link that work, not the
    network, limits a download (with several copies of every byte). Reading up to 1 MiB at a
    time cuts it to a fraction. This reaches into private attributes of httpx, httpcore and
    asyncio's transport, so each step is skipped when they are not as expected; proxied
    connections (their own transports) keep the defaults.
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = _WideReads(backend)  # type: ignore[union-attr]


class _WideReads(httpcore.AsyncNetworkBackend):
    """A network backend whose streams read at least ``_READ_SIZE`` bytes at a time."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _WideStream(await self._inner.connect_tcp(*args, **kwargs))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _WideStream(await self._inner.connect_unix_socket(*args, **kwargs))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _WideStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        # asyncio's socket transport receives 256 KiB per recv(); let this one take more.
        transport = getattr(getattr(inner, "_stream", None), "_transport", None)
        if isinstance(getattr(transport, "max_size", None), int):
            transport.max_size = max(transport.max_size, _READ_SIZE)  # type: ignore[union-attr]

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, _READ_SIZE), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _WideStream(await self._inner.start_tls(*args, **kwargs))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


__all__ = ["RetryPolicy", "Transfer", "TransferResult", "disk_free", "fetch", "partial_size"]
