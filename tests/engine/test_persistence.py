"""The SQLite store: records, history, interrupted jobs after a crash, resume from checkpoint."""

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

from ipyjobs import JobManager, JobState, UnknownJobKind

from .jobs import Resumable, Steps
from .test_states import wait_until

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys, anyio
    from ipyjobs import JobManager
    from tests.engine.jobs import Resumable

    async def main():
        async with JobManager(sys.argv[1], store_interval=0.05) as manager:
            handle = manager.dispatch(Resumable(n=1000, delay=0.01, log_path=sys.argv[2]))
            print(handle.id, flush=True)
            await handle

    anyio.run(main)
    """
)


def steps_logged(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


async def test_a_killed_process_leaves_an_interrupted_job_that_resumes_from_its_checkpoint(
    ipyjobs_home: Path, tmp_path: Path
) -> None:
    log_path = tmp_path / "steps.txt"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ipyjobs_home), str(log_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    job_id = child.stdout.readline().strip()
    deadline = time.monotonic() + 30
    while len(steps_logged(log_path)) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    before_kill = steps_logged(log_path)
    assert len(before_kill) >= 40, "the child process did not get going"

    async with JobManager(ipyjobs_home, tick=0.02) as manager:
        assert job_id in manager.interrupted_at_start
        record = manager.record(job_id)
        assert record.state is JobState.INTERRUPTED
        checkpoint = record.checkpoint["next"]
        assert 0 < checkpoint <= before_kill[-1] + 1
        handle = manager.resume(job_id)
        assert handle.id == job_id
        assert await handle == 1000
        states = [state for _, state, _ in manager.history(job_id)]
    resumed = steps_logged(log_path)[len(before_kill) :]
    assert resumed[0] == checkpoint  # continued from the last checkpoint, not from zero
    assert resumed[-1] == 999
    assert states == [
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.INTERRUPTED,
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.COMPLETED,
    ]


async def test_a_live_session_keeps_its_running_jobs(ipyjobs_home: Path, tmp_path: Path) -> None:
    async with JobManager(ipyjobs_home, tick=0.02, store_interval=0.02) as first:
        handle = first.dispatch(Steps(1000, 0.01))
        await wait_until(lambda: handle.state is JobState.RUNNING)
        await anyio.sleep(0.1)
        async with JobManager(ipyjobs_home) as second:  # another kernel on the same store
            assert second.interrupted_at_start == []
            assert second.record(handle.id).state is JobState.RUNNING
        handle.cancel()
        await handle.join()


async def test_a_resumed_job_in_the_same_session(ipyjobs_home: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "steps.txt"
    async with JobManager(ipyjobs_home, tick=0.02, store_interval=0.02) as manager:
        handle = manager.dispatch(Resumable(n=30, delay=0.01, log_path=str(log_path)))
        await wait_until(lambda: len(steps_logged(log_path)) >= 5)
    assert handle.state is JobState.INTERRUPTED
    async with JobManager(ipyjobs_home, tick=0.02) as manager:
        resumed = manager.resume(handle.id)
        assert await resumed == 30
    steps = steps_logged(log_path)
    assert sorted(set(steps)) == list(range(30))
    assert len(steps) - 30 <= 1  # at most the step in flight at the interruption ran twice


async def test_an_unknown_kind_names_the_close_ones(ipyjobs_home: Path) -> None:
    from ipyjobs import job_class

    with pytest.raises(UnknownJobKind, match=r"'test\.resumable'"):
        job_class("test.resumeable")
    assert Resumable.kind == "test.resumable"
