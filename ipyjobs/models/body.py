"""Receiving a response body into the caller's buffers, straight from the socket where it can.

Why: on a fast link a Python download is limited by the CPU of the event-loop thread, not by
the network. Through httpx, every body byte is copied four times on that thread (the socket
read into a fresh object, h11's receive buffer in and out, then into our write buffer), with
an epoll registration per read. For a plain-HTTP response whose body is its raw bytes
(identity encoding, not chunked), :class:`SocketBody` instead reads the socket into the
caller's buffer: one copy, by the kernel.

How: clients made by :func:`read_bodies_directly` open connections whose streams
(:class:`_Stream`) read the socket themselves and hand h11 nothing past the blank line that
ends a response's headers. When httpx returns the response, the body is therefore still in the
socket (or in the stream's leftover of the read that ended the headers). Reading it past h11
leaves h11 expecting a body, so httpcore closes the connection when the response is closed
instead of reusing it: one TCP connect per request, nothing on a download of megabytes.

Everything else (TLS, proxies, chunked or encoded bodies, a stream h11 has read body bytes
from) goes through httpx and h11: :class:`StreamedBody`, the same interface.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any, Protocol, TypeVar

import anyio
import httpcore
import httpx

#: Bytes per socket read when h11 asks (it asks for 64 KiB; larger reads cost less per byte).
READ_SIZE = 1 << 20
_HEAD_END = b"\r\n\r\n"

T = TypeVar("T", bytes, memoryview)


class Body(Protocol):
    """A response body, received in two steps so that no buffer is lent across an ``await``."""

    async def wait(self) -> None:
        """Until :meth:`read_into` has bytes (or the end) to give. Raises ``httpx.ReadTimeout``
        after the read timeout without a byte, ``httpx.ReadError`` if the connection broke."""
        ...

    def read_into(self, buffer: memoryview) -> int | None:
        """Put the bytes that have arrived into ``buffer``, without waiting: their count, 0 at
        the end of the body, ``None`` if none have arrived (:meth:`wait` first)."""
        ...


def body_of(response: httpx.Response, timeout: float | None) -> Body:
    """The body of a streamed ``response``, read straight from the socket if it can be.
    ``timeout``: the longest wait for a byte. Close the response when done, as usual."""
    stream = response.extensions.get("network_stream")
    headers = response.headers
    encoding = headers.get("content-encoding", "").strip().lower()
    plain = "transfer-encoding" not in headers and encoding in ("", "identity")
    if plain and isinstance(stream, _Stream) and stream.holds_body:
        length = headers.get("content-length", "")
        return SocketBody(stream, int(length) if length.isdigit() else None, timeout)
    return StreamedBody(response.aiter_raw())


class SocketBody:
    """A body of ``length`` bytes (``None``: up to the end of the connection) in the socket."""

    def __init__(self, stream: _Stream, length: int | None, timeout: float | None) -> None:
        self._stream, self._left, self._timeout = stream, length, timeout

    async def wait(self) -> None:
        try:
            await self._stream.wait_readable(self._timeout)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no data for {self._timeout} s") from exc

    def read_into(self, buffer: memoryview) -> int | None:
        if self._left is not None:
            if self._left == 0:
                return 0
            buffer = buffer[: self._left]
        try:
            count = self._stream.read_into(buffer)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        if self._left is not None:
            self._left -= count
        return count


class StreamedBody:
    """A body as httpx streams it, copied into the caller's buffers."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = memoryview(b"")
        self._ended = False

    async def wait(self) -> None:
        while not self._chunk and not self._ended:
            try:
                self._chunk = memoryview(await anext(self._chunks))
            except StopAsyncIteration:
                self._ended = True

    def read_into(self, buffer: memoryview) -> int | None:
        if not self._chunk:
            return 0 if self._ended else None
        count, self._chunk = _move(self._chunk, buffer)
        return count


def _move(source: T, buffer: memoryview) -> tuple[int, T]:
    """Copy the start of ``source`` into ``buffer``: how many bytes, and the rest of ``source``."""
    count = min(len(buffer), len(source))
    buffer[:count] = source[:count]
    return count, source[count:]


def read_bodies_directly(client: httpx.AsyncClient) -> None:
    """Give the client's direct (not proxied) connections streams that :func:`body_of` can read
    bodies from. The seam is httpcore's network backend, which httpx does not expose: the step
    is skipped if its private attributes are not as expected (bodies then go through h11)."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = _Backend(backend)  # type: ignore[union-attr]


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_tcp(*args, **kwargs))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(*args, **kwargs))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Stream(httpcore.AsyncNetworkStream):
    """A connection that reads its socket itself, stopping at the end of each response's headers.

    Relies on the inner stream reading only when asked (anyio pauses an asyncio transport's
    reading between receives; trio never reads ahead), so the socket is ours to read. TLS
    streams are read through the inner stream and never hold a body for :class:`SocketBody`.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        sock = inner.get_extra_info("socket")
        plain = sock is not None and inner.get_extra_info("ssl_object") is None
        # A second descriptor of the socket: asyncio refuses to watch the transport's own.
        self._fd: int | None = os.dup(sock.fileno()) if plain else None
        self._in_head = False  # a request went out; its response's headers are being read
        self._tail = b""  # the last bytes of the head so far, to find a blank line across reads
        self._leftover = b""  # received after the head, not handed to h11
        self.holds_body = False
        """The body of the current response is unread: in the socket and ``_leftover``."""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._in_head, self._tail, self.holds_body = True, b"", False
        await self._inner.write(buffer, timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._fd is None:
            return await self._inner.read(max_bytes, timeout)
        data, self._leftover = self._leftover, b""
        if not data:
            try:
                data = await self._receive(max(max_bytes, READ_SIZE), timeout)
            except TimeoutError as exc:
                raise httpcore.ReadTimeout(str(exc)) from exc
            except OSError as exc:
                raise httpcore.ReadError(str(exc)) from exc
        if not self._in_head:
            self.holds_body = False  # h11 reads the body
            return data
        seen = self._tail + data
        end = seen.find(_HEAD_END)
        if end < 0:
            self._tail = seen[-len(_HEAD_END) + 1 :]
            return data
        cut = end + len(_HEAD_END) - len(self._tail)
        data, self._leftover = data[:cut], data[cut:]
        self._in_head, self.holds_body = False, True
        return data

    async def wait_readable(self, timeout: float | None) -> None:
        """Until :meth:`read_into` has bytes (or the end) to give; raises ``TimeoutError``."""
        if not self._leftover:
            assert self._fd is not None
            with anyio.fail_after(timeout):
                await anyio.wait_readable(self._fd)

    def read_into(self, buffer: memoryview) -> int:
        """Body bytes into ``buffer``, without waiting; raises ``BlockingIOError`` if none
        have arrived, ``OSError`` if the connection broke."""
        if self._leftover:
            count, self._leftover = _move(self._leftover, buffer)
            return count
        assert self._fd is not None
        return os.readv(self._fd, [buffer])

    async def _receive(self, max_bytes: int, timeout: float | None) -> bytes:
        assert self._fd is not None
        while True:
            try:
                return os.read(self._fd, max_bytes)
            except BlockingIOError:
                await self.wait_readable(timeout)

    async def aclose(self) -> None:
        self._close_fd()
        await self._inner.aclose()

    async def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self._close_fd()  # the TLS stream reads the socket from now on
        return _Stream(await self._inner.start_tls(*args, **kwargs))

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
