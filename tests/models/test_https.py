"""Downloads over HTTPS, as from every real model host: a test CA trusted through
``SSL_CERT_FILE``, and a ``302`` from the host named in the catalog to another one (another
port here) that serves the bytes, as the model hosts send downloads to a CDN. TLS bodies take
the other receive path (through httpx and h11, not straight from the socket)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from ipyjobs import JobManager
from ipyjobs.models import ChecksumMismatch, DownloadError, ModelEntry, ModelStore
from ipyjobs.models.download import Transfer
from tests.models.jobs import NeedsModel
from tests.models.test_download import FAST, PARALLEL, FetchJob, leftovers
from tests.support.http_server import Fault, LoopbackServer

pytestmark = pytest.mark.anyio

SIZE = 3 * 1024 * 1024 + 7
PATH = "/models/blob.bin"


@pytest.fixture
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def cdn(test_ca: trustme.CA, https_server: LoopbackServer) -> Iterator[LoopbackServer]:
    """The HTTPS server holding the bytes; ``https_server`` only redirects to it."""
    with LoopbackServer(tls=test_ca) as server:
        yield server


@pytest.fixture
def transfer(
    tmp_path: Path, https_server: LoopbackServer, cdn: LoopbackServer, data: bytes
) -> Transfer:
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    url = https_server.add_redirect(PATH, cdn.add_file(PATH, source))
    assert url.startswith("https://") and cdn.port != https_server.port
    dest = tmp_path / "store" / "blob.bin"
    return Transfer(url, dest, hashlib.sha256(data).hexdigest(), SIZE, "test model blob")


async def test_a_dropped_connection_is_resumed_with_a_range_through_the_redirect(
    manager: JobManager,
    https_server: LoopbackServer,
    cdn: LoopbackServer,
    transfer: Transfer,
    data: bytes,
) -> None:
    cdn.add_fault(PATH, Fault("drop", after_bytes=SIZE // 3))
    result = await manager.dispatch(FetchJob(transfer))
    assert transfer.dest.read_bytes() == data and result.sha256 == transfer.sha256
    assert [r.status for r in https_server.requests(PATH)] == [302, 302]
    first, second = cdn.requests(PATH)
    assert (first.fault, first.status) == ("drop", 200)
    assert second.range == f"bytes={SIZE // 3}-{SIZE - 1}" and second.status == 206
    assert second.if_range and second.if_range.startswith('"')
    assert cdn.bytes_sent(PATH) == SIZE  # nothing received was fetched twice
    assert leftovers(transfer.dest) == ["blob.bin"]


@pytest.mark.parametrize(
    "fault",
    [
        Fault("short", after_bytes=SIZE // 2),
        Fault("status", status=503, retry_after=0),
        Fault("stall", after_bytes=SIZE // 2, seconds=2.0),
        Fault("ignore_range"),
    ],
    ids=lambda fault: fault.kind,
)
async def test_faults_over_https_end_in_the_verified_file(
    manager: JobManager, cdn: LoopbackServer, transfer: Transfer, data: bytes, fault: Fault
) -> None:
    if fault.kind == "ignore_range":  # a drop first, so that a range is asked and ignored
        cdn.add_fault(PATH, Fault("drop", after_bytes=SIZE // 2))
    cdn.add_fault(PATH, fault)
    policy = replace(FAST, stall_timeout=0.5)
    await manager.dispatch(FetchJob(transfer, policy))
    assert transfer.dest.read_bytes() == data
    assert leftovers(transfer.dest) == ["blob.bin"]


async def test_wrong_bytes_over_https_keep_nothing(
    manager: JobManager, cdn: LoopbackServer, transfer: Transfer
) -> None:
    cdn.add_fault(PATH, Fault("wrong_bytes", after_bytes=1000))
    with pytest.raises(ChecksumMismatch, match=transfer.sha256):
        await manager.dispatch(FetchJob(transfer))
    assert leftovers(transfer.dest) == []


async def test_parallel_pieces_over_https(
    manager: JobManager, cdn: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    cdn.add_fault(PATH, Fault("drop", after_bytes=SIZE // 5))
    await manager.dispatch(FetchJob(transfer, PARALLEL))
    assert transfer.dest.read_bytes() == data
    pieces = [r for r in cdn.requests(PATH) if r.status == 206]
    assert len(pieces) > PARALLEL.parallel_streams  # the rest came in pieces


async def test_an_untrusted_certificate_fails_at_once_with_the_fix(
    manager: JobManager,
    cdn: LoopbackServer,
    transfer: Transfer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(DownloadError) as error:
        await manager.dispatch(FetchJob(transfer))
    message = str(error.value)
    assert "certificate" in message and "SSL_CERT_FILE" in message
    assert cdn.requests(PATH) == []


async def test_a_model_from_an_https_host_that_redirects_is_ready_and_html_is_refused(
    manager: JobManager,
    https_server: LoopbackServer,
    cdn: LoopbackServer,
    store: ModelStore,
    tmp_path: Path,
    data: bytes,
) -> None:
    source, page = tmp_path / "model.pt", tmp_path / "login.html"
    source.write_bytes(data)
    page.write_text("<!doctype html><title>Log in</title>")
    sha256 = hashlib.sha256(data).hexdigest()
    url = https_server.add_redirect("/m.pt", cdn.add_file("/m.pt", source))
    store.register(ModelEntry("whisper", "mine", "mine.pt", url, sha256, SIZE))
    path = Path(await manager.dispatch(NeedsModel("whisper/mine")))
    assert path.read_bytes() == data and store.info("whisper/mine").status == "ready"

    login = https_server.add_redirect(
        "/login.pt", cdn.add_file("/login.pt", page, content_type="text/html")
    )
    store.register(ModelEntry("whisper", "theirs", "theirs.pt", login, sha256, SIZE))
    with pytest.raises(DownloadError, match="the server sent an HTML page"):
        await manager.dispatch(NeedsModel("whisper/theirs"))
    assert store.info("whisper/theirs").status == "missing"
