"""How download bodies are received: straight from the socket where the answer allows it, through
httpx/h11 otherwise (proxies, chunked framing), and the boundary between the two.

The scripted server sends each answer in the pieces a test gives, with pauses between them, so
that the blank line ending the headers can straddle two socket reads.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest

from ipyjobs import JobManager
from ipyjobs.models.body import Body, SocketBody, StreamedBody, body_of
from ipyjobs.models.download import Transfer
from ipyjobs.models.httpio import new_client
from tests.models.test_download import FAST, FetchJob
from tests.support.http_server import Fault, LoopbackServer
from tests.support.proxy import ForwardProxy

pytestmark = pytest.mark.anyio


class ScriptedServer:
    """Answers every request on a connection with the next of ``answers``, each a list of byte
    pieces sent with a short pause between them; counts connections."""

    def __init__(self, answers: Sequence[Sequence[bytes]]) -> None:
        self.answers = list(answers)
        self.connections = 0
        self.url = ""

    async def serve(self, client: anyio.abc.SocketStream) -> None:
        self.connections += 1
        async with client:
            request = b""
            while self.answers:
                while b"\r\n\r\n" not in request:
                    try:
                        request += await client.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                request = request.partition(b"\r\n\r\n")[2]
                for piece in self.answers.pop(0):
                    await client.send(piece)
                    await anyio.sleep(0.05)


@asynccontextmanager
async def scripted(answers: Sequence[Sequence[bytes]]) -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer(answers)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server.url = f"http://127.0.0.1:{port}/file"
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, server.serve)
        yield server
        group.cancel_scope.cancel()


async def receive_all(body: Body) -> bytes:
    received = bytearray()
    buffer = memoryview(bytearray(100_000))
    while True:
        count = body.read_into(buffer)
        if count is None:
            await body.wait()
        elif count == 0:
            return bytes(received)
        else:
            received += buffer[:count]


async def get(url: str) -> tuple[type, bytes]:
    async with new_client(FAST) as client, client.stream("GET", url) as response:
        body = body_of(response, timeout=5)
        return type(body), await receive_all(body)


async def test_a_body_is_read_from_the_socket_even_if_the_blank_line_spans_two_reads() -> None:
    payload = os.urandom(300_000)
    head = b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: "x"\r\n\r' % len(payload)
    answer = [head, b"\n" + payload[:1000], payload[1000:]]
    async with scripted([answer]) as server:
        kind, received = await get(server.url)
    assert kind is SocketBody and received == payload


async def test_a_body_of_unknown_length_is_read_until_the_server_closes() -> None:
    payload = os.urandom(50_000)
    answer = [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", payload[:10], payload[10:]]
    async with scripted([answer]) as server:
        kind, received = await get(server.url)
    assert kind is SocketBody and received == payload


async def test_a_chunked_body_goes_through_h11_and_is_decoded() -> None:
    answer = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"6\r\n world\r\n0\r\n\r\n",
    ]
    async with scripted([answer]) as server:
        kind, received = await get(server.url)
    assert kind is StreamedBody and received == b"hello world"


async def test_a_connection_is_reused_only_after_h11_read_the_whole_body() -> None:
    chunked = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"]
    sized = [b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"]
    async with scripted([chunked, chunked, sized, sized]) as server, new_client(FAST) as client:
        received = []
        for _ in range(4):
            async with client.stream("GET", server.url) as response:
                received.append(await receive_all(body_of(response, timeout=5)))
    assert received == [b"hi", b"hi", b"abc", b"abc"]
    # The two chunked answers share one connection; the first body read from the socket leaves
    # h11 expecting it, so that connection is closed and the last answer needs a new one.
    assert server.connections == 2


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> ForwardProxy:
    with ForwardProxy() as proxy:
        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        yield proxy


async def test_a_download_goes_through_the_proxy_in_the_environment_and_resumes_there(
    manager: JobManager, server: LoopbackServer, proxy: ForwardProxy, tmp_path: Path
) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    (tmp_path / "blob.bin").write_bytes(data)
    url = server.add_file("/via-proxy/blob.bin", tmp_path / "blob.bin")
    server.add_fault("/via-proxy/blob.bin", Fault("drop", after_bytes=len(data) // 2))
    dest = tmp_path / "store" / "blob.bin"
    transfer = Transfer(url, dest, hashlib.sha256(data).hexdigest(), len(data), "proxied blob")
    result = await manager.dispatch(FetchJob(transfer))
    assert dest.read_bytes() == data and result.received == len(data)
    assert proxy.requested == [url, url]  # the first answer broke off; the rest came as a range
    # The proxy re-framed the answer as chunked, without a length: the second request asks for
    # the rest from where the bytes received end, and learns the size from Content-Range.
    second = server.requests("/via-proxy/blob.bin")[1]
    start = int(second.range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= len(data) // 2 and second.status == 206
