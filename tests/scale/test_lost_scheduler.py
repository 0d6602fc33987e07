"""A scheduler process killed mid-job (SIGKILL, a real one): an OCR or a transcription job
fails with that reason, not with an item error per remaining file; what it finished is whole
and kept, and a new run on the kernel's threads does only the rest."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import anyio
import pytest

from ipyjobs import Job, JobHandle, JobManager, JobState
from ipyjobs.media import OcrJob, TranscribeJob
from ipyjobs.media.outputs import MARKER_SUFFIX
from ipyjobs.scale import SchedulerLost
from tests.engine.test_states import wait_until
from tests.media.conftest import clips  # noqa: F401 (the five espeak clips, a fixture)
from tests.media.test_ocr import dense_pages, files_in
from tests.support import pages
from tests.support.clusters import Processes
from tests.support.http_server import LoopbackServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def fails_when_the_scheduler_dies(
    manager: JobManager, processes: Processes, job: Job, done: int
) -> JobHandle:
    """Run ``job`` on the cluster, kill its scheduler once ``done`` items are done, then its
    workers once the job ended (so nothing writes any more); check how it failed, and that the
    job dispatched again on the lost cluster fails too."""
    manager.use_dask(processes.client)
    address = processes.client.scheduler.address
    handle = manager.dispatch(job)
    await wait_until(lambda: handle.progress.done >= done, timeout=120)
    processes.scheduler.kill()
    with anyio.fail_after(30):
        state = await handle.join()
    for worker in processes.workers:
        worker.kill()
        worker.wait()
    assert state is JobState.FAILED and handle.item_errors == []
    assert isinstance(handle.error, SchedulerLost)
    error = handle.error_text or ""
    assert f"SchedulerLost: the Dask scheduler at {address} was lost" in error
    assert "use_dask" in error and "use_local" in error
    started = time.perf_counter()  # what the panel and a starting job ask, on the loop
    assert manager.executor.workers >= 1 and "Dask cluster" in manager.executor.where
    assert time.perf_counter() - started < 0.1, "asking about a lost cluster blocked the loop"
    again = manager.dispatch(job)  # still on the lost cluster: says so at once
    with anyio.fail_after(10):
        assert await again.join() is JobState.FAILED
    assert isinstance(again.error, SchedulerLost) and again.item_errors == []
    manager.use_local()
    return handle


def whole(out: Path) -> set[str]:
    """The stems of the files done in ``out``, each with its text and done-marker, and nothing
    else in sight (work folders are hidden)."""
    visible = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    stems = {name.removesuffix(MARKER_SUFFIX) for name in visible if name.endswith(MARKER_SUFFIX)}
    assert visible == {f"{stem}{suffix}" for stem in stems for suffix in (".txt", MARKER_SUFFIX)}
    return stems


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
async def test_ocr_fails_with_the_lost_scheduler_and_a_new_run_does_only_the_rest(
    manager: JobManager, processes: Processes, tmp_path: Path
) -> None:
    scans, out = tmp_path / "scans", tmp_path / "out"
    written = pages.save(dense_pages(6, sentences=12), scans)
    written.update(pages.save_tiff(dense_pages(6, sentences=12), scans / "bundle.tif"))
    job = OcrJob(str(scans), output_dir=str(out))
    handle = await fails_when_the_scheduler_dies(manager, processes, job, done=3)
    stems = whole(out)
    assert len(stems) < len(written)

    result = await manager.dispatch(OcrJob(str(scans), output_dir=str(out)))
    counts = (result["skipped"], result["done"], result["failed"])
    assert counts == (len(stems), len(written) - len(stems), 0)
    assert result["pages"] <= 12 - handle.progress.done  # pages of the bundle done: kept
    assert files_in(out) == {f"{p.stem}{s}" for p in written for s in (".txt", MARKER_SUFFIX)}


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
async def test_a_transcription_fails_with_the_lost_scheduler_and_a_new_run_does_the_rest(
    manager: JobManager,
    processes: Processes,
    mirror: LoopbackServer,
    clips: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"

    def job() -> TranscribeJob:
        return TranscribeJob(str(clips), model="tiny.en-test", language="en", formats=["txt"],
                             output_dir=str(out), backend="openai-whisper")  # fmt: skip

    await fails_when_the_scheduler_dies(manager, processes, job(), done=1)
    stems = whole(out)
    assert 1 <= len(stems) < 5

    result = await manager.dispatch(job())
    assert (result["skipped"], result["done"], result["failed"]) == (len(stems), 5 - len(stems), 0)
    assert files_in(out) == {f"clip-{i}{s}" for i in range(5) for s in (".txt", MARKER_SUFFIX)}


async def test_an_unreachable_scheduler_address_fails_jobs_without_blocking_the_loop(
    manager: JobManager, tmp_path: Path
) -> None:
    """``IPYJOBS_DASK_SCHEDULER`` (or ``use_dask(address)``) naming a scheduler that is not
    there: the first OCR job and the first map each fail with SchedulerLost, saying where they
    looked, while the kernel's loop goes on (the connection is tried from a thread)."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    scans = tmp_path / "scans"
    pages.save(dense_pages(1, sentences=2), scans)
    for dispatch in (
        lambda: manager.dispatch(OcrJob(str(scans), output_dir=str(tmp_path / "out"))),
        lambda: manager.map(abs, [1, -2]),
    ):
        manager.use_dask(address)
        handle = dispatch()
        late = 0.0
        with anyio.fail_after(60):
            while not handle.done:
                started = time.perf_counter()
                await anyio.sleep(0.01)
                late = max(late, time.perf_counter() - started - 0.01)
        assert handle.state is JobState.FAILED and isinstance(handle.error, SchedulerLost)
        assert f"cannot reach the Dask scheduler at {address}" in (handle.error_text or "")
        assert late < 0.5, f"the loop was blocked {late:.1f} s"
    assert not (tmp_path / "out").exists() or files_in(tmp_path / "out") == set()
    manager.use_local()
