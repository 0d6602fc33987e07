"""Answers that are clearly not the model: an HTML page with status 200 (a login or error page),
or a file of another size. They are rejected at once with what the server sent, nothing is kept,
and the store never calls them ready, with or without a SHA-256 in the entry."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from ipyjobs import JobManager
from ipyjobs.models import DownloadError, ModelEntry, ModelStore
from tests.models.jobs import NeedsModel
from tests.models.test_download import leftovers
from tests.support.http_server import LoopbackServer

pytestmark = pytest.mark.anyio

PAGE = b"""<!DOCTYPE html>
<html><head><title>Sign in - Example Hub</title></head>
<body><form action="/login">Please sign in to download this file.</form></body></html>
"""
MODEL = os.urandom(300_000)
SHA256 = hashlib.sha256(MODEL).hexdigest()


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    page, model = tmp_path / "page.html", tmp_path / "model.pt"
    page.write_bytes(PAGE)
    model.write_bytes(MODEL)
    return page, model


def register(store: ModelStore, url: str, *, sha256: str | None, size: int | None) -> ModelEntry:
    return store.register(ModelEntry("whisper", "mine", "mine.pt", url, sha256, size))


def assert_kept_nothing(store: ModelStore) -> None:
    assert store.info("whisper/mine").status == "missing"
    assert store.ready_path("whisper/mine") is None
    assert leftovers(store.folder / "whisper" / "mine.pt") == []
    assert "whisper/mine" not in store._read_manifest()


@pytest.mark.parametrize("sha256", [SHA256, None], ids=["with-sha256", "size-only"])
async def test_an_html_page_with_status_200_is_not_the_model(
    manager: JobManager,
    server: LoopbackServer,
    store: ModelStore,
    files: tuple[Path, Path],
    sha256: str | None,
) -> None:
    url = server.add_file("/mine.pt", files[0], content_type="text/html; charset=utf-8")
    register(store, url, sha256=sha256, size=len(MODEL))
    with pytest.raises(DownloadError, match="NotTheModel") as error:
        await manager.dispatch(NeedsModel("whisper/mine"))
    message = str(error.value)
    assert f"the server sent an HTML page (text/html; charset=utf-8, {len(PAGE):,} bytes" in message
    assert "'Sign in - Example Hub'" in message and "login or error page" in message
    assert f"instead of the model of {len(MODEL):,} bytes" in message and url in message
    assert "try again" not in message
    assert len(server.requests("/mine.pt")) == 1  # not retried: retrying cannot help
    assert_kept_nothing(store)


async def test_an_html_page_sent_as_binary_without_length_is_recognised(
    manager: JobManager, server: LoopbackServer, store: ModelStore, files: tuple[Path, Path]
) -> None:
    url = server.add_file("/mine.pt", files[0], send_length=False)
    register(store, url, sha256=SHA256, size=None)
    with pytest.raises(DownloadError, match="NotTheModel") as error:
        await manager.dispatch(NeedsModel("whisper/mine"))
    assert f"the server sent an HTML page ({len(PAGE):,} bytes" in str(error.value)
    assert "ChecksumMismatch" not in str(error.value)
    assert_kept_nothing(store)


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "no-length"])
async def test_a_file_of_another_size_is_not_the_model(
    manager: JobManager,
    server: LoopbackServer,
    store: ModelStore,
    files: tuple[Path, Path],
    send_length: bool,
) -> None:
    url = server.add_file("/mine.pt", files[1], send_length=send_length)
    register(store, url, sha256=None, size=len(MODEL) + 1)
    with pytest.raises(DownloadError, match="NotTheModel") as error:
        await manager.dispatch(NeedsModel("whisper/mine"))
    message = str(error.value)
    assert f"a file of another size ({'application/octet-stream, ' * send_length}" in message
    assert f"{len(MODEL):,} bytes) instead of the model of {len(MODEL) + 1:,} bytes" in message
    assert_kept_nothing(store)


async def test_without_a_sha256_the_known_size_decides_and_the_hash_is_recorded(
    manager: JobManager, server: LoopbackServer, store: ModelStore, files: tuple[Path, Path]
) -> None:
    url = server.add_file("/mine.pt", files[1], send_length=False)
    register(store, url, sha256=None, size=len(MODEL))
    path = Path(await manager.dispatch(NeedsModel("whisper/mine")))
    assert path.read_bytes() == MODEL and store.info("whisper/mine").status == "ready"
    assert store.recorded_sha256(store.entry("whisper/mine")) == SHA256


async def test_a_wrong_file_an_older_version_recorded_is_not_ready_nor_trusted(
    manager: JobManager, server: LoopbackServer, store: ModelStore, files: tuple[Path, Path]
) -> None:
    # As the previous version left it: the login page kept as "ready", its hash recorded.
    url = server.add_file("/mine.pt", files[1])
    entry = register(store, url, sha256=None, size=len(MODEL))
    wrong = store.target(entry)
    wrong.write_bytes(PAGE)
    store.record_verified(entry, wrong, hashlib.sha256(PAGE).hexdigest(), "download")
    assert store.info(entry).status == "missing" and store.ready_path(entry) is None
    assert store.recorded_sha256(entry) is None  # the page's hash is not what to expect
    assert await store.verify(entry) is False
    path = Path(await manager.dispatch(NeedsModel("whisper/mine")))
    assert path.read_bytes() == MODEL and store.info(entry).status == "ready"
    record = json.loads((store.folder / "manifest.json").read_text())["whisper/mine"]
    assert (record["sha256"], record["size"]) == (SHA256, len(MODEL))
