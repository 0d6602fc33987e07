"""Engine overhead and cancel latency, measured against a raw anyio baseline in one run.

overhead_ratio: 10,000 jobs, each reporting 100 progress updates, through a persisting manager
(dispatch to the last handle resolved), divided by the same coroutine bodies in a raw anyio
task group whose progress calls go to a plain object that only stores the two numbers.
cancel_p95_ms: p95 from ``cancel()`` to the terminal state over 200 running jobs.

The last line printed is one JSON object. Goals: overhead_ratio <= 3.0, cancel_p95_ms <= 50.
"""

from __future__ import annotations

import gc
import json
import statistics
import tempfile
import time
from dataclasses import dataclass

import anyio

from ipyjobs import Job, JobContext, JobManager, JobState

JOBS = 10_000
UPDATES = 100
CANCELLED_JOBS = 200
ROUNDS = 3


@dataclass
class Reporting(Job, kind="bench.reporting"):
    async def run(self, ctx: JobContext) -> None:
        await body(ctx.progress)


async def body(progress) -> None:
    """What every job does, in both runs: 100 progress reports."""
    for i in range(UPDATES):
        progress(i + 1, UPDATES)


class PlainProgress:
    """The least a progress report can cost: store the two numbers."""

    __slots__ = ("done", "total")

    def __call__(self, done: float, total: float) -> None:
        self.done = done
        self.total = total


async def raw_baseline() -> float:
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(JOBS):
            tg.start_soon(body, PlainProgress())
    return time.perf_counter() - started


async def through_manager(home: str) -> float:
    async with JobManager(home) as manager:
        started = time.perf_counter()
        handles = [manager.dispatch(Reporting()) for _ in range(JOBS)]
        for handle in handles:
            await handle
        elapsed = time.perf_counter() - started
    return elapsed


@dataclass
class Spinning(Job, kind="bench.spinning"):
    async def run(self, ctx: JobContext) -> None:
        while True:
            await ctx.checkpoint()
            await anyio.sleep(0.001)


async def cancel_latencies(home: str) -> list[float]:
    async with JobManager(home) as manager:
        handles = [manager.dispatch(Spinning()) for _ in range(CANCELLED_JOBS)]
        while any(h.state is not JobState.RUNNING for h in handles):
            await anyio.sleep(0.01)
        latencies = []
        for handle in handles:
            started = time.perf_counter()
            handle.cancel()
            await handle.join()
            latencies.append(time.perf_counter() - started)
            assert handle.state is JobState.CANCELLED
    return latencies


async def main() -> None:
    ratios = []
    with tempfile.TemporaryDirectory() as home:
        for round_ in range(ROUNDS):
            gc.collect()
            raw = await raw_baseline()
            gc.collect()
            managed = await through_manager(home)
            ratios.append(managed / raw)
            print(
                f"round {round_ + 1}: raw {raw:.3f} s, manager {managed:.3f} s, "
                f"ratio {managed / raw:.2f}"
            )
        latencies = await cancel_latencies(home)
    p95 = statistics.quantiles(latencies, n=20)[-1] * 1000
    print(f"cancel: median {statistics.median(latencies) * 1000:.2f} ms, p95 {p95:.2f} ms")
    print(
        json.dumps(
            {"overhead_ratio": round(statistics.median(ratios), 2), "cancel_p95_ms": round(p95, 2)}
        )
    )


if __name__ == "__main__":
    anyio.run(main)
