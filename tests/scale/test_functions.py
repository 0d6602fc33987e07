"""Function jobs on the kernel's threads: map and submit, with item errors, pause, cancel,
results in order, and resume from the store after the process running the map was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

import ipyjobs
from ipyjobs import ItemFailed, JobManager, JobState, NotResumable
from tests.engine.test_states import wait_until

from . import fns

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


async def test_map_of_1000_items_gives_results_in_order_and_three_item_errors(
    manager: JobManager,
) -> None:
    handle = manager.map(fns.square_or_fail, range(1000))
    results = await handle

    assert handle.state is JobState.COMPLETED
    assert len(results) == 1000
    assert results.ok == [x * x for x in range(1000) if x not in fns.FAILING]
    assert [r.item for r in results.failed] == sorted(fns.FAILING)
    assert all(isinstance(results[x], ItemFailed) for x in fns.FAILING)
    assert handle.error_count == 3
    assert sorted(e.error for e in handle.item_errors) == [  # lanes finish in any order
        f"ValueError: item {x} is bad" for x in sorted(fns.FAILING)
    ]
    assert handle.progress.done == 1000 and handle.progress.total == 1000
    assert handle.where == "this kernel's threads"
    assert repr(results) == "MapResults(1000 items: 997 done, 3 failed)"


async def test_a_cancel_in_the_middle_of_a_map_stops_within_a_second(manager: JobManager) -> None:
    calls = []

    def slow(x: int) -> int:
        calls.append(x)
        time.sleep(0.05)
        return x

    handle = manager.map(slow, range(1000), workers=4)
    await wait_until(lambda: handle.progress.done >= 40, timeout=20)
    asked = time.monotonic()
    handle.cancel()
    with anyio.fail_after(1):
        assert await handle.join() is JobState.CANCELLED
    took = time.monotonic() - asked
    called = len(calls)
    await anyio.sleep(0.2)
    assert took < 1.0
    assert len(calls) == called < 1000  # nothing runs after the end
    with pytest.raises(ipyjobs.JobCancelled):
        await handle


async def test_pause_stops_calls_inside_fn_then_resume_finishes(manager: JobManager) -> None:
    handle = manager.submit(fns.steps, 200, 0.005)
    await wait_until(lambda: handle.progress.done >= 20, timeout=20)
    assert handle.progress.total == 200  # track() moves the bar of a submitted call
    handle.pause()
    await wait_until(lambda: handle.state is JobState.PAUSED)
    done = handle.progress.done
    await anyio.sleep(0.5)
    assert handle.progress.done == done < 200
    handle.resume()
    assert await handle == sum(range(200))


async def test_a_notebook_function_says_how_to_resume(manager: JobManager) -> None:
    def local(x: int) -> int:
        return x

    handle = manager.map(local, [1, 2])
    assert list(await handle) == [1, 2]
    assert any("jobs.resume(" in line and "fn=" in line for line in handle.log_tail)
    record = manager.record(handle.id)
    assert record.params["fn"].startswith("<notebook>:")
    with pytest.raises(NotResumable, match=r"defined in a notebook.*fn="):
        ipyjobs.engine.functions.MapJob.from_params(record.params)


async def test_big_results_stay_in_memory_and_say_so(manager: JobManager) -> None:
    big = manager.map("x".__mul__, [10, 100_000])
    results = await big
    assert [len(r) for r in results] == [10, 100_000]
    assert results.in_memory == 1 and "kept in memory only" in repr(results)
    assert any("too big for the job store" in line for line in big.log_tail)
    stored = manager.record(big.id).checkpoint
    assert stored == {"done": {"0": "x" * 10}, "failed": {}}


CHILD = textwrap.dedent(
    """
    import sys, anyio
    from ipyjobs import JobManager
    from tests.scale import fns

    async def main():
        async with JobManager(sys.argv[1], store_interval=0.05) as manager:
            handle = manager.map(fns.logged_square, range(1000), workers=2)
            print(handle.id, flush=True)
            await handle

    anyio.run(main)
    """
)


async def test_a_map_of_an_importable_function_resumes_after_sigkill(
    ipyjobs_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_path = tmp_path / "calls.txt"
    monkeypatch.setenv("MAP_LOG", str(log_path))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ipyjobs_home)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    job_id = child.stdout.readline().strip()
    deadline = time.monotonic() + 30
    while (not log_path.exists() or len(log_path.read_text().split()) < 300) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    first = [int(x) for x in log_path.read_text().split()]
    assert len(first) > 200, "the child did not get going"
    log_path.write_text("")

    async with JobManager(ipyjobs_home, tick=0.02) as manager:
        record = manager.record(job_id)
        assert record.state is JobState.INTERRUPTED
        stored = {int(i) for i in record.checkpoint["done"]}
        assert stored and stored <= set(first)
        handle = manager.resume(job_id)
        results = await handle
    again = [int(x) for x in log_path.read_text().split()]
    assert sorted(again) == sorted(set(range(1000)) - stored)  # only the items not done
    assert list(results) == [x * x for x in range(1000)]


def test_the_engine_imports_neither_dask_nor_widgets() -> None:
    code = (
        "import sys, anyio, ipyjobs, ipyjobs.media\n"
        "async def main():\n"
        "    async with ipyjobs.JobManager(persist=False) as jm:\n"
        "        assert list(await jm.map(abs, [-1, 2])) == [1, 2]\n"
        "anyio.run(main)\n"
        "print(sorted(m for m in ('distributed', 'dask', 'ipywidgets') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]"]
