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
* fetches a large file from a range-capable server in pieces over several connections when one
  connection is slow (on a fast link they only cost CPU), hashing the contiguous prefix while
  the rest arrives, and writing around the page cache (:mod:`.diskio`).

The loop stays responsive: per read it only receives bytes into a write buffer (straight from
the socket for plain HTTP, :mod:`.body`); writing, hashing and syncing run in other threads, in
bounded steps.

On cancel (``JobCancelled`` at a checkpoint, or anyio cancellation of the task) the connections
are closed, received bytes are written, the part file is synced and its sidecar saved (shielded),
and the lock is released: the next call resumes from there.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import filelock
import httpx

from ..engine import JobContext
from .diskio import sha256_of
from .httpio import new_client
from .partfile import part_path, read_sidecar
from .transfer import Download

log = logging.getLogger(__name__)

#: How often a fetch waiting for another process's lock looks again.
_LOCK_POLL = 0.1


@dataclass(frozen=True)
class Transfer:
    """One file to download."""

    url: str
    dest: Path
    """The final path; its folder is created if missing."""
    sha256: str | None
    """Expected SHA-256 (hex); ``None``: computed and returned, not checked."""
    size: int | None
    """The file's exact size, if known: checked (a body of another size is not the file), and
    used for the free-space check and as progress total."""
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
    """Files from this size on may be fetched over several connections (if the server allows)."""
    parallel_streams: int = 4
    parallel_after: float = 5.0
    """... but only if one connection would need longer than this (seconds) for the rest: on a
    fast link more connections only cost CPU. 0: always."""


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
    ``DownloadError`` (after retries, or at once on 404 and similar), ``NotTheModel`` (an HTML
    page, or another size than ``transfer.size``), ``ChecksumMismatch``, ``NotEnoughSpace`` (in
    these three cases nothing is kept), or ``JobCancelled``. Without an expected hash or size,
    any body that is not HTML is taken (and its hash returned).

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
            download = Download(transfer, expected, ctx, http, policy)
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
    async with new_client(policy) as own:
        yield own


__all__ = ["RetryPolicy", "Transfer", "TransferResult", "fetch", "partial_size"]
