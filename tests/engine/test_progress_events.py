"""Progress, per-item errors, the event bus, limits and priorities."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from ipyjobs import JobManager, JobState, events

from .jobs import Items, Limited, Steps
from .test_states import wait_until

pytestmark = pytest.mark.anyio


async def test_per_item_errors_do_not_stop_the_job(manager: JobManager, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="ipyjobs.jobs")
    handle = manager.dispatch(Items(n=500, bad=(7, 123, 499)))
    assert await handle == 497
    assert handle.state is JobState.COMPLETED
    assert handle.error_count == 3
    assert [(e.item, e.error) for e in handle.item_errors] == [
        (f"item-{i}.wav", f"OSError: cannot read item-{i}.wav: file is truncated")
        for i in (7, 123, 499)
    ]
    assert "item-123.wav: OSError" in caplog.text
    record = manager.record(handle.id)
    assert record.error_count == 3 and record.item_errors[1]["item"] == "item-123.wav"


async def test_per_item_errors_are_bounded_in_memory_and_all_counted(manager: JobManager) -> None:
    handle = manager.dispatch(Items(n=1000, bad=tuple(range(1000))))
    assert await handle == 0
    assert handle.error_count == 1000
    assert len(handle.item_errors) == 100
    assert handle.item_errors[0].item == "item-0.wav"


async def test_the_final_progress_is_delivered_before_the_ending(ipyjobs_home) -> None:
    # A ticker slower than the job: only the final flush can deliver 100%.
    async with JobManager(ipyjobs_home, tick=10) as manager:
        with manager.bus.subscribe() as subscription:
            handle = manager.dispatch(Steps(100, 0))
            await handle
            seen = []
            while (event := subscription.get_nowait()) is not None:
                seen.append(event)
    progress = [e for e in seen if isinstance(e, events.ProgressChanged)]
    assert progress[-1].progress.done == 100 and progress[-1].progress.fraction == 1.0
    assert seen.index(progress[-1]) < seen.index(
        next(e for e in seen if isinstance(e, events.Completed))
    )
    assert handle.progress.done == 100


async def test_rate_and_eta_exclude_paused_time(manager: JobManager) -> None:
    handle = manager.dispatch(Steps(40, 0.02))  # about 50 items per second
    await wait_until(lambda: handle.tracker.done >= 10)
    handle.pause()
    await wait_until(lambda: handle.state is JobState.PAUSED)
    paused_at = time.monotonic()
    await anyio.sleep(0.5)
    handle.resume()
    await wait_until(lambda: handle.tracker.done >= 20)
    await anyio.sleep(0.05)
    snapshot = handle.progress
    wall = time.monotonic() - paused_at
    assert snapshot.rate is not None and snapshot.rate > 25  # 0.5 s of pause did not halve it
    assert snapshot.eta is not None and snapshot.eta < 1.0
    await handle
    assert handle.progress.elapsed < wall + 0.5  # pause not counted as active time
    assert handle.progress.elapsed < 40 * 0.02 * 2


async def test_a_slow_subscriber_gets_every_lifecycle_event_and_coalesced_progress(
    manager: JobManager,
) -> None:
    with manager.bus.subscribe(max_logs=10) as slow:
        handles = [manager.dispatch(Steps(200, 0.0005)) for _ in range(100)]
        for handle in handles:
            await handle
        # nothing read so far: the queue holds one progress slot per job at most
        queued = list(_drain(slow))
    completed = {e.job_id for e in queued if isinstance(e, events.Completed)}
    started = {e.job_id for e in queued if isinstance(e, events.Started)}
    progress = [e for e in queued if isinstance(e, events.ProgressChanged)]
    assert completed == started == {h.id for h in handles}
    assert len(progress) <= len(handles)
    assert all(e.progress.done == 200 for e in progress)


async def test_logs_beyond_a_subscribers_bound_are_dropped_and_counted(manager: JobManager) -> None:
    with manager.bus.subscribe(max_logs=10) as slow:
        handle = manager.dispatch(Items(n=50, bad=tuple(range(50))))
        await handle
        queued = list(_drain(slow))
    assert sum(isinstance(e, events.Log) for e in queued) == 10
    assert slow.dropped_logs == 40
    assert any(isinstance(e, events.Completed) for e in queued)
    assert len(handle.log_tail) == 50


def _drain(subscription):
    while (event := subscription.get_nowait()) is not None:
        yield event


async def test_async_iteration_of_a_subscription(manager: JobManager) -> None:
    with manager.bus.subscribe() as subscription:
        handle = manager.dispatch(Steps(3))
        kinds = []
        async for event in subscription:
            kinds.append(type(event).__name__)
            if isinstance(event, events.Completed):
                break
    assert kinds[0] == "Queued" and kinds[1] == "Started" and kinds[-1] == "Completed"
    assert handle.done


async def test_a_concurrency_limit_holds(manager: JobManager) -> None:
    manager.set_limit("limited", 2)
    running: list[int] = []
    handles = [
        manager.dispatch(Limited(10, 0.005, name=f"job {i}", running=running)) for i in range(8)
    ]
    for handle in handles:
        await handle
    level, peak = 0, 0
    for change in running:
        level += change
        peak = max(peak, level)
    assert peak == 2


async def test_priorities_order_the_queue(manager: JobManager) -> None:
    manager.set_limit("limited", 1)
    started: list[str] = []
    blocker = manager.dispatch(Limited(20, 0.005, name="blocker", started=started))
    await wait_until(lambda: blocker.state is JobState.RUNNING)
    low = manager.dispatch(Limited(1, 0, name="low", started=started), priority=0)
    high = manager.dispatch(Limited(1, 0, name="high", started=started), priority=10)
    middle = manager.dispatch(Limited(1, 0, name="middle", started=started), priority=5)
    for handle in (blocker, low, high, middle):
        await handle
    assert started == ["blocker", "high", "middle", "low"]


async def test_a_job_paused_while_queued_gives_its_slot_away(manager: JobManager) -> None:
    manager.set_limit("limited", 1)
    first = manager.dispatch(Limited(5, 0.01, name="first"))
    waiting = manager.dispatch(Limited(5, 0.01, name="waiting"))
    waiting.pause()
    later = manager.dispatch(Limited(5, 0.01, name="later"))
    await first
    await later
    assert waiting.state is JobState.PAUSED
    waiting.resume()
    assert await waiting == 5
