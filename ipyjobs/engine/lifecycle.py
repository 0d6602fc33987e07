"""The one owner of a job's lifecycle: state, intents, ending, checkpoints, item errors, warnings.

The supervisor drives it (running, ended), the manager's controls ask it to pause, resume or
cancel, the job's context writes checkpoints, item errors and logs through it, and the handle
shows it. Every change happens on the manager's loop (worker threads only queue logs and progress)
and is recorded by the :class:`~.recorder.Recorder`: a history row, a dirty job row, an event.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from . import events
from .errors import Cancelled, InvalidTransition, JobCancelled
from .progress import Progress, ProgressSnapshot
from .state import Intent, JobState, is_legal
from .token import InterruptToken

if TYPE_CHECKING:
    from .handle import ItemError, JobHandle
    from .recorder import Recorder

log = logging.getLogger("ipyjobs.engine")

#: How many per-item errors a job keeps in memory; all of them are counted.
MAX_ITEM_ERRORS = 100
#: How many log lines a job keeps for display.
LOG_TAIL = 50
#: How many warnings a job keeps.
MAX_WARNINGS = 20


def error_text(error: BaseException) -> str:
    """``"TypeName: message"``, the form failure events and records carry."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def where_caught(error: BaseException) -> str | None:
    """``"run (jobs.py:42)"``: the function that caught ``error``, and the line of its ``try``
    body the error came through; ``None`` if the error never left the place it was raised."""
    tb = error.__traceback__
    if tb is None:
        return None
    frame = tb.tb_frame
    return f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{tb.tb_lineno})"


