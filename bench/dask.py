"""Scale-out: OCR on a Dask LocalCluster against the kernel's threads, cancel on a cluster, and
``jobs.map`` against ``concurrent.futures.ThreadPoolExecutor.map``.

- ocr_cluster_vs_local_ratio: 40 page images (``tests/support/pages.py``, a sentence each)
  through ``OcrJob``, on a ``LocalCluster`` of 2 single-thread worker processes on 127.0.0.1
  divided by the same job on the local executor (one tesseract per core), rounds alternating
  in this one run; the median round counts. The cluster is started (and warmed by a 2-page
  job) before the clock runs. Goal <= 1.15.
- cluster_cancel_s: dense pages running on the workers, seconds from ``cancel()`` to the job's
  terminal state. Goal <= 2.0.
- map_vs_threadpool_ratio: ``jobs.map`` of 10,000 calls of a 1 ms sleep on 8 threads divided by
  ``ThreadPoolExecutor(8).map`` of the same, median of alternating rounds. Goal <= 1.2.

The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio

HERE = Path(__file__).resolve().parent
# This file is named dask.py: its folder must not shadow the dask package (distributed imports
# it), so the repository root takes the folder's place on the path.
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from ipyjobs import JobManager, JobState  # noqa: E402
from ipyjobs.media import OcrJob  # noqa: E402
from ipyjobs.scale import local_cluster  # noqa: E402
from tests.scale.fns import sleep_ms  # noqa: E402
from tests.support import pages  # noqa: E402

PAGES = 40
OCR_ROUNDS = 2
MAP_CALLS = 10_000
MAP_ROUNDS = 3


async def ocr_seconds(manager: JobManager, images: Path, out: Path) -> float:
    started = time.perf_counter()
    result = await manager.dispatch(OcrJob(str(images), output_dir=str(out)))
    elapsed = time.perf_counter() - started
    assert result["done"] == len(list(images.iterdir())) and result["failed"] == 0, result
    return elapsed


async def cancel_seconds(manager: JobManager, folder: Path) -> float:
    handle = manager.dispatch(OcrJob(str(folder), formats=["txt", "pdf"]))
    while handle.progress.total is None or handle.status != "running":
        await anyio.sleep(0.01)
    await anyio.sleep(1.0)  # tesseract well inside the first pages on both workers
    assert not list(folder.glob("*.txt")), "the pages are too light to be cancelled mid-file"
    asked = time.perf_counter()
    handle.cancel()
    state = await handle.join()
    assert state is JobState.CANCELLED
    return time.perf_counter() - asked


async def map_seconds(manager: JobManager) -> float:
    started = time.perf_counter()
    results = await manager.map(sleep_ms, range(MAP_CALLS), workers=8)
    assert len(results) == MAP_CALLS
    return time.perf_counter() - started


def threadpool_seconds() -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        assert len(list(pool.map(sleep_ms, range(MAP_CALLS)))) == MAP_CALLS
    return time.perf_counter() - started


async def main(tmp: Path) -> dict:
    images, warm, dense = tmp / "images", tmp / "warm", tmp / "dense"
    fonts = pages.fonts()
    lines = pages.SENTENCES
    short = [
        pages.render(lines[i % len(lines)], fonts[i % len(fonts)], 24, 700) for i in range(PAGES)
    ]
    pages.save(short, images)
    pages.save(short[:2], warm)
    text = " ".join(pages.SENTENCES * 3)
    pages.save([pages.render(text, fonts[i % len(fonts)], 28) for i in range(4)], dense)
    client = local_cluster(2, threads_per_worker=1)
    ratios, map_ratios = [], []
    try:
        async with JobManager(tmp / "home") as manager:
            local = manager.executor
            manager.use_dask(client)
            await ocr_seconds(manager, warm, tmp / "warm-out")
            for round_ in range(OCR_ROUNDS):
                manager.executor = local
                on_threads = await ocr_seconds(manager, images, tmp / f"local-{round_}")
                manager.use_dask(client)
                on_cluster = await ocr_seconds(manager, images, tmp / f"cluster-{round_}")
                ratios.append(on_cluster / on_threads)
                print(f"OCR round {round_}: local {on_threads:.2f} s, cluster {on_cluster:.2f} s")
            cancel = await cancel_seconds(manager, dense)
            manager.use_local()
            for round_ in range(MAP_ROUNDS):
                mapped = await map_seconds(manager)
                pooled = threadpool_seconds()
                map_ratios.append(mapped / pooled)
                print(f"map round {round_}: jobs.map {mapped:.3f} s, ThreadPool {pooled:.3f} s")
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    return {
        "ocr_cluster_vs_local_ratio": round(statistics.median(ratios), 3),
        "cluster_cancel_s": round(cancel, 3),
        "map_vs_threadpool_ratio": round(statistics.median(map_ratios), 3),
    }


if __name__ == "__main__":
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        figures = anyio.run(main, Path(folder))
    print(f"total {time.perf_counter() - started:.1f} s")
    print(json.dumps(figures))
