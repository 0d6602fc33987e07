"""The HTTP side of a download: requests, ranges, retries, parallel pieces.

A download is a list of segments of the file (:class:`~.partfile.Segment`). A fresh download is
one GET of the whole file. If it is large, the server serves ranges, and one second in the rest
would still take longer than ``parallel_after`` seconds at the speed so far, the rest is cut into
pieces that more streams (up to ``parallel_streams``) take in order, while the first request
goes on up to where the pieces begin. More connections beat a slow or throttled link; on a fast
one they only add work for the event loop, which is then the limit, so they are not opened.

Every later request carries ``Range`` from the segment's position on and ``If-Range`` with the
validator the first answer gave, so a resumed segment either continues the same file (206) or
the server says the file changed (200), and the download starts over from byte 0. Failed
requests are retried from the bytes on disk: nothing received is fetched twice.

Pause: between reads a stream sees the paused token, writes what it has, closes its connection
and parks at ``ctx.checkpoint()``; on resume it asks for the rest. Cancel: the same, except the
checkpoint (or anyio cancellation) raises and the caller keeps the partial file.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import httpx

from ..engine import JobContext, diskspace
from .body import body_of
from .content import SNIFF, check_answer, check_body
from .diskio import BATCH, BatchWriter
from .errors import ChecksumMismatch, DownloadError, NotEnoughSpace, NotTheModel
from .httpio import (
    RETRYABLE,
    Retry,
    StartOver,
    backoff_delay,
    close,
    content_range,
    describe,
    human_size,
    retry_after,
    timeout_for,
    untrusted_certificate,
)
from .partfile import PartFile, Segment, Sidecar
from .pieces import run_until_done, split

if TYPE_CHECKING:
    from .download import RetryPolicy, Transfer

log = logging.getLogger(__name__)

#: After this many seconds, the speed of a fresh download decides on more streams.
_DECIDE_AFTER = 1.0


class _Interrupted(Exception):
    """Pause or cancel requested: the connection is closed, then a checkpoint honours it."""


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
    ) -> None:
        self.transfer, self.expected, self.ctx = transfer, expected, ctx
        self.client, self.policy = client, policy
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
            message = f"resuming at {human_size(self.done)}" if self.done else "downloading"
            self.ctx.progress(self.done, self.total, unit="bytes", message=message)
            while True:
                try:
                    await self._pass()
                    break
                except StartOver as exc:
                    start_overs += 1
                    if start_overs >= self.policy.attempts:
                        raise self._error(f"{exc} ({start_overs} times)") from exc
                    log.warning("%s: %s; starting over from byte 0", transfer.label, exc)
                    self.ctx.progress(0, self.total, message=f"starting over: {exc}")
                    part.reset()
                    self.done, self.parallel = 0, False
            digest, size = await part.finish()
            if self.expected is None or digest != self.expected:
                check_body(transfer, await part.read_start(SNIFF), size)
        except BaseException as exc:
            if isinstance(exc, NotTheModel):
                part.remove()  # never resume from bytes that are not the model
                raise
            if diskspace.is_no_space(exc) and not isinstance(exc, NotEnoughSpace):
                # The disk filled up: give back the space the partial download took (a full
                # disk breaks everything else too), and say which disk.
                error = self._no_space("The partial download was deleted")
                part.remove()
                raise error from exc
            with anyio.CancelScope(shield=True):
                await self._keep_partial()
            raise
        if self.expected is not None and digest != self.expected:
            part.remove()
            sized = ", the right size" if transfer.size is not None else ""
            raise ChecksumMismatch(
                f"the download of {transfer.label} from {transfer.url} is corrupt: expected "
                f"SHA-256 {self.expected}, got {digest} ({size:,} bytes{sized}). The file was "
                "deleted, nothing was kept; try again, and if it persists the server has "
                "another version of the file."
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
        queue = deque(segment for segment in part.state.segments if not segment.complete)
        if not queue:
            if first is not None:
                await close(first)
            return
        streams = min(self.policy.parallel_streams, len(queue))
        decided = anyio.Event()  # whether more streams take on the rest of a fresh download
        if first is None or not self._may_split(first):
            decided.set()
        started, received = time.monotonic(), self.received

        def decide() -> None:
            nonlocal streams
            if not decided.is_set():
                rate = (self.received - received) / max(time.monotonic() - started, 1e-3)
                streams = self._split(queue, self.received - received, rate)
                decided.set()

        async def decide_soon() -> None:
            await anyio.sleep(min(_DECIDE_AFTER, self.policy.parallel_after))
            decide()

        async def stream(index: int) -> None:
            if index > 0:
                await decided.wait()
                if index >= streams:
                    return
            async with BatchWriter(part) as writer:
                if first is not None and index == 0:
                    await self._fetch_segment(queue.popleft(), first, writer)
                    decide()
                while queue:  # one queue for all streams: pieces go out in order
                    await self._fetch_segment(queue.popleft(), None, writer)

        workers = [functools.partial(stream, i) for i in range(self.policy.parallel_streams)]
        background: list[Callable[[], Awaitable[None]]] = [part.follow_hash, part.keep_synced]
        if not decided.is_set():
            background.append(decide_soon)
        try:
            await run_until_done(workers, background)
        finally:
            if first is not None and not first.is_closed:  # cancelled before stream 0 began
                await close(first)

    def _may_split(self, response: httpx.Response) -> bool:
        total, policy = self.total, self.policy
        ranges = "bytes" in response.headers.get("accept-ranges", "").lower()
        return self.parallel and ranges and total is not None and total >= policy.parallel_min_size

    def _split(self, queue: deque[Segment], received: int, rate: float) -> int:
        """How many streams fetch the rest of a fresh download (see :func:`.pieces.split`)."""
        assert self.part.state is not None
        pieces = split(self.part.state, received, rate, self.policy)
        if not pieces:
            return 1
        queue.extend(pieces)
        streams = min(self.policy.parallel_streams, len(pieces) + 1)
        rest = sum((piece.end or piece.start) - piece.start for piece in pieces)
        speed = f"{human_size(rest)} left at {human_size(rate)}/s"
        log.info("%s: %s: using %d connections", self.transfer.label, speed, streams)
        return streams

    async def _open_fresh(self) -> httpx.Response:
        """The first request of a fresh download (the whole file); plans from its answer."""
        while True:
            await self.ctx.checkpoint()
            try:
                response = await self._request(None)
            except RETRYABLE as exc:
                await self._failed(exc)
                continue
            except httpx.HTTPError as exc:
                raise self._error(describe(exc, self.policy)) from exc
            try:
                await check_answer(response, self.transfer)
                self._plan(response)
            except BaseException:
                await close(response)
                raise
            return response

    def _plan(self, response: httpx.Response) -> None:
        """The state of a fresh download, from the headers of the first answer."""
        headers, transfer = response.headers, self.transfer
        length = headers.get("content-length", "")
        total = int(length) if length.isdigit() else None
        if total is not None:
            self._check_space(total)
        etag, modified = headers.get("etag"), headers.get("last-modified")
        segments = [Segment(0, total)]
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
                        await close(response)
                        response = None
            except _Interrupted:
                await self.part.sync()  # the job stops here a while: make the bytes durable
            except RETRYABLE as exc:
                await self._failed(exc)
            except httpx.HTTPError as exc:
                raise self._error(describe(exc, self.policy)) from exc

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
            await close(response)
            raise
        if self.failures:
            self.ctx.progress(message="downloading")
        return response

    def _check_status(self, response: httpx.Response, segment: Segment | None) -> None:
        status, state = response.status_code, self.part.state
        if status == 200 and (segment is None or state is None):
            return  # the whole file, as asked, or as the first answer of a fresh download
        if status == 206 and segment is not None:
            start, last, total = content_range(response.headers.get("content-range", ""))
            known = state.total if state is not None and state.total is not None else total
            if start != segment.position or last is None or total is None or total != known:
                raise StartOver(
                    f"the server sent bytes {start}-{last} of {total} when asked for "
                    f"{segment.position}- of {known}: the file changed"
                )
            if state is not None and state.total is None:  # the first answer did not say
                state.total = total
                if segment.end is None:
                    segment.end = total
            return
        if status == 200:
            raise StartOver(
                "the server answered a range request with the whole file: it ignores ranges, "
                "or the file changed"
            )
        if status == 416 and segment is not None:
            raise StartOver(f"the server cannot serve bytes {segment.position}- (HTTP 416)")
        if status in (408, 429) or 500 <= status <= 599:
            wait = retry_after(response.headers.get("retry-after"))
            raise Retry(f"HTTP {status} {response.reason_phrase}".strip(), wait)
        raise self._error(f"the server answered HTTP {status} {response.reason_phrase}".strip())

    async def _receive(
        self, segment: Segment, response: httpx.Response, writer: BatchWriter
    ) -> None:
        """Receive the body at ``segment.position``, in batches, until the segment is complete.

        What arrived is always written before this returns or raises (shielded: a cancel loses
        nothing received). Bytes past the segment's end are never read. Raises ``_Interrupted``
        on pause or cancel, ``Retry`` if the body ended early.
        """
        token, progress, total = self.ctx.token, self.ctx.progress, self.total
        body = body_of(response, self.timeout.read)
        position = segment.position  # received up to here (written up to segment.position)
        try:
            while segment.end is None or position < segment.end:
                limit = BATCH if segment.end is None else segment.end - position
                window = await writer.window(segment, limit)
                count = body.read_into(window)  # no await while the window is lent
                window.release()
                if count is None:
                    await body.wait()
                    continue
                if count == 0:
                    break
                writer.advance(count)
                position += count
                self.received += count
                self.done += count
                self.failures = 0
                progress(self.done, total)
                if token.paused or token.cancelled:
                    raise _Interrupted
                await anyio.lowlevel.checkpoint()  # bytes may keep coming: let others run too
        finally:
            with anyio.CancelScope(shield=True):
                await writer.flush()
        if segment.end is None:  # a body of unknown length ended: that was all of it
            segment.end = segment.position
        elif not segment.complete:
            raise Retry(f"the body ended at byte {segment.position} of {segment.end}")

    # -- failures --------------------------------------------------------------------------------

    async def _failed(self, exc: Exception) -> None:
        """Count a failed request, then wait before the next one; give up after ``attempts``."""
        self.failures += 1
        policy, label = self.policy, self.transfer.label
        reason = describe(exc, policy)
        if untrusted_certificate(exc):
            raise self._error(reason) from exc
        if self.failures >= policy.attempts:
            raise self._error(f"{reason} (gave up after {self.failures} attempts)") from exc
        delay = backoff_delay(policy, self.failures, getattr(exc, "retry_after", None))
        message = f"retry {self.failures} in {delay:.1f} s: {reason}"
        log.warning("%s: %s (of %d attempts)", label, message, policy.attempts)
        self.ctx.progress(message=message)
        await anyio.sleep(delay)

    def _error(self, reason: str) -> DownloadError:
        transfer = self.transfer
        return DownloadError(f"could not download {transfer.label} from {transfer.url}: {reason}")

    def _check_space(self, needed: int) -> None:
        if diskspace.free_bytes(Path(self.transfer.dest).parent) < needed:
            raise self._no_space("Nothing was downloaded", needed)

    def _no_space(self, done: str, needed: int | None = None) -> NotEnoughSpace:
        """``NotEnoughSpace`` naming the disk, its free bytes, and what was done about it."""
        transfer = self.transfer
        folder = Path(transfer.dest).parent
        message = str(diskspace.no_space_left(folder, f"downloading {transfer.label}", needed))
        return NotEnoughSpace(
            f"{message} {done}; the models folder is under IPYJOBS_HOME, which can point to a "
            "larger disk."
        )