class Lifecycle:
    """Where one job is in its life, and every change to it."""

    def __init__(self, handle: JobHandle, recorder: Recorder, checkpoint: str | None) -> None:
        self.handle = handle
        self.recorder = recorder
        self.token = InterruptToken(on_park=self.pause_took_effect)
        self.tracker = Progress(self, recorder.queue_progress)
        self.state = JobState.QUEUED
        self.intent: Intent | None = None
        self.started = False
        self.interrupting = False
        """The job is being stopped because its manager closes: it ends interrupted."""
        self.scope: anyio.CancelScope | None = None
        self.checkpoint = checkpoint
        self.snapshot = ProgressSnapshot()
        self.output: Any = None
        self.error: BaseException | None = None
        self.children: list[JobHandle] = []
        self.item_errors: list[ItemError] = []
        self.error_count = 0
        self.log_tail: deque[str] = deque(maxlen=LOG_TAIL)
        self.warnings: list[str] = []
        self._finished: anyio.Event | None = None
        self._waiters = 0

    @property
    def done(self) -> bool:
        return self.state.is_terminal or self.state is JobState.INTERRUPTED

    @property
    def stopping(self) -> bool:
        """A cancel (or the manager's close) was asked for: the job must not complete."""
        return self.intent is Intent.CANCELLING or self.interrupting

    @property
    def waiters(self) -> int:
        return self._waiters

    def owned_children(self) -> list[Lifecycle]:
        return [child._life for child in self.children if child.owned and not child.done]

    # -- state changes ---------------------------------------------------------------------

    def set_state(self, new: JobState, detail: str | None = None) -> None:
        old = self.state
        if not is_legal(old, new):
            handle = self.handle
            raise InvalidTransition(
                f"job {handle.id} ({handle.title}) cannot go from {old.value} to {new.value}"
            )
        self.state = new
        self.recorder.record(self, new, detail)
        job_id, kind = self.handle.id, self.handle.kind
        if new is JobState.RUNNING:
            self.tracker.start_clock()
            moved: events.JobEvent = (
                events.Resumed(job_id, kind) if self.started else events.Started(job_id, kind)
            )
            self.started = True
        elif new is JobState.QUEUED:
            moved = events.Resumed(job_id, kind)
        else:
            self.tracker.stop_clock()
            moved = self._ending_event(new, detail)
        self.recorder.publish(moved)

    def _ending_event(self, state: JobState, detail: str | None) -> events.JobEvent:
        job_id, kind = self.handle.id, self.handle.kind
        if state is JobState.COMPLETED:
            return events.Completed(job_id, kind, output=self.output)
        if state is JobState.FAILED:
            error_type = type(self.error).__name__ if self.error else ""
            return events.Failed(job_id, kind, error=detail or "", error_type=error_type)
        if state is JobState.CANCELLED:
            return events.Cancelled(job_id, kind)
        if state is JobState.INTERRUPTED:
            return events.Interrupted(job_id, kind)
        return events.Paused(job_id, kind)

    def finish(
        self, state: JobState, *, output: Any = None, error: BaseException | None = None
    ) -> None:
        """Deliver the final progress and pending logs, then the ending, then wake waiters."""
        self.recorder.flush_logs()
        self.publish_progress()
        self.output, self.error = output, error
        self.intent = None
        self.scope = None
        self.recorder.pausing.discard(self)
        try:
            self.set_state(state, None if error is None else error_text(error))
        except InvalidTransition:
            # An engine bug must not take the manager, and every other job, down with it.
            log.exception("ipyjobs engine error while ending job %s", self.handle.id)
            self.state = state
        if self._finished is not None:
            self._finished.set()

    async def ended(self) -> None:
        """Wait for the end, counted as a waiter; no checkpoint (the engine's own wait)."""
        if self.done:
            return
        if self._finished is None:
            self._finished = anyio.Event()
        finished = self._finished
        self._waiters += 1
        try:
            await finished.wait()
        finally:
            self._waiters -= 1

    # -- controls --------------------------------------------------------------------------

    def pause(self) -> bool:
        """See :meth:`JobManager.pause`."""
        if self.done:
            handle = self.handle
            raise InvalidTransition(
                f"cannot pause job {handle.id} ({handle.title}): it is {self.state.value}"
            )
        if self.intent is not None or self.state is JobState.PAUSED:
            return False
        self.token.request_pause()
        if self.state is JobState.QUEUED:
            self.set_state(JobState.PAUSED)
        else:
            self.intent = Intent.PAUSING
            self.recorder.pausing.add(self)
            if self.token.parked:
                self.pause_took_effect()
        for child in self.owned_children():
            child.pause()
        return True

    def pause_took_effect(self) -> None:
        if self.intent is Intent.PAUSING and self.state is JobState.RUNNING:
            self.intent = None
            self.recorder.pausing.discard(self)
            self.set_state(JobState.PAUSED)
            self.publish_progress()  # show exactly where it stopped

    def resume(self) -> bool:
        """See :meth:`JobManager.resume` (jobs that a task drives; not interrupted ones)."""
        if self.intent is Intent.CANCELLING:  # the cancel wakes it; keep it cancelling
            return False
        resumed = False
        if self.state is JobState.PAUSED or self.intent is Intent.PAUSING:
            self.intent = None
            self.recorder.pausing.discard(self)
            self.token.request_resume()
            if self.state is JobState.PAUSED:
                self.set_state(JobState.RUNNING if self.started else JobState.QUEUED)
            resumed = True
        for child in self.owned_children():
            resumed = child.resume() or resumed
        return resumed

    def cancel(self) -> bool:
        """See :meth:`JobManager.cancel`."""
        if self.state.is_terminal or self.intent is Intent.CANCELLING:
            return False
        if self.state is JobState.INTERRUPTED:
            self.set_state(JobState.CANCELLED)
            return True
        self.stop(interrupting=False)
        return True

    def stop(self, *, interrupting: bool) -> None:
        """Record why the job stops (cancel, or its manager closing), then signal it and its
        owned children: the token for checkpoints and threads, the scope for any await."""
        if interrupting:
            self.interrupting = True
        else:
            self.intent = Intent.CANCELLING
            self.recorder.pausing.discard(self)
        self.token.request_cancel()
        if self.scope is not None:
            self.scope.cancel()
        for child in self.owned_children():
            child.stop(interrupting=self.interrupting)

    def stopped_state(self) -> JobState:
        return JobState.INTERRUPTED if self.interrupting else JobState.CANCELLED

    # -- what the job reports --------------------------------------------------------------

    def save_checkpoint(self, state: Any) -> None:
        self.checkpoint = json.dumps(state)
        self.recorder.mark_dirty(self)

    def item_failed(self, item: ItemError) -> None:
        self.error_count += 1
        if len(self.item_errors) < MAX_ITEM_ERRORS:
            self.item_errors.append(item)

    def warn(self, message: str) -> None:
        """A warning about the job: kept on it (the panel shows it), logged, and published as a
        log event. Never printed into a cell."""
        log.warning("job %s (%s): %s", self.handle.id, self.handle.title, message)
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        self.recorder.mark_dirty(self)
        self.recorder.publish(
            events.Log(self.handle.id, self.handle.kind, level=logging.WARNING, message=message)
        )

    def warn_cancel_swallowed(self, how: str) -> None:
        """The job went on after its cancel (``how``: it returned, or raised something else)."""
        places = [where for where in map(where_caught, self.token.raised) if where]
        where = f" in {places[0]}" if places else ""
        self.warn(
            f"the job {how} after it was cancelled: its code caught the cancellation{where}, "
            "so it ended cancelled. Let ipyjobs.Cancelled propagate: catch Exception rather "
            "than BaseException or a bare except, or re-raise it."
        )

    def publish_progress(self, now: float | None = None) -> None:
        self.snapshot = self.tracker.sample(now)
        self.recorder.mark_dirty(self)
        self.recorder.publish(
            events.ProgressChanged(self.handle.id, self.handle.kind, progress=self.snapshot)
        )


def is_cancellation(error: BaseException) -> bool:
    """A ``Cancelled`` (or ``JobCancelled`` of a job being stopped), or a group of them."""
    if isinstance(error, BaseExceptionGroup):
        return all(is_cancellation(e) for e in error.exceptions)
    return isinstance(error, (Cancelled, JobCancelled, anyio.get_cancelled_exc_class()))
