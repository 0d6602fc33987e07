"""Owned children and shared jobs."""

from __future__ import annotations

import anyio
import pytest

from ipyjobs import JobCancelled, JobManager, JobState

from .jobs import Parent, Shared, Steps, WaitFor
from .test_states import wait_until

pytestmark = pytest.mark.anyio


async def test_owned_children_are_cancelled_with_their_parent(manager: JobManager) -> None:
    parent = manager.dispatch(Parent(children=3, n=1000))
    await wait_until(
        lambda: len(parent.children) == 3 and all(c.progress.done for c in parent.children)
    )
    parent.cancel()
    assert await parent.join() is JobState.CANCELLED
    assert [c.state for c in parent.children] == [JobState.CANCELLED] * 3
    assert all(c.owned and c.parent is parent for c in parent.children)


async def test_pausing_a_parent_pauses_its_owned_children(manager: JobManager) -> None:
    parent = manager.dispatch(Parent(children=2, n=60, delay=0.01))
    await wait_until(
        lambda: len(parent.children) == 2 and all(c.progress.done for c in parent.children)
    )
    parent.pause()
    await wait_until(
        lambda: (
            parent.state is JobState.PAUSED
            and all(c.state is JobState.PAUSED for c in parent.children)
        )
    )
    done = [c.tracker.done for c in parent.children]
    await anyio.sleep(0.1)
    assert [c.tracker.done for c in parent.children] == done
    parent.resume()
    assert await parent == [60, 60]


async def test_a_parent_completes_only_after_its_owned_children(manager: JobManager) -> None:
    parent = manager.dispatch(Parent(children=2, n=5))
    await parent
    assert all(c.state is JobState.COMPLETED for c in parent.children)


async def test_a_shared_job_survives_a_waiters_cancel(manager: JobManager) -> None:
    shared = Shared("model-x", n=40, delay=0.01)
    waiters = [manager.dispatch(WaitFor(shared)) for _ in range(3)]
    await wait_until(lambda: all(w.children for w in waiters))
    download = waiters[0].children[0]
    assert all(w.children == [download] for w in waiters)  # shown under every waiter
    assert download.parent is waiters[0] and not download.owned
    await wait_until(lambda: download.waiters == 3)
    waiters[0].cancel()
    assert await waiters[0].join() is JobState.CANCELLED
    assert download.state is JobState.RUNNING and download.waiters == 2
    assert [await w for w in waiters[1:]] == ["result of model-x"] * 2
    assert len(shared.runs) == 1


async def test_a_waiter_of_a_paused_shared_job_waits_and_finishes_after_resume(
    manager: JobManager,
) -> None:
    shared = Shared("model-y", n=30, delay=0.01)
    waiter = manager.dispatch(WaitFor(shared))
    await wait_until(lambda: waiter.children and waiter.children[0].tracker.done >= 2)
    download = waiter.children[0]
    download.pause()
    await wait_until(lambda: download.state is JobState.PAUSED)
    await anyio.sleep(0.2)
    assert waiter.state is JobState.RUNNING and not waiter.done
    download.resume()
    assert await waiter == "result of model-y"


async def test_fifty_dispatches_of_one_key_share_one_run(manager: JobManager) -> None:
    shared = Shared("model-z", n=10)
    handles = [manager.dispatch(Shared("model-z", n=10, runs=shared.runs)) for _ in range(50)]
    assert all(h is handles[0] for h in handles)
    assert handles[0].dispatches == 50
    outputs = [await h for h in handles]
    assert outputs == ["result of model-z"] * 50
    assert len(shared.runs) == 1
    # Once ended, the key is free: the next dispatch runs again.
    again = manager.dispatch(Shared("model-z", n=1, runs=shared.runs))
    assert again is not handles[0]
    await again
    assert len(shared.runs) == 2


async def test_fifty_waiting_jobs_share_one_run(manager: JobManager) -> None:
    shared = Shared("model-w", n=20)
    waiters = [
        manager.dispatch(WaitFor(Shared("model-w", n=20, runs=shared.runs))) for _ in range(50)
    ]
    assert [await w for w in waiters] == ["result of model-w"] * 50
    assert len(shared.runs) == 1


async def test_a_cancelled_dependency_fails_the_waiter_with_its_reason(manager: JobManager) -> None:
    waiter = manager.dispatch(WaitFor(Shared("model-v", n=1000)))
    await wait_until(lambda: waiter.children and waiter.children[0].state is JobState.RUNNING)
    waiter.children[0].cancel()
    with pytest.raises(JobCancelled, match="was cancelled"):
        await waiter
    assert waiter.state is JobState.FAILED  # the waiter was not cancelled itself


async def test_an_owned_child_of_a_failed_parent_is_cancelled(manager: JobManager) -> None:
    from .jobs import Fails

    class SpawnsThenFails(Fails, kind="test.spawns_then_fails"):
        async def run(self, ctx):
            ctx.spawn(Steps(1000, 0.01))
            await anyio.sleep(0.05)
            raise ValueError(self.message)

    parent = manager.dispatch(SpawnsThenFails("broken"))
    assert await parent.join() is JobState.FAILED
    assert parent.children[0].state is JobState.CANCELLED
