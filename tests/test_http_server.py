"""Tests for the loopback test server: real HTTP through httpx, one behaviour per test."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.support.http_server import Fault, LoopbackServer, RequestRecord

SIZE = 2 * 1024 * 1024 + 123  # odd size so off-by-one range bugs show
PATH = "/models/blob.bin"


@pytest.fixture
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def blob(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    return path


@pytest.fixture
def url(server: LoopbackServer, blob: Path) -> str:
    return server.add_file(PATH, blob)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    # Shared: building a client loads the CA bundle (~50 ms), and pooling across servers is fine.
    with httpx.Client(timeout=10) as c:
        yield c


def read_until_error(
    client: httpx.Client, url: str, headers: dict[str, str] | None = None
) -> tuple[bytearray, Exception | None]:
    """Stream a GET, returning the body bytes received and the exception that ended it."""
    got = bytearray()
    try:
        with client.stream("GET", url, headers=headers) as response:
            for chunk in response.iter_raw():  # no chunk_size: httpx would buffer the tail
                got += chunk
    except httpx.HTTPError as exc:
        return got, exc
    return got, None


# -- normal HTTP semantics --------------------------------------------------------------------


def test_full_get_matches_file(
    server: LoopbackServer, url: str, client: httpx.Client, data: bytes
) -> None:
    response = client.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"].startswith('"')  # strong
    assert "last-modified" in response.headers
    assert server.bytes_sent(PATH) == SIZE
    assert server.requests(PATH) == [RequestRecord("GET", None, 200, None, None)]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=100-199", 100, 200),
        ("bytes=1000-", 1000, SIZE),
        ("bytes=-500", SIZE - 500, SIZE),
        ("bytes=-99999999", 0, SIZE),  # suffix longer than file: whole file
        ("bytes=5-99999999", 5, SIZE),  # end past EOF is clamped
        (f"bytes={SIZE - 1}-", SIZE - 1, SIZE),
    ],
)
def test_range_returns_206_with_exact_bytes(
    server: LoopbackServer,
    url: str,
    client: httpx.Client,
    data: bytes,
    header: str,
    start: int,
    end: int,
) -> None:
    response = client.get(url, headers={"Range": header})
    assert response.status_code == 206
    assert response.content == data[start:end]
    assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{SIZE}"
    assert response.headers["content-length"] == str(end - start)
    assert server.bytes_sent(PATH) == end - start
    assert server.requests(PATH) == [RequestRecord("GET", header, 206, None, None)]


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"])
def test_unsatisfiable_range_is_416(
    server: LoopbackServer, url: str, client: httpx.Client, header: str
) -> None:
    response = client.get(url, headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    assert server.bytes_sent(PATH) == 0


@pytest.mark.parametrize("header", ["bytes=9-3", "bytes=0-1,5-6", "items=0-1", "bytes=x-"])
def test_invalid_or_multi_range_is_ignored(
    url: str, client: httpx.Client, data: bytes, header: str
) -> None:
    response = client.get(url, headers={"Range": header})
    assert response.status_code == 200
    assert response.content == data


def test_if_range_with_current_validator_honours_range(
    url: str, client: httpx.Client, data: bytes
) -> None:
    head = client.head(url)
    for validator in (head.headers["etag"], head.headers["last-modified"]):
        response = client.get(url, headers={"Range": "bytes=10-19", "If-Range": validator})
        assert response.status_code == 206
        assert response.content == data[10:20]


@pytest.mark.parametrize(
    "validator", ['"not-the-etag"', "W/{etag}", "Mon, 01 Jan 2001 00:00:00 GMT"]
)
def test_if_range_with_stale_or_weak_validator_sends_full_body(
    server: LoopbackServer, url: str, client: httpx.Client, data: bytes, validator: str
) -> None:
    validator = validator.format(etag=client.head(url).headers["etag"])
    response = client.get(url, headers={"Range": "bytes=10-19", "If-Range": validator})
    assert response.status_code == 200
    assert response.content == data
    assert server.requests(PATH)[-1] == RequestRecord("GET", "bytes=10-19", 200, None, validator)


def test_replacing_the_file_changes_etag(url: str, client: httpx.Client, blob: Path) -> None:
    old_etag = client.head(url).headers["etag"]
    new = blob.with_name("new.bin")
    new_data = os.urandom(SIZE)  # same size: only mtime/inode tell the versions apart
    new.write_bytes(new_data)
    os.replace(new, blob)
    assert client.head(url).headers["etag"] != old_etag
    response = client.get(url, headers={"Range": "bytes=0-9", "If-Range": old_etag})
    assert response.status_code == 200
    assert response.content == new_data


def test_head_has_get_headers_and_no_body(
    server: LoopbackServer, url: str, client: httpx.Client
) -> None:
    get = client.get(url)
    server.reset_counters()
    head = client.head(url, headers={"Range": "bytes=0-9"})  # Range is GET-only: ignored
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-length", "etag", "last-modified", "accept-ranges", "content-type"):
        assert head.headers[name] == get.headers[name]
    assert server.bytes_sent(PATH) == 0
    assert server.requests(PATH) == [RequestRecord("HEAD", "bytes=0-9", 200, None, None)]


def test_unknown_path_is_404(server: LoopbackServer, client: httpx.Client) -> None:
    response = client.get(server.url_for("/nope.bin"))
    assert response.status_code == 404
    assert server.requests("/nope.bin") == [RequestRecord("GET", None, 404, None, None)]


def test_concurrent_downloads_are_all_correct(
    server: LoopbackServer, url: str, data: bytes
) -> None:
    results: list[bytes] = []

    def fetch() -> None:
        results.append(httpx.get(url, timeout=10).content)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [data] * 8
    assert server.bytes_sent(PATH) == 8 * SIZE


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("after", [0, 1000, 1_500_000])
def test_drop_resets_connection_after_exact_bytes(
    server: LoopbackServer, url: str, client: httpx.Client, data: bytes, after: int
) -> None:
    server.add_fault(PATH, Fault("drop", after_bytes=after))
    got, error = read_until_error(client, url)
    assert isinstance(error, (httpx.ReadError, httpx.RemoteProtocolError))
    assert got == data[:after]
    assert server.bytes_sent(PATH) == after
    assert server.requests(PATH) == [RequestRecord("GET", None, 200, "drop", None)]
    # The next request on the same client is clean (times=1 by default).
    assert client.get(url).content == data


def test_drop_applies_within_a_range(
    server: LoopbackServer, url: str, client: httpx.Client, data: bytes
) -> None:
    server.add_fault(PATH, Fault("drop", after_bytes=5000))
    got, error = read_until_error(client, url, {"Range": "bytes=1000-"})
    assert error is not None
    assert got == data[1000:6000]
    resumed = client.get(url, headers={"Range": f"bytes={1000 + len(got)}-"})
    assert bytes(got) + resumed.content == data[1000:]


def test_short_declares_full_length_and_closes(
    server: LoopbackServer, url: str, client: httpx.Client, data: bytes
) -> None:
    server.add_fault(PATH, Fault("short", after_bytes=70_000))
    got, error = read_until_error(client, url)
    assert isinstance(error, httpx.RemoteProtocolError)  # "incomplete message body"
    assert got == data[:70_000]
    assert server.bytes_sent(PATH) == 70_000
    assert client.get(url).content == data


@pytest.mark.parametrize(
    ("status", "retry_after"), [(500, None), (503, 7), (429, 2), (408, None), (404, None)]
)
def test_status_fault(
    server: LoopbackServer,
    url: str,
    client: httpx.Client,
    data: bytes,
    status: int,
    retry_after: int | None,
) -> None:
    server.add_fault(PATH, Fault("status", status=status, retry_after=retry_after))
    response = client.get(url)
    assert response.status_code == status
    assert response.headers.get("retry-after") == (
        None if retry_after is None else str(retry_after)
    )
    assert server.bytes_sent(PATH) == 0  # fault bodies are not file bytes
    assert client.get(url).content == data
    assert [r.status for r in server.requests(PATH)] == [status, 200]


def test_status_fault_applies_to_head_but_body_faults_wait_for_get(
    server: LoopbackServer, url: str, client: httpx.Client, data: bytes
) -> None:
    server.add_fault(PATH, Fault("status", status=503))
    server.add_fault(PATH, Fault("short", after_bytes=10))
    assert client.head(url).status_code == 503
    assert client.head(url).status_code == 200  # does not use up the "short"
    got, error = read_until_error(client, url)
    assert isinstance(error, httpx.RemoteProtocolError)
    assert got == data[:10]
    assert [(r.method, r.fault) for r in server.requests(PATH)] == [
        ("HEAD", "status"),
        ("HEAD", None),
        ("GET", "short"),
    ]


def test_ignore_range_sends_200_full_body(
    server: LoopbackServer, url: str, client: httpx.Client, data: bytes
) -> None:
    server.add_fault(PATH, Fault("ignore_range"))
    response = client.get(url, headers={"Range": "bytes=100-"})
    assert response.status_code == 200
    assert "content-range" not in response.headers
    assert response.content == data
    assert client.get(url, headers={"Range": "bytes=100-"}).status_code == 206


def test_stall_trips_a_short_read_timeout(server: LoopbackServer, url: str, data: bytes) -> None:
    server.add_fault(PATH, Fault("stall", after_bytes=4096, seconds=30))
    with httpx.Client(timeout=httpx.Timeout(5, read=0.3)) as impatient:
        started = time.monotonic()
        got, error = read_until_error(impatient, url)
    assert isinstance(error, httpx.ReadTimeout)
    assert time.monotonic() - started < 5
    assert got == data[:4096]


def test_stall_then_continues_for_a_patient_client(
    server: LoopbackServer, url: str, client: httpx.Client, data: bytes
) -> None:
    server.add_fault(PATH, Fault("stall", after_bytes=10_000, seconds=0.4))
    started = time.monotonic()
    response = client.get(url)
    assert time.monotonic() - started >= 0.4
    assert response.content == data
    assert server.bytes_sent(PATH) == SIZE


def test_wrong_bytes_keeps_length_but_changes_hash(
    server: LoopbackServer, url: str, client: httpx.Client, data: bytes
) -> None:
    server.add_fault(PATH, Fault("wrong_bytes", after_bytes=1000))
    body = client.get(url).content
    assert len(body) == SIZE
    assert hashlib.sha256(body).digest() != hashlib.sha256(data).digest()
    assert body[:1000] == data[:1000]
    assert body[1000:] == data[1000:].translate(bytes(b ^ 0xFF for b in range(256)))
    assert server.bytes_sent(PATH) == SIZE
    assert client.get(url).content == data


def test_times_and_order(server: LoopbackServer, url: str, client: httpx.Client) -> None:
    server.add_fault(PATH, Fault("status", status=503, times=2))
    server.add_fault(PATH, Fault("status", status=429))
    statuses = [client.get(url).status_code for _ in range(4)]
    assert statuses == [503, 503, 429, 200]


def test_times_forever_until_cleared(
    server: LoopbackServer, url: str, client: httpx.Client
) -> None:
    server.add_fault(PATH, Fault("status", status=500, times=-1))
    assert [client.get(url).status_code for _ in range(5)] == [500] * 5
    server.clear_faults(PATH)
    assert client.get(url).status_code == 200


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Fault("drop", times=0)
    with pytest.raises(ValueError):
        Fault("drop", after_bytes=-1)


# -- counters and lifecycle -------------------------------------------------------------------


def test_bytes_sent_counts_exactly_and_resets(
    server: LoopbackServer, url: str, client: httpx.Client, blob: Path
) -> None:
    other = server.add_file("/other.bin", blob)
    client.get(url)
    client.get(url, headers={"Range": "bytes=10-109"})
    client.head(url)
    server.add_fault(PATH, Fault("short", after_bytes=333))
    read_until_error(client, url)
    client.get(other, headers={"Range": "bytes=-7"})
    assert server.bytes_sent(PATH) == SIZE + 100 + 333
    assert server.bytes_sent("/other.bin") == 7
    assert len(server.requests(PATH)) == 4
    server.reset_counters()
    assert server.bytes_sent(PATH) == 0
    assert server.requests(PATH) == []
    assert client.get(url).status_code == 200  # files are kept


def test_close_is_fast_while_a_client_is_mid_stall(blob: Path, data: bytes) -> None:
    server = LoopbackServer().start()
    url = server.add_file(PATH, blob)
    server.add_fault(PATH, Fault("stall", after_bytes=1000, seconds=60))
    outcome: list[tuple[bytearray, Exception | None]] = []
    with httpx.Client(timeout=60) as patient:
        reader = threading.Thread(target=lambda: outcome.append(read_until_error(patient, url)))
        reader.start()
        while server.bytes_sent(PATH) < 1000:
            time.sleep(0.01)
        idle = httpx.Client()  # an idle keep-alive connection must not hold close() up either
        idle.get(url)
        started = time.monotonic()
        server.close()
        assert time.monotonic() - started < 1
        reader.join(5)
        idle.close()
    got, error = outcome[0]
    assert error is not None
    assert got == data[:1000]


def test_server_is_quiet(
    server: LoopbackServer, url: str, client: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    server.add_fault(PATH, Fault("drop", after_bytes=10))
    read_until_error(client, url)
    client.get(url)
    client.get(server.url_for("/missing"))
    client.post(url)  # unsupported method: 501
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""


# -- TLS, redirects, other headers ----------------------------------------------------------


def test_tls_is_trusted_through_ssl_cert_file_like_the_downloader_does(
    https_server: LoopbackServer, blob: Path, data: bytes
) -> None:
    from ipyjobs.models.download import RetryPolicy
    from ipyjobs.models.httpio import new_client

    url = https_server.add_file(PATH, blob)
    assert url.startswith("https://127.0.0.1:")

    async def get() -> bytes:
        async with new_client(RetryPolicy()) as client:
            return (await client.get(url)).content

    assert anyio.run(get) == data
    with httpx.Client() as plain:  # httpx's own default client reads SSL_CERT_FILE too
        assert plain.get(url, headers={"Range": "bytes=10-19"}).content == data[10:20]


def test_tls_is_refused_without_the_test_ca(
    https_server: LoopbackServer, blob: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    url = https_server.add_file(PATH, blob)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(url)


def test_tls_drop_resets_after_exact_bytes(
    https_server: LoopbackServer, blob: Path, data: bytes
) -> None:
    url = https_server.add_file(PATH, blob)
    https_server.add_fault(PATH, Fault("drop", after_bytes=300_000))
    with httpx.Client() as tls_client:
        got, error = read_until_error(tls_client, url)
    assert bytes(got) == data[:300_000] and isinstance(error, httpx.HTTPError)


def test_redirect_to_another_server(
    server: LoopbackServer, blob: Path, data: bytes, client: httpx.Client
) -> None:
    with LoopbackServer() as cdn:
        target = cdn.add_file(PATH, blob)
        url = server.add_redirect(PATH, target)
        response = client.get(url, headers={"Range": "bytes=5-9"}, follow_redirects=True)
    assert [r.status_code for r in response.history] == [302]
    assert response.status_code == 206 and response.content == data[5:10]
    assert server.requests(PATH)[0].status == 302 and cdn.requests(PATH)[0].range == "bytes=5-9"


def test_a_file_without_length_and_with_another_type(
    server: LoopbackServer, blob: Path, data: bytes, client: httpx.Client
) -> None:
    url = server.add_file(PATH, blob, content_type="text/html", send_length=False)
    response = client.get(url)
    assert "content-length" not in response.headers and response.content == data
    assert response.headers["content-type"] == "text/html"
    assert response.headers["connection"] == "close"
