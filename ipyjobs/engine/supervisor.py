"""The task that drives one job: its slot, its body, its owned children, its ending.

The ending follows what was asked, not how the body left: a job whose cancel was requested ends
``cancelled`` even if its code caught the cancellation and returned (a warning names where it
was caught), and a job stopped by its manager's close ends ``interrupted``.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from .context import JobContext
from .handle import current_job
from .lifecycle import Lifecycle, error_text, is_cancellation
from .limits import PriorityLimiter
from .state import JobState


async def drive(
    life: Lifecycle,
    limiter: PriorityLimiter | None,
    context: JobContext,
    on_end: Callable[[Lifecycle], None],
) -> None:
    """Run one job to its end. Only the cancellation of the manager's own task group escapes
    (the job then ends interrupted); everything a job raises ends that job alone."""
    current_job.set(life.handle)
    ending, output, error = JobState.COMPLETED, None, None
    try:
        with anyio.CancelScope() as scope:
            life.scope = scope
            await _take_slot(life, limiter)
            try:
                life.set_state(JobState.RUNNING)
                output = await life.handle.job.run(context)
                await _join_children(life)
            finally:
                if limiter is not None:
                    limiter.release()
        if life.stopping:
            ending, output = life.stopped_state(), None
            if not scope.cancelled_caught:
                life.warn_cancel_swallowed("returned")
    except anyio.get_cancelled_exc_class():
        # The manager's own scope was cancelled (its host is shutting down).
        life.interrupting = True
        with anyio.CancelScope(shield=True):
            await _stop_children(life)
        life.finish(JobState.INTERRUPTED)
        on_end(life)
        raise
    except BaseException as exc:  # one job's error, whatever it is, never takes the manager down
        if life.stopping:
            ending = life.stopped_state()
            if not is_cancellation(exc):
                life.warn_cancel_swallowed(f"raised {error_text(exc)}")
        else:  # a JobCancelled of a dependency means this job did not get what it needed
            ending, error = JobState.FAILED, exc
    if ending is not JobState.COMPLETED:
        with anyio.CancelScope(shield=True):
            await _stop_children(life)
    life.finish(ending, output=output, error=error)
    on_end(life)


async def _take_slot(life: Lifecycle, limiter: PriorityLimiter | None) -> None:
    """Wait for a slot of the job's group; a job paused while queued gives its slot back.

    The job's hold on the loop counts from when its task started or got its slot, not from its
    dispatch: a job queued behind thousands would otherwise give up its first turn at once."""
    life.token.start_holding()
    while True:
        await life.token.checkpoint()
        if limiter is None:
            return
        await limiter.acquire(life.handle.priority)
        if not life.token.paused and not life.token.cancelled:
            life.token.start_holding()
            return
        limiter.release()


async def _join_children(life: Lifecycle) -> None:
    for child in list(life.children):
        if child.owned:
            await child.join()


async def _stop_children(life: Lifecycle) -> None:
    """Owned children never outlive their owner: cancel (or interrupt) and wait for them."""
    for child in life.owned_children():
        child.stop(interrupting=life.interrupting)
        await child.ended()
