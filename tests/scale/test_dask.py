"""Jobs on a real Dask LocalCluster (2 worker processes, 127.0.0.1): the same outputs as on the
kernel's threads, cancel and pause reaching into running work, a killed worker's file redone."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from ipyjobs import JobManager, JobState
from ipyjobs.media import OcrJob
from ipyjobs.scale import SchedulerLost
from tests.engine.test_states import wait_until
from tests.media.test_ocr import dense_pages, files_in, tesseract_processes
from tests.support import pages
from tests.support.clusters import close, start_client

from . import fns

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed"),
]


@pytest.fixture
async def cluster_manager(ipyjobs_home: Path, client) -> AsyncIterator[JobManager]:
    async with JobManager(ipyjobs_home, tick=0.02, store_interval=0.05) as jm:
        jm.use_dask(client)
        yield jm


def busy(client) -> list:
    return [key for keys in client.processing().values() for key in keys]


async def test_ocr_of_40_pages_on_the_cluster_matches_the_local_run(
    manager: JobManager, client, tmp_path: Path
) -> None:
    scans = tmp_path / "scans"
    fonts = pages.fonts()
    sentences = pages.SENTENCES
    pages.save([pages.render(sentences[i % len(sentences)], fonts[i % len(fonts)], 24, width=700)
                for i in range(40)], scans)  # fmt: skip
    local = await manager.dispatch(OcrJob(str(scans), output_dir=str(tmp_path / "local")))
    manager.use_dask(client)
    handle = manager.dispatch(OcrJob(str(scans), output_dir=str(tmp_path / "cluster")))
    remote = await handle

    assert local["done"] == remote["done"] == 40 and remote["failed"] == 0
    assert handle.where.startswith("Dask cluster tcp://127.0.0.1:")
    assert manager.dashboard_link.startswith("http://127.0.0.1:")
    for text in sorted((tmp_path / "local").glob("*.txt")):
        assert (tmp_path / "cluster" / text.name).read_text() == text.read_text()


async def test_a_cancel_mid_file_ends_within_2_s_with_no_output_and_idle_workers(
    cluster_manager: JobManager, client, tmp_path: Path
) -> None:
    folder = tmp_path / "big"
    images = pages.save(dense_pages(4, sentences=72), folder)
    handle = cluster_manager.dispatch(OcrJob(str(folder), formats=["txt", "pdf"]))
    await wait_until(lambda: len(tesseract_processes(str(folder))) == 2, timeout=60)
    await anyio.sleep(0.3)
    assert not list(folder.glob("*.txt"))

    asked = time.monotonic()
    handle.cancel()
    with anyio.fail_after(2):
        state = await handle.join()
    took = time.monotonic() - asked
    print(f"cancelled on the cluster in {took * 1000:.0f} ms")
    assert state is JobState.CANCELLED and took < 2.0
    assert tesseract_processes(str(folder)) == []
    assert busy(client) == []
    assert files_in(folder) == {p.name for p in images}


async def test_a_pause_parks_work_on_the_workers_then_it_completes(
    cluster_manager: JobManager,
) -> None:
    handle = cluster_manager.submit(fns.steps, 300, 0.01)
    await wait_until(lambda: handle.progress.done >= 30, timeout=60)  # progress from the worker
    handle.pause()
    await wait_until(lambda: handle.state is JobState.PAUSED, timeout=5)
    await anyio.sleep(0.3)  # the last values on their way
    done = handle.progress.done
    await anyio.sleep(1.5)
    assert handle.progress.done == done < 300
    handle.resume()
    assert await handle == sum(range(300))


async def test_map_on_the_cluster_keeps_order_and_item_errors(cluster_manager: JobManager) -> None:
    handle = cluster_manager.map(fns.square_or_fail, range(1000))
    results = await handle
    assert results.ok == [x * x for x in range(1000) if x not in fns.FAILING]
    assert sorted(e.error for e in handle.item_errors) == sorted(
        f"ValueError: item {x} is bad" for x in fns.FAILING
    )


async def test_a_killed_worker_has_its_file_redone_elsewhere(
    cluster_manager: JobManager, client, tmp_path: Path
) -> None:
    folder = tmp_path / "pile"
    pages.save(dense_pages(6, sentences=24, size=30), folder)
    handle = cluster_manager.dispatch(OcrJob(str(folder)))
    await wait_until(lambda: any(client.processing().values()), timeout=60)
    await anyio.sleep(0.3)
    victim = next(address for address, keys in client.processing().items() if keys)
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)

    result = await handle
    assert (result["done"], result["failed"]) == (6, 0)
    assert len(list(folder.glob("*.txt"))) == 6
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


async def test_a_lost_scheduler_fails_the_map_with_that_reason(
    manager: JobManager, tmp_path: Path
) -> None:
    own = start_client(tmp_path / "home", timeout="3s")
    try:
        manager.use_dask(own)
        address = own.scheduler.address
        handle = manager.map(fns.slow_item, range(4), workers=1)
        await wait_until(lambda: busy(own), timeout=60)
        await anyio.to_thread.run_sync(lambda: own.sync(own.cluster.scheduler.close))
        with anyio.fail_after(30):
            assert await handle.join() is JobState.FAILED
    finally:
        close(own)
    assert isinstance(handle.error, SchedulerLost)
    assert (handle.error_text or "").startswith(f"SchedulerLost: the Dask scheduler at {address} ")


async def test_the_scheduler_variable_chooses_the_cluster_at_start(
    ipyjobs_home: Path, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IPYJOBS_DASK_SCHEDULER", client.scheduler.address)
    async with JobManager(ipyjobs_home) as manager:
        results = await manager.map(fns.square_or_fail, range(20))
        assert manager.executor.where.startswith(f"Dask cluster {client.scheduler.address}")
        manager.executor.close()
    assert len(results.ok) == 19
