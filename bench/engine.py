"""Engine overhead and cancel latency, measured against a raw anyio baseline in one run.

overhead_ratio: 10,000 jobs, each reporting 100 progress updates, through a persisting manager
(dispatch to the last handle resolved), divided by the same coroutine bodies in a raw anyio
task group whose progress calls go to a plain object that only stores the two numbers.
cancel_p95_ms: p95 from ``cancel()`` to the terminal state over 200 running jobs.
starved_loop_lag_p99_ms: 8 CPU-bound jobs call ``ctx.checkpoint()`` after every 10 ms of work;
meanwhile a task sleeps 10 ms over and over: p99 of how late it wakes (wall clock). Side by side,
``starved_loop_baseline_p99_ms`` is the same with the jobs yielding by ``anyio.sleep(0)``.
cross_thread_dispatch_per_s: dispatches per second from 4 plain threads at once (each handed to
the manager's loop), with ``cross_thread_vs_loop_ratio`` against the same dispatches made on the
loop itself.

The last line printed is one JSON object. Goals: overhead_ratio <= 3.0, cancel_p95_ms <= 50,
starved_loop_lag_p99_ms <= 50.
"""

from __future__ import annotations

import gc
import json
import statistics
import tempfile
import threading
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


LAG_JOBS = 8
LAG_SAMPLES = 300
THREADS = 4
THREAD_DISPATCHES = 1000


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@dataclass
class Computing(Job, kind="bench.computing"):
    """10 ms of CPU work between two checkpoints (or plain yields, for the baseline)."""

    plain_yield: bool = False

    async def run(self, ctx: JobContext) -> None:
        while True:
            if self.plain_yield:
                await anyio.sleep(0)
                ctx.token.raise_if_cancelled()
            else:
                await ctx.checkpoint()
            spin(0.010)


async def sleep_lag_p99(home: str, plain_yield: bool) -> float:
    async with JobManager(home) as manager:
        handles = [manager.dispatch(Computing(plain_yield)) for _ in range(LAG_JOBS)]
        while any(h.state is not JobState.RUNNING for h in handles):
            await anyio.sleep(0.01)
        lags = []
        for _ in range(LAG_SAMPLES):
            started = time.perf_counter()
            await anyio.sleep(0.010)
            lags.append(time.perf_counter() - started - 0.010)
        for handle in handles:
            handle.cancel()
    return statistics.quantiles(lags, n=100)[-1] * 1000


@dataclass
class Nothing(Job, kind="bench.nothing"):
    async def run(self, ctx: JobContext) -> None:
        return None


async def dispatch_rate(home: str, from_threads: bool) -> float:
    """Dispatches per second, from ``THREADS`` threads or from the loop itself."""
    async with JobManager(home) as manager:
        total = THREADS * THREAD_DISPATCHES
        started = time.perf_counter()
        if from_threads:

            def work() -> None:
                for _ in range(THREAD_DISPATCHES):
                    manager.dispatch(Nothing())

            threads = [threading.Thread(target=work) for _ in range(THREADS)]
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                await anyio.sleep(0.001)
        else:
            for i in range(total):
                manager.dispatch(Nothing())
                if i % 50 == 0:
                    await anyio.sleep(0)
        elapsed = time.perf_counter() - started
        for handle in manager.handles:
            await handle
    return total / elapsed


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
        lag = await sleep_lag_p99(home, plain_yield=False)
        lag_baseline = await sleep_lag_p99(home, plain_yield=True)
        print(f"starved loop: p99 lag {lag:.1f} ms, with plain yields {lag_baseline:.1f} ms")
        threaded = await dispatch_rate(home, from_threads=True)
        on_loop = await dispatch_rate(home, from_threads=False)
        print(f"dispatches/s: {threaded:.0f} from {THREADS} threads, {on_loop:.0f} on the loop")
    p95 = statistics.quantiles(latencies, n=20)[-1] * 1000
    print(f"cancel: median {statistics.median(latencies) * 1000:.2f} ms, p95 {p95:.2f} ms")
    print(
        json.dumps(
            {
                "overhead_ratio": round(statistics.median(ratios), 2),
                "cancel_p95_ms": round(p95, 2),
                "starved_loop_lag_p99_ms": round(lag, 1),
                "starved_loop_baseline_p99_ms": round(lag_baseline, 1),
                "cross_thread_dispatch_per_s": round(threaded),
                "cross_thread_vs_loop_ratio": round(threaded / on_loop, 3),
            }
        )
    )


if __name__ == "__main__":
    anyio.run(main)
