"""A disk that fills up during a download: a real full tmpfs, ENOSPC from the kernel.

The server sends no ``Content-Length`` and the size is not in the catalog, so no free-space
check can catch it first: the write fails in the middle. The job must fail with
``NotEnoughSpace`` naming the disk (never a ``BufferError`` hiding the ``ENOSPC``), and give the
space back: nothing is left. ``ModelStore.delete`` removes every partial file a crash can leave.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from ipyjobs import JobManager
from ipyjobs.engine.diskspace import NoSpaceLeft
from ipyjobs.models import ModelEntry, ModelStore, NotEnoughSpace
from ipyjobs.models.download import Transfer
from tests.models.jobs import NeedsModel
from tests.models.test_download import FAST, FetchJob, leftovers
from tests.support.http_server import LoopbackServer

pytestmark = pytest.mark.anyio

SIZE = 3 * 1024 * 1024 + 5  # more than the 2 MiB disk holds


@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, str]:
    data = os.urandom(SIZE)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def assert_names_the_full_disk(error: BaseException, disk: Path) -> None:
    assert isinstance(error, NotEnoughSpace) and isinstance(error, NoSpaceLeft)
    message = str(error)
    assert f"no space left on {disk}" in message and "bytes free" in message
    assert "BufferError" not in message and "exported pointers" not in message
    cause = error.__cause__
    assert isinstance(cause, OSError) and cause.errno == errno.ENOSPC


@pytest.mark.parametrize("scheme", ["http", "https"])  # the body from the socket, or via h11
async def test_disk_full_mid_download_without_content_length(
    manager: JobManager,
    small_disk: Path,
    blob: tuple[Path, str],
    scheme: str,
    request: pytest.FixtureRequest,
) -> None:
    server: LoopbackServer = request.getfixturevalue(
        "server" if scheme == "http" else "https_server"
    )
    source, sha256 = blob
    url = server.add_file("/blob.bin", source, send_length=False)
    dest = small_disk / "whisper" / "blob.bin"
    with pytest.raises(NotEnoughSpace) as error:
        await manager.dispatch(FetchJob(Transfer(url, dest, sha256, None, "test blob"), FAST))
    assert_names_the_full_disk(error.value, small_disk)
    assert "downloading test blob: no space left" in str(error.value)
    assert "The partial download was deleted" in str(error.value)
    assert leftovers(dest) == []  # the space it took is given back
    assert len(server.requests("/blob.bin")) == 1  # a full disk is not retried


async def test_disk_full_in_the_store_leaves_nothing_delete_cannot_remove(
    manager: JobManager,
    server: LoopbackServer,
    store: ModelStore,
    small_disk: Path,
    blob: tuple[Path, str],
) -> None:
    source, sha256 = blob
    url = server.add_file("/custom.pt", source, send_length=False)
    store.register(ModelEntry("whisper", "custom-test", "custom-test.pt", url, sha256))
    models = store.family_folder("whisper")
    models.rmdir()
    models.symlink_to(small_disk)  # the model files on the small disk, the job store not
    with pytest.raises(NoSpaceLeft, match="NotEnoughSpace") as error:  # one except for all
        await manager.dispatch(NeedsModel("custom-test"))
    assert f"no space left on {small_disk}" in str(error.value)
    assert "BufferError" not in str(error.value)
    assert leftovers(small_disk / "custom-test.pt") == []
    assert store.info("custom-test").status == "missing"
    # A sidecar being replaced when a process died leaves a .json.<pid>-<thread>.tmp: delete
    # removes it too.
    (small_disk / "custom-test.pt.part.json.1234-5678.tmp").write_text("{")
    store.delete("custom-test")
    assert leftovers(small_disk / "custom-test.pt") == []
    assert store.info("custom-test").status == "missing"


def test_a_full_disk_keeps_the_manifest_whole(small_disk: Path) -> None:
    store = ModelStore(small_disk)
    store.system_tessdata = []
    model = store.target(store.entry("tessdata_fast/deu"))
    model.write_bytes(b"model")
    store.record_verified(store.entry("tessdata_fast/deu"), model, "0" * 64, "download")
    manifest = (store.folder / "manifest.json").read_bytes()
    filler = (small_disk / "filler").open("wb", buffering=0)  # fill the disk to the last byte
    with filler, pytest.raises(OSError, match="No space left"):
        while True:
            filler.write(b"\0" * 4096)
    with pytest.raises(NoSpaceLeft, match=f"writing manifest.json: no space left on {small_disk}"):
        store.record_verified(store.entry("tessdata_fast/fra"), model, "1" * 64, "download")
    assert (store.folder / "manifest.json").read_bytes() == manifest
    assert not list(store.folder.glob("manifest.json.*tmp"))
