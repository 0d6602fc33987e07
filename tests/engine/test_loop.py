"""A loop nobody starves: checkpoints take turns, and a watchdog names a job blocking the loop."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from ipyjobs import Job, JobContext, JobManager, JobState
from ipyjobs.engine import token as token_module
from ipyjobs.engine.turns import take_turn

from .test_states import wait_until

pytestmark = pytest.mark.anyio


def spin(seconds: float) -> None:
    """``seconds`` of CPU work on the loop, as a job's computing loop would do."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@dataclass
class Computes(Job, kind="test.computes"):
    """Computes forever, with a checkpoint after every ``slice`` seconds of CPU work."""

    slice: float = 0.010

    async def run(self, ctx: JobContext) -> None:
        while True:
            await ctx.checkpoint()
            spin(self.slice)


async def sleep_overshoots(rounds: int, nap: float = 0.010) -> list[float]:
    """How late ``sleep(nap)`` wakes (wall clock), ``rounds`` times."""
    late = []
    for _ in range(rounds):
        started = time.perf_counter()
        await anyio.sleep(nap)
        late.append(time.perf_counter() - started - nap)
    return late


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[-1]


async def test_eight_computing_jobs_leave_the_loop_responsive(manager: JobManager) -> None:
    handles = [manager.dispatch(Computes()) for _ in range(8)]
    await wait_until(lambda: all(h.state is JobState.RUNNING for h in handles))
    late = await sleep_overshoots(200)
    assert p99(late) <= 0.050, f"p99 overshoot {p99(late) * 1000:.1f} ms"
    latencies = []
    for handle in handles:
        asked = time.perf_counter()
        handle.cancel()
        assert await handle.join() is JobState.CANCELLED
        latencies.append(time.perf_counter() - asked)
    assert max(latencies) <= 0.100, f"slowest cancel {max(latencies) * 1000:.1f} ms"


@dataclass
class Checks(Job, kind="test.checks"):
    async def run(self, ctx: JobContext) -> None:
        await ctx.checkpoint()


async def test_a_job_started_late_keeps_its_first_turn(
    manager: JobManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop is held only from when the job's task started: a job that waited in the queue
    (here 20 ms behind a blocked loop) does not give the loop up at its first checkpoint, which
    would cost every job of a large dispatch two loop iterations more."""
    turns: list[None] = []

    async def counted_turn() -> None:
        turns.append(None)
        await take_turn()

    monkeypatch.setattr(token_module, "take_turn", counted_turn)
    handles = [manager.dispatch(Checks()) for _ in range(20)]
    time.sleep(0.020)
    for handle in handles:
        await handle
    assert len(turns) == 0


@dataclass
class Blocks(Job, kind="test.blocks"):
    seconds: float = 3.0

    async def run(self, ctx: JobContext) -> str:
        await ctx.checkpoint()
        time.sleep(self.seconds)  # the mistake the watchdog names
        return "done"


async def test_the_watchdog_names_a_job_that_blocks_the_loop(
    manager: JobManager, caplog: pytest.LogCaptureFixture
) -> None:
    quiet = manager.dispatch(Computes(0.001))
    blocker = manager.dispatch(Blocks(3.0))
    assert await blocker == "done"
    await anyio.sleep(0.05)
    assert len(blocker.warnings) == 1
    warning = blocker.warnings[0]
    assert "blocked the event loop" in warning
    assert "in run" not in warning and "run (" in warning and "test_loop.py" in warning
    assert "ctx.run_sync" in warning
    assert quiet.warnings == []
    logged = [r.getMessage() for r in caplog.records if "blocked the event loop" in r.getMessage()]
    assert logged and blocker.id in logged[0]
    quiet.cancel()
    await quiet.join()


def test_a_fork_while_the_watchdog_runs_is_clean(tmp_path: Path) -> None:
    """A child forked while the watchdog runs (ffmpeg and tesseract are started so) inherits
    no broken thread: Python's after-fork clean-up calls every thread's ``_stop``."""
    script = """
import os, anyio
from ipyjobs import JobManager

async def main():
    async with JobManager(persist=False) as manager:
        await manager.dispatch(Nap())

from dataclasses import dataclass
from ipyjobs import Job

@dataclass
class Nap(Job, kind="fork_test.nap"):
    async def run(self, ctx):
        await anyio.sleep(0.3)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

anyio.run(main)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        env={**os.environ, "IPYJOBS_HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
