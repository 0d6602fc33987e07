"""The HTTP side of a download: requests, ranges, retries, parallel pieces.

A download is a list of segments of the file (:class:`~.partfile.Segment`). A fresh download
asks for the first ``parallel_min_size`` bytes; the answer tells the total size and whether the
server serves ranges. A smaller file arrives whole in that answer. A larger one from a server
that serves ranges is cut into pieces that several streams (``parallel_streams``) take in order,
so the prefix on disk stays contiguous and is hashed while the rest arrives; otherwise one
stream fetches it all.

Every request after the first carries ``Range`` from the segment's position on and ``If-Range``
with the validator the first answer gave, so a resumed segment either continues the same file
(206) or the server says the file changed (200), and the download starts over from byte 0.
Failed requests are retried from the bytes on disk: nothing received is fetched twice.

Pause: between chunks a stream sees the paused token, writes what it has, closes its connection
and parks at ``ctx.checkpoint()``; on resume it asks for the rest. Cancel: the same, except the
checkpoint (or anyio cancellation) raises and the caller keeps the partial file.
"""

from __future__ import annotations

import email.utils
import errno
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx

from ..engine import JobContext
from .diskio import BatchWriter
from .errors import ChecksumMismatch, DownloadError, NotEnoughSpace
from .partfile import PartFile, Segment, Sidecar

if TYPE_CHECKING:
    from .download import RetryPolicy, Transfer

log = logging.getLogger("ipyjobs.models.download")

#: Pieces per stream in parallel mode: enough that the contiguous prefix (hashed while the rest
#: arrives) grows steadily, few enough that per-request overhead stays negligible.
_PIECES_PER_STREAM = 8
_MIN_PIECE, _MAX_PIECE = 64 << 10, 32 << 20


