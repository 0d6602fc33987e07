"""ensure_model and the download job, against the real loopback mirror."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

from ipyjobs import JobCancelled, JobManager, JobState
from ipyjobs.models import DownloadError, ModelInUse, ModelStore, OfflineError, ensure
from ipyjobs.models.download import RetryPolicy
from tests.engine.test_states import wait_until
from tests.support.http_server import Fault, LoopbackServer
from tests.support.model_fixtures import TEST_WHISPER

from .jobs import NeedsModel, NeedsTessdata

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
WHISPER_PATH = "/whisper/tiny.en-test.pt"


def downloads(manager: JobManager) -> list:
    return [h for h in manager.handles if h.kind == "models.download"]


async def test_a_missing_model_downloads_nested_under_the_job(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore, whisper_sha256: str
) -> None:
    job = manager.dispatch(NeedsModel("tiny.en-test"))
    path = Path(await job)
    assert path == store.folder / "whisper" / "tiny.en-test.pt"
    [download] = downloads(manager)
    assert job.children == [download] and download.state is JobState.COMPLETED
    assert download.title == "Download whisper model tiny.en-test"
    assert download.progress.unit == "bytes" and download.progress.done == path.stat().st_size
    info = store.info(TEST_WHISPER)
    assert (info.status, info.source, info.path) == ("ready", "download", path)
    sent = mirror.bytes_sent(WHISPER_PATH)
    assert sent == path.stat().st_size
    again = manager.dispatch(NeedsModel("tiny.en-test"))
    assert await again == str(path)
    assert again.children == []  # ready: no download job at all
    assert mirror.bytes_sent(WHISPER_PATH) == sent


async def test_twenty_waiters_share_one_download(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore, monkeypatch
) -> None:
    monkeypatch.setattr(ensure, "retry_policy", RetryPolicy(backoff=0.05, stall_timeout=10))
    size = mirror_size(mirror)
    mirror.add_fault(WHISPER_PATH, Fault("stall", after_bytes=size // 3, seconds=1.5))
    waiters = [manager.dispatch(NeedsModel("tiny.en-test")) for _ in range(20)]
    await wait_until(lambda: len(downloads(manager)) == 1 and downloads(manager)[0].waiters == 20)
    [download] = downloads(manager)
    assert all(w.children == [download] for w in waiters)
    # the model shows as downloading once the shared job runs (it may still be queued here)
    await wait_until(lambda: store.info(TEST_WHISPER).status == "downloading")

    for waiter in waiters[:5]:
        waiter.cancel()
    for waiter in waiters[:5]:
        assert await waiter.join() is JobState.CANCELLED
    assert download.state is JobState.RUNNING and download.waiters == 15

    download.pause()
    await wait_until(lambda: download.state is JobState.PAUSED)
    await anyio.sleep(0.3)
    assert all(not w.done for w in waiters[5:])
    download.resume()
    paths = {await w for w in waiters[5:]}
    assert paths == {str(store.folder / "whisper" / "tiny.en-test.pt")}
    assert len(downloads(manager)) == 1
    assert mirror.bytes_sent(WHISPER_PATH) < 1.3 * size


def mirror_size(mirror: LoopbackServer) -> int:
    import httpx

    return int(httpx.head(mirror.url + WHISPER_PATH).headers["content-length"])


async def test_a_failed_download_fails_every_waiter_with_its_reason(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore
) -> None:
    mirror.add_fault(WHISPER_PATH, Fault("status", status=404, times=-1))
    waiters = [manager.dispatch(NeedsModel("tiny.en-test")) for _ in range(2)]
    for waiter in waiters:
        with pytest.raises(DownloadError, match=r"Model download failed: .*404"):
            await waiter
    assert store.info(TEST_WHISPER).status == "missing"


async def test_a_wrong_checksum_never_leaves_a_ready_looking_file(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore, whisper_sha256: str
) -> None:
    mirror.add_fault(WHISPER_PATH, Fault("wrong_bytes", after_bytes=1000, times=-1))
    with pytest.raises(DownloadError, match="Model download failed: ChecksumMismatch") as error:
        await manager.dispatch(NeedsModel("tiny.en-test"))
    assert whisper_sha256 in str(error.value)  # the expected hash is named
    info = store.info(TEST_WHISPER)
    assert info.status == "missing" and info.present == 0
    left = [p.name for p in (store.folder / "whisper").iterdir() if p.suffix != ".lock"]
    assert left == []  # no model, no partial file


async def test_offline_with_the_model_missing_says_how_to_provide_it(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore, monkeypatch
) -> None:
    monkeypatch.setenv("IPYJOBS_OFFLINE", "1")
    with pytest.raises(OfflineError) as error:
        await manager.dispatch(NeedsModel("tiny.en-test"))
    message = str(error.value)
    assert "whisper model tiny.en-test is missing" in message
    assert str(store.folder / "whisper" / "tiny.en-test.pt") in message
    assert "IPYJOBS_OFFLINE" in message and "IPYJOBS_MODEL_MIRROR" in message
    assert mirror.requests(WHISPER_PATH) == []


async def test_too_little_disk_space_names_needed_and_available(
    manager: JobManager, mirror: LoopbackServer, monkeypatch
) -> None:
    from ipyjobs.engine import diskspace

    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 1_000_000)
    with pytest.raises(DownloadError, match="NotEnoughSpace") as error:
        await manager.dispatch(NeedsModel("tiny.en-test"))
    assert "1000000" in str(error.value).replace(",", "")
    assert mirror.bytes_sent(WHISPER_PATH) == 0


async def test_a_checkpoint_in_whispers_cache_is_reused(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore, whisper_checkpoint: Path
) -> None:
    cached = store.whisper_cache / "tiny.en-test.pt"
    cached.parent.mkdir(parents=True)
    shutil.copyfile(whisper_checkpoint, cached)
    assert await manager.dispatch(NeedsModel("tiny.en-test")) == str(cached)
    assert store.info(TEST_WHISPER).source == "whisper-cache"
    assert mirror.requests(WHISPER_PATH) == []


async def test_system_tessdata_is_reused_and_the_folder_works_with_tesseract(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore, tmp_path: Path
) -> None:
    store.system_tessdata = [Path("/usr/share/tesseract-ocr/5/tessdata")]
    folder = Path(await manager.dispatch(NeedsTessdata("eng")))
    assert folder == store.folder / "tessdata_fast"
    assert mirror.requests("/tessdata_fast/eng.traineddata") == []
    assert store.info("tessdata_fast/eng").source == "system"
    assert {"txt", "hocr", "pdf", "tsv"} <= {p.name for p in (folder / "configs").iterdir()}
    assert (folder / "pdf.ttf").exists()
    image = _text_image(tmp_path / "page.png", "Hello tessdata")
    result = subprocess.run(
        ["tesseract", str(image), str(tmp_path / "out"), "--tessdata-dir", str(folder),
         "-l", "eng", "txt", "hocr", "pdf", "tsv"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "read_params_file" not in result.stderr
    assert "Hello" in (tmp_path / "out.txt").read_text()
    for suffix in ("hocr", "pdf", "tsv"):
        assert (tmp_path / f"out.{suffix}").stat().st_size > 0


def _text_image(path: Path, text: str) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (900, 160), 255)
    ImageDraw.Draw(image).text((30, 40), text, fill=0, font=ImageFont.load_default(size=64))
    image.save(path)
    return path


async def test_tessdata_downloads_from_the_mirror(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore
) -> None:
    folder = Path(await manager.dispatch(NeedsTessdata("eng")))
    assert (folder / "eng.traineddata").stat().st_size == 4113088
    assert store.info("tesseract:eng").source == "download"
    assert mirror.bytes_sent("/tessdata_fast/eng.traineddata") == 4113088


async def test_list_verify_and_delete(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore
) -> None:
    path = Path(await manager.dispatch(NeedsModel("tiny.en-test")))
    listed = {info.entry.id: info for info in store.list("whisper")}
    assert listed[TEST_WHISPER].status == "ready"
    assert listed["whisper/tiny"].status == "missing"
    assert len(listed) == 13
    assert store.disk_usage() >= path.stat().st_size
    assert await store.verify(TEST_WHISPER)

    with store.using(TEST_WHISPER), pytest.raises(ModelInUse, match="in use by 1 running job"):
        store.delete(TEST_WHISPER)

    stat = path.stat()
    with open(path, "r+b") as file:  # same size, same mtime: only a re-hash can tell
        file.seek(1000)
        file.write(b"\0" * 16)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert store.info(TEST_WHISPER).status == "ready"
    assert not await store.verify(TEST_WHISPER)
    assert store.info(TEST_WHISPER).status == "missing" and not path.exists()


async def test_delete_is_refused_while_downloading(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore, monkeypatch
) -> None:
    monkeypatch.setattr(ensure, "retry_policy", RetryPolicy(stall_timeout=10))
    mirror.add_fault(WHISPER_PATH, Fault("stall", after_bytes=1_000_000, seconds=1))
    job = manager.dispatch(NeedsModel("tiny.en-test"))
    await wait_until(lambda: store.info(TEST_WHISPER).status == "downloading")
    with pytest.raises(ModelInUse, match="being downloaded by job"):
        store.delete(TEST_WHISPER)
    path = Path(await job)
    size = path.stat().st_size
    assert store.delete(TEST_WHISPER) == size
    assert store.info(TEST_WHISPER).status == "missing"


async def test_cancelling_the_download_fails_its_waiters_and_keeps_the_partial_file(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore, monkeypatch
) -> None:
    monkeypatch.setattr(ensure, "retry_policy", RetryPolicy(stall_timeout=10))
    mirror.add_fault(WHISPER_PATH, Fault("stall", after_bytes=20_000_000, seconds=5))
    job = manager.dispatch(NeedsModel("tiny.en-test"))
    await wait_until(lambda: store.info(TEST_WHISPER).present >= 20_000_000)
    job.children[0].cancel()
    with pytest.raises(DownloadError, match="Model download was cancelled"):
        await job
    with pytest.raises(JobCancelled):
        await job.children[0]
    assert store.info(TEST_WHISPER).status == "partial"


CHILD = textwrap.dedent(
    """
    import sys, anyio
    from ipyjobs import JobManager
    from ipyjobs.models import ModelStore
    from tests.models.jobs import NeedsModel

    async def main():
        async with JobManager(sys.argv[1]) as manager:
            ModelStore.at(sys.argv[1]).system_tessdata = []
            print(await manager.dispatch(NeedsModel(sys.argv[2])), flush=True)

    anyio.run(main)
    """
)


def start_child(home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home), "tiny.en-test"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


async def test_a_killed_download_resumes_in_the_next_process(
    ipyjobs_home: Path, mirror: LoopbackServer, store: ModelStore
) -> None:
    size = mirror_size(mirror)
    mirror.add_fault(WHISPER_PATH, Fault("stall", after_bytes=size // 2, seconds=60))
    child = start_child(ipyjobs_home)
    deadline = time.monotonic() + 60
    while store.info(TEST_WHISPER).present < size // 2 and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    assert store.info(TEST_WHISPER).status == "partial"
    mirror.clear_faults()
    mirror.reset_counters()
    async with JobManager(ipyjobs_home, tick=0.02) as manager:
        await manager.dispatch(NeedsModel("tiny.en-test"))
    assert 0 < mirror.bytes_sent(WHISPER_PATH) < 0.6 * size


async def test_two_processes_download_once(
    ipyjobs_home: Path, mirror: LoopbackServer, store: ModelStore
) -> None:
    size = mirror_size(mirror)
    mirror.add_fault(WHISPER_PATH, Fault("stall", after_bytes=size // 2, seconds=1))
    children = [start_child(ipyjobs_home) for _ in range(2)]
    try:
        outputs = [child.communicate(timeout=120) for child in children]
    finally:  # never leave a child behind, whatever failed
        for child in children:
            child.kill()
    assert [child.returncode for child in children] == [0, 0], outputs
    paths = {out.strip() for out, _ in outputs}
    assert paths == {str(store.folder / "whisper" / "tiny.en-test.pt")}
    assert mirror.bytes_sent(WHISPER_PATH) == size
    assert store.info(TEST_WHISPER).status == "ready"
