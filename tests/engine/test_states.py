"""States, transitions and control requests, on a real manager."""

from __future__ import annotations

import anyio
import pytest

from ipyjobs import (
    Intent,
    InvalidTransition,
    JobCancelled,
    JobManager,
    JobState,
    ManagerClosed,
    events,
)

from .jobs import Fails, Steps, Threaded

pytestmark = pytest.mark.anyio

Q, R, P, C, F, X, INTR = (
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.PAUSED,
    JobState.COMPLETED,
    JobState.FAILED,
    JobState.CANCELLED,
    JobState.INTERRUPTED,
)


def states(manager: JobManager, job_id: str) -> list[JobState]:
    return [state for _, state, _ in manager.history(job_id)]


async def wait_until(predicate, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


async def test_queued_running_completed(manager: JobManager) -> None:
    handle = manager.dispatch(Steps(5))
    assert handle.state is Q
    assert await handle == 5
    assert states(manager, handle.id) == [Q, R, C]
    assert handle.progress.done == 5 and handle.progress.total == 5


async def test_running_failed_keeps_the_real_error(manager: JobManager) -> None:
    with manager.bus.subscribe() as subscription:
        handle = manager.dispatch(Fails("no audio stream in interview.mp4"))
        with pytest.raises(ValueError, match=r"no audio stream in interview\.mp4"):
            await handle
        failed = [e async for e in _drain(subscription) if isinstance(e, events.Failed)]
    assert handle.state is F
    assert failed[0].error == "ValueError: no audio stream in interview.mp4"
    assert failed[0].error_type == "ValueError"
    assert states(manager, handle.id) == [Q, R, F]
    record = manager.record(handle.id)
    assert record.error == "ValueError: no audio stream in interview.mp4"


async def _drain(subscription):
    while (event := subscription.get_nowait()) is not None:
        yield event


async def test_queued_cancelled_never_runs(manager: JobManager) -> None:
    job = Threaded(n=5)
    handle = manager.dispatch(job)
    assert handle.cancel() is True
    assert await handle.join() is X
    assert job.ticks == []
    assert states(manager, handle.id) == [Q, X]


async def test_queued_paused_queued_running(manager: JobManager) -> None:
    handle = manager.dispatch(Steps(3))
    assert handle.pause() is True
    assert handle.state is P  # a queued job pauses at once
    await anyio.sleep(0.05)
    assert handle.state is P and handle.progress.done == 0
    assert handle.resume() is True
    assert await handle == 3
    assert states(manager, handle.id) == [Q, P, Q, R, C]


async def test_running_paused_running_and_paused_cancelled(manager: JobManager) -> None:
    first = manager.dispatch(Steps(50, 0.01))
    second = manager.dispatch(Steps(50, 0.01))
    await wait_until(lambda: first.progress.done >= 2 and second.progress.done >= 2)
    first.pause()
    second.pause()
    await wait_until(lambda: first.state is P and second.state is P)
    done = first.progress.done
    await anyio.sleep(0.1)
    assert first.progress.done == done  # really stopped
    first.resume()
    second.cancel()
    assert await first == 50
    assert await second.join() is X
    assert states(manager, first.id) == [Q, R, P, R, C]
    assert states(manager, second.id) == [Q, R, P, X]


async def test_running_cancelled(manager: JobManager) -> None:
    handle = manager.dispatch(Steps(1000, 0.01))
    await wait_until(lambda: handle.state is R)
    handle.cancel()
    with pytest.raises(JobCancelled):
        await handle
    assert states(manager, handle.id) == [Q, R, X]


async def test_close_interrupts_and_resume_requeues(ipyjobs_home) -> None:
    async with JobManager(ipyjobs_home, tick=0.02) as first_manager:
        running = first_manager.dispatch(Steps(1000, 0.01))
        paused = first_manager.dispatch(Steps(1000, 0.01))
        paused.pause()
        await wait_until(lambda: running.state is R)
    assert running.state is INTR and paused.state is INTR
    with pytest.raises(ManagerClosed):
        first_manager.dispatch(Steps(1))
    async with JobManager(ipyjobs_home, tick=0.02) as manager:
        assert manager.record(running.id).state is INTR
        # Steps is not resumable: the record says so rather than restarting from zero.
        with pytest.raises(Exception, match="not resumable"):
            manager.resume(running.id)
        assert states(manager, running.id) == [Q, R, INTR]
        assert states(manager, paused.id) == [Q, P, INTR]


async def test_illegal_requests(manager: JobManager) -> None:
    handle = manager.dispatch(Steps(2))
    await handle
    with pytest.raises(InvalidTransition, match="completed"):
        handle.resume()
    with pytest.raises(InvalidTransition, match="completed"):
        handle.pause()
    assert handle.cancel() is False  # documented no-op on a job that ended

    cancelled = manager.dispatch(Steps(100))
    cancelled.cancel()
    await cancelled.join()
    with pytest.raises(InvalidTransition, match="cancelled"):
        cancelled.pause()

    running = manager.dispatch(Steps(100, 0.01))
    await wait_until(lambda: running.state is R)
    assert running.resume() is False  # not paused: nothing to do
    assert running.pause() is True
    assert running.pause() is False  # already pausing or paused
    running.cancel()
    assert running.cancel() is False  # already cancelling
    await running.join()


async def test_intent_shows_until_the_thread_stops(manager: JobManager) -> None:
    job = Threaded(n=1000, check_every=0.2)
    handle = manager.dispatch(job)
    await wait_until(lambda: len(job.ticks) >= 1)
    handle.pause()
    assert handle.intent is Intent.PAUSING and handle.state is R
    assert handle.status == "pausing"
    await wait_until(lambda: handle.state is P)
    ticks = len(job.ticks)
    await anyio.sleep(0.3)
    assert len(job.ticks) == ticks
    handle.resume()
    await wait_until(lambda: len(job.ticks) > ticks)
    handle.cancel()
    assert handle.status == "cancelling"
    assert handle.state is R  # the thread is still inside time.sleep
    assert await handle.join() is X
    stopped = len(job.ticks)
    await anyio.sleep(0.3)
    assert len(job.ticks) == stopped


async def test_dispatch_rejects_non_jobs(manager: JobManager) -> None:
    with pytest.raises(TypeError, match=r"ipyjobs\.Job"):
        manager.dispatch(lambda: None)  # type: ignore[arg-type]


async def test_a_job_whose_worker_threads_stop_on_cancel_ends_cancelled(
    manager: JobManager,
) -> None:
    """Each thread raises JobCancelled; the job's task group gathers them in a group."""
    import time as _time

    from ipyjobs import current_token

    def work() -> None:
        while True:
            current_token().check()
            _time.sleep(0.01)

    class Fanout(Steps, kind="test.fanout"):
        async def run(self, ctx):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(ctx.run_sync, work)

    handle = manager.dispatch(Fanout())
    await wait_until(lambda: handle.state is R)
    await anyio.sleep(0.05)
    handle.cancel()
    assert await handle.join() is X