class _Retry(Exception):
    """A failed request worth another one; ``retry_after`` is the server's wish, in seconds."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _StartOver(Exception):
    """The server did not send the bytes asked for: the file changed, or ranges are ignored."""


class _Interrupted(Exception):
    """Pause or cancel requested: the connection is closed, then a checkpoint honours it."""


_RETRYABLE = (
    _Retry,
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


def timeout_for(policy: RetryPolicy) -> httpx.Timeout:
    """Per-request timeouts: a read timeout is exactly "no byte for ``stall_timeout``"."""
    stall = policy.stall_timeout
    return httpx.Timeout(connect=policy.connect_timeout, read=stall, write=stall, pool=None)


class Download:
    """One transfer, run under the file lock: passes of requests until every byte is on disk,
    then verification and the atomic rename. ``run()`` returns ``(sha256, size)``."""

    def __init__(
        self,
        transfer: Transfer,
        expected: str | None,
        ctx: JobContext,
        client: httpx.AsyncClient,
        policy: RetryPolicy,
        *,
        free_space: Callable[[Path], int],
    ) -> None:
        self.transfer, self.expected, self.ctx = transfer, expected, ctx
        self.client, self.policy, self.free_space = client, policy, free_space
        self.part = PartFile(Path(transfer.dest))
        self.timeout = timeout_for(policy)
        self.failures = 0  # failed requests since bytes last arrived
        self.received = 0  # body bytes from the network in this call
        self.resumed_from = 0
        self.done = 0  # bytes on disk or buffered, for progress
        self.parallel = policy.parallel_streams > 1

    @property
    def total(self) -> int | None:
        state = self.part.state
        return state.total if state is not None and state.total else self.transfer.size

    async def run(self) -> tuple[str, int]:
        transfer, part = self.transfer, self.part
        state = part.open(transfer.url, self.expected, transfer.size)
        self.resumed_from = self.done = state.present if state else 0
        start_overs = 0
        try:
            if transfer.size is not None:
                self._check_space(transfer.size - self.resumed_from)
            message = f"resuming at {_human(self.done)}" if self.done else "downloading"
            self.ctx.progress(self.done, self.total, unit="bytes", message=message)
            while True:
                try:
                    await self._pass()
                    break
                except _StartOver as exc:
                    start_overs += 1
                    if start_overs >= self.policy.attempts:
                        raise self._error(f"{exc} ({start_overs} times)") from exc
                    log.warning("%s: %s; starting over from byte 0", transfer.label, exc)
                    self.ctx.progress(0, self.total, message=f"starting over: {exc}")
                    part.reset()
                    self.done, self.parallel = 0, False
            digest, size = await part.finish()
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self._keep_partial()
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                folder = transfer.dest.parent
                raise NotEnoughSpace(f"the disk holding {folder} is full: {exc}") from exc
            raise
        if self.expected is not None and digest != self.expected:
            part.remove()
            raise ChecksumMismatch(
                f"the download of {transfer.label} from {transfer.url} is corrupt: expected "
                f"SHA-256 {self.expected}, got {digest}. The file was deleted, nothing was kept; "
                "try again, and if it persists the server has a different file."
            )
        await part.commit()
        self.ctx.progress(size, size, message="verified")
        return digest, size

    async def _keep_partial(self) -> None:
        """After a failure or cancel: keep what was received (durably), or clean up."""
        part = self.part
        try:
            if part.state is not None and part.state.present > 0:
                await part.sync()
                part.close()
            else:
                part.remove()
        except OSError as exc:
            log.warning("could not save the partial download %s: %s", part.path, exc)
            part.close()

    # -- one pass over the missing bytes ---------------------------------------------------------

    async def _pass(self) -> None:
        """Fetch every missing segment (with retries), hashing and syncing alongside."""
        part = self.part
        first = await self._open_fresh() if part.state is None else None
        assert part.state is not None
        todo = [segment for segment in part.state.segments if not segment.complete]
        if not todo:
            if first is not None:
                await _close(first)
            return
        rest = iter(todo[1:])

        async def stream(segment: Segment | None, response: httpx.Response | None) -> None:
            async with BatchWriter(part) as writer:
                if segment is not None:
                    await self._fetch_segment(segment, response, writer)
                for segment in rest:  # one iterator shared by all streams: pieces go in order
                    await self._fetch_segment(segment, None, writer)

        streams = min(self.policy.parallel_streams, len(todo))
        workers = [lambda: stream(todo[0], first)] + [lambda: stream(None, None)] * (streams - 1)
        await _run_until_done(workers, background=[part.follow_hash, part.keep_synced])

    async def _open_fresh(self) -> httpx.Response:
        """The first request of a fresh download; plans the segments from its answer."""
        # Asking for the first parallel_min_size bytes gets a small file whole, and for a large
        # one the total size, range support and validator, without a byte fetched twice.
        probe = Segment(0, self.policy.parallel_min_size) if self.parallel else None
        while True:
            await self.ctx.checkpoint()
            try:
                response = await self._request(probe)
            except _RETRYABLE as exc:
                await self._failed(exc)
                continue
            except httpx.HTTPError as exc:
                raise self._error(_describe(exc, self.policy)) from exc
            try:
                self._plan(response)
            except BaseException:
                await _close(response)
                raise
            return response

    def _plan(self, response: httpx.Response) -> None:
        """Cut the file into segments, from the answer to the first request."""
        headers, transfer, policy = response.headers, self.transfer, self.policy
        if response.status_code == 206:
            _, last, total = _content_range(headers.get("content-range", ""))
            assert last is not None and total is not None  # checked by _check_status
            segments = [Segment(0, last + 1)]
            piece = -(-total // (policy.parallel_streams * _PIECES_PER_STREAM))
            piece = min(max(piece, _MIN_PIECE), _MAX_PIECE)
            segments += [
                Segment(at, min(at + piece, total)) for at in range(last + 1, total, piece)
            ]
        else:
            length = headers.get("content-length", "")
            total = int(length) if length.isdigit() else None
            segments = [Segment(0, total)]
        if total is not None and transfer.size is not None and total != transfer.size:
            log.warning(
                "%s: %s has %d bytes, expected %d",
                transfer.label,
                transfer.url,
                total,
                transfer.size,
            )
        if total is not None:
            self._check_space(total)
        etag, modified = headers.get("etag"), headers.get("last-modified")
        state = Sidecar(transfer.url, self.expected, transfer.size, total, etag, modified, segments)
        self.part.start(state)
        self.ctx.progress(self.done, self.total)

    async def _fetch_segment(
        self, segment: Segment, response: httpx.Response | None, writer: BatchWriter
    ) -> None:
        """Fetch ``segment`` to its end; retries, pauses and resumes continue from its position.
        A pause closes the connection first and parks at the checkpoint."""
        while not segment.complete:
            await self.ctx.checkpoint()
            try:
                try:
                    if response is None:
                        response = await self._request(segment)
                    await self._receive(segment, response, writer)
                finally:
                    if response is not None:
                        await _close(response)
                        response = None
            except _Interrupted:
                await self.part.sync()  # the job stops here a while: make the bytes durable
            except _RETRYABLE as exc:
                await self._failed(exc)
            except httpx.HTTPError as exc:
                raise self._error(_describe(exc, self.policy)) from exc

    async def _request(self, segment: Segment | None) -> httpx.Response:
        """GET the file, or ``segment`` from its position on; check the status."""
        headers = {"Accept-Encoding": "identity"}  # the bytes of the file, never re-encoded
        state = self.part.state
        if segment is not None:
            end = "" if segment.end is None else str(segment.end - 1)
            headers["Range"] = f"bytes={segment.position}-{end}"
            if state is not None and state.validator:
                headers["If-Range"] = state.validator
        request = self.client.build_request(
            "GET", self.transfer.url, headers=headers, timeout=self.timeout
        )
        response = await self.client.send(request, stream=True, follow_redirects=True)
        try:
            self._check_status(response, segment)
        except BaseException:
            await _close(response)
            raise
        if self.failures:
            self.ctx.progress(message="downloading")
        return response

    def _check_status(self, response: httpx.Response, segment: Segment | None) -> None:
        status, state = response.status_code, self.part.state
        if status == 200 and (segment is None or state is None):
            return  # the whole file, as asked, or as the first answer of a fresh download
        if status == 206 and segment is not None:
            start, last, total = _content_range(response.headers.get("content-range", ""))
            known = state.total if state is not None else total
            if start != segment.position or last is None or total is None or total != known:
                raise _StartOver(
                    f"the server sent bytes {start}-{last} of {total} when asked for "
                    f"{segment.position}- of {known}: the file changed"
                )
            return
        if status == 200:
            raise _StartOver(
                "the server answered a range request with the whole file: it ignores ranges, "
                "or the file changed"
            )
        if status == 416 and segment is not None:
            raise _StartOver(f"the server cannot serve bytes {segment.position}- (HTTP 416)")
        if status in (408, 429) or 500 <= status <= 599:
            retry_after = _retry_after(response.headers.get("retry-after"))
            raise _Retry(f"HTTP {status} {response.reason_phrase}".strip(), retry_after)
        raise self._error(f"the server answered HTTP {status} {response.reason_phrase}".strip())

    async def _receive(
        self, segment: Segment, response: httpx.Response, writer: BatchWriter
    ) -> None:
        """Write the body at ``segment.position``, in batches, until the segment is complete.

        What arrived is always written before this returns or raises (shielded: a cancel loses
        nothing received). Raises ``_Interrupted`` on pause or cancel, ``_Retry`` if the body
        ended early.
        """
        token, progress, total = self.ctx.token, self.ctx.progress, self.total
        position = segment.position  # received up to here (written up to segment.position)
        try:
            async for chunk in response.aiter_raw():
                overrun = segment.end is not None and len(chunk) > segment.end - position
                if overrun:  # more than the range asked for: keep what fits, drop the rest
                    chunk = chunk[: segment.end - position]  # type: ignore[operator]
                await writer.add(segment, chunk)
                position += len(chunk)
                self.received += len(chunk)
                self.done += len(chunk)
                self.failures = 0
                progress(self.done, total)
                if overrun:
                    break
                if token.paused or token.cancelled:
                    raise _Interrupted
        finally:
            with anyio.CancelScope(shield=True):
                await writer.flush(segment)
        if segment.end is None:  # a body of unknown length ended: that was all of it
            segment.end = segment.position
        elif not segment.complete:
            raise _Retry(f"the body ended at byte {segment.position} of {segment.end}")

    # -- failures --------------------------------------------------------------------------------

    async def _failed(self, exc: Exception) -> None:
        """Count a failed request, then wait before the next one; give up after ``attempts``."""
        self.failures += 1
        policy, label = self.policy, self.transfer.label
        reason = _describe(exc, policy)
        if self.failures >= policy.attempts:
            raise self._error(f"{reason} (gave up after {self.failures} attempts)") from exc
        wished = getattr(exc, "retry_after", None)
        if wished is not None:
            delay = min(wished, policy.max_backoff)
        else:
            delay = policy.backoff * 2 ** (self.failures - 1)
            delay = min(policy.max_backoff, delay * (1 + random.uniform(0, 0.25)))
        log.warning(
            "%s: %s; retry %d of %d in %.1f s",
            label,
            reason,
            self.failures,
            policy.attempts - 1,
            delay,
        )
        self.ctx.progress(message=f"retry {self.failures} in {delay:.1f} s: {reason}")
        await anyio.sleep(delay)

    def _error(self, reason: str) -> DownloadError:
        transfer = self.transfer
        return DownloadError(f"could not download {transfer.label} from {transfer.url}: {reason}")

    def _check_space(self, needed: int) -> None:
        folder = Path(self.transfer.dest).parent
        free = self.free_space(folder)
        if free < needed:
            raise NotEnoughSpace(
                f"not enough space to download {self.transfer.label}: it needs "
                f"{_human(needed)} ({needed:,} bytes) in {folder}, but only {_human(free)} "
                f"({free:,} bytes) are free there. Free some space, or put the model store "
                "on a larger disk (IPYJOBS_HOME)."
            )


async def _run_until_done(
    tasks: list[Callable[[], Awaitable[None]]], background: list[Callable[[], Awaitable[None]]]
) -> None:
    """Run ``tasks`` concurrently, with ``background`` tasks that stop once ``tasks`` are done.
    The first error cancels everything else and is raised as it is (no exception group)."""
    errors: list[Exception] = []

    async def guarded(task: Callable[[], Awaitable[None]]) -> None:
        try:
            await task()
        except Exception as exc:
            errors.append(exc)
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for task in background:
            group.start_soon(guarded, task)
        async with anyio.create_task_group() as workers:
            for task in tasks:
                workers.start_soon(guarded, task)
        group.cancel_scope.cancel()
    if errors:
        raise errors[0]


async def _close(response: httpx.Response) -> None:
    with anyio.CancelScope(shield=True):
        await response.aclose()


def _content_range(value: str) -> tuple[int | None, int | None, int | None]:
    """``(first, last, total)`` from ``bytes 100-199/1000``; ``None`` where absent or ``*``."""
    unit, _, spec = value.strip().partition(" ")
    span, _, total = spec.partition("/")
    first, _, last = span.partition("-")
    if unit != "bytes" or not first.isdigit() or not last.isdigit():
        return None, None, int(total) if total.isdigit() else None
    return int(first), int(last), int(total) if total.isdigit() else None


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _describe(exc: BaseException, policy: RetryPolicy) -> str:
    if isinstance(exc, httpx.ReadTimeout):
        return f"no data for {policy.stall_timeout:g} s (stalled)"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within {policy.connect_timeout:g} s"
    text = str(exc)
    if isinstance(exc, _Retry) or not text:
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _human(count: float) -> str:
    """``75.6 MB``: decimal units, as download tools show them."""
    units = ("B", "kB", "MB", "GB", "TB")
    step = 0
    while count >= 1000 and step < len(units) - 1:
        count, step = count / 1000, step + 1
    return f"{count:.0f} B" if step == 0 else f"{count:.1f} {units[step]}"
