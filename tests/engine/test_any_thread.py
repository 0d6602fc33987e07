"""Controls from any thread: handed to the manager's loop, never mutating it from elsewhere."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable

import anyio
import pytest

from ipyjobs import InvalidTransition, JobHandle, JobManager, JobState, jobs
from ipyjobs.engine import kernel

from .jobs import Steps

pytestmark = pytest.mark.anyio


async def in_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` in ``count`` plain threads while this loop keeps serving."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    with anyio.fail_after(120):
        while any(t.is_alive() for t in threads):
            await anyio.sleep(0.01)
    if errors:
        raise errors[0]


async def test_four_threads_dispatch_and_control_while_300_jobs_run(manager: JobManager) -> None:
    running = [manager.dispatch(Steps(60, 0.01)) for _ in range(300)]
    dispatched: list[list[JobHandle]] = [[] for _ in range(4)]
    cancelled: set[str] = set()
    touched: set[str] = set()

    def work(i: int) -> None:
        rng = random.Random(i)
        mine = dispatched[i]
        for n in range(1000):
            mine.append(manager.dispatch(Steps(3, 0.001, name=f"t{i}-{n}")))
            if rng.random() < 0.3:
                handle = rng.choice(mine + running)
                action = rng.choice(("pause", "resume", "cancel"))
                touched.add(handle.id)
                try:
                    if getattr(handle, action)() is True and action == "cancel":
                        cancelled.add(handle.id)
                except InvalidTransition:
                    assert handle.done  # only an ended job refuses a pause or resume

    await in_threads(4, work)
    everything = running + [h for mine in dispatched for h in mine]
    assert len({h.id for h in everything}) == 4300
    with anyio.move_on_after(60):
        while not all(h.done for h in everything):
            for handle in everything:
                if handle.state is JobState.PAUSED or handle.intent is not None:
                    handle.resume()
            await anyio.sleep(0.05)
    stuck = [(h, h.token.paused, h.token.parked, h.children) for h in everything if not h.done]
    assert not stuck, stuck[:5]
    for handle in everything:
        assert handle.state in (JobState.COMPLETED, JobState.CANCELLED), handle
        # cancelled exactly when a cancel was asked while it was active
        assert (handle.state is JobState.CANCELLED) == (handle.id in cancelled), handle
        if handle.state is JobState.COMPLETED:
            assert await handle == 60 if handle in running else 3
    assert await manager.dispatch(Steps(2, 0.001)) == 2  # the manager lives on


async def test_await_and_controls_from_another_threads_loop(manager: JobManager) -> None:
    outcome: dict[str, object] = {}

    async def elsewhere() -> None:  # like an ipykernel 7 subshell: its own thread and loop
        handle = manager.dispatch(Steps(1000, 0.01))
        while handle.state is not JobState.RUNNING:
            await asyncio.sleep(0.01)
        outcome["cancel"] = handle.cancel()
        outcome["state"] = await handle.join()
        done = manager.dispatch(Steps(2, 0.001))
        outcome["output"] = await done

    await in_threads(1, lambda _: asyncio.run(elsewhere()))
    assert outcome == {"cancel": True, "state": JobState.CANCELLED, "output": 2}


async def test_jobs_is_one_manager_from_every_thread_and_never_a_dead_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = jobs()
    seen: list[JobManager] = []
    await in_threads(3, lambda _: seen.append(jobs()))
    assert seen == [first, first, first]
    handle = first.dispatch(Steps(2, 0.001))
    assert await handle == 2

    # The manager's task dies of an engine error: the next jobs() says so and starts afresh.
    first._host.cancel()  # stands in for a crash: the task ends
    await anyio.sleep(0.05)
    assert not first.alive
    second = jobs()
    assert second is not first and second.alive
    assert await second.dispatch(Steps(2, 0.001)) == 2
    await second.aclose()
    kernel._current = None


async def test_a_crashed_manager_is_reported_and_replaced(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = jobs()

    def broken() -> None:
        raise RuntimeError("engine bug in the ticker")

    monkeypatch.setattr(first._recorder, "tick", broken)
    with anyio.fail_after(5):
        while first.alive:
            await anyio.sleep(0.02)
    second = jobs()
    assert second is not first
    assert any("engine bug in the ticker" in r.getMessage() for r in caplog.records)
    assert await second.dispatch(Steps(2, 0.001)) == 2
    await second.aclose()
    kernel._current = None
