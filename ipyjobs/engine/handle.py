"""The handle of a dispatched job: its live state, its controls, and its result."""

from __future__ import annotations

import contextvars
import time
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from .errors import JobCancelled, JobInterrupted
from .progress import Progress, ProgressSnapshot
from .state import Intent, JobState
from .text import format_progress
from .token import InterruptToken

if TYPE_CHECKING:
    from .job import Job
    from .manager import JobManager

#: The handle of the job whose task (or worker thread) is running; ``None`` outside jobs.
current_job: contextvars.ContextVar[JobHandle | None] = contextvars.ContextVar(
    "ipyjobs_current_job", default=None
)

#: How many per-item errors a job keeps in memory; all of them are counted.
MAX_ITEM_ERRORS = 100
#: How many log lines a handle keeps for display.
LOG_TAIL = 50


@dataclass(frozen=True, slots=True)
class ItemError:
    """One item a job could not process; the job went on with the others."""

    item: str
    error: str
    at: float


def error_text(error: BaseException) -> str:
    """``"TypeName: message"``, the form failure events and records carry."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class JobHandle:
    """A job dispatched to a manager. ``await handle`` gives its output or raises its error.

    Read-only views (``state``, ``progress``, ``item_errors``, ...) are safe to read any time
    on the loop; the controls ``pause``, ``resume`` and ``cancel`` go through the manager, which
    records the intent before signalling the job.
    """

    def __init__(
        self,
        manager: JobManager,
        job: Job,
        job_id: str,
        *,
        parent: JobHandle | None,
        owned: bool,
        priority: int,
        params_json: str,
        checkpoint: str | None,
    ) -> None:
        self.id = job_id
        self.job = job
        self.kind = job.kind
        self.title = job.title
        self.key = job.key
        self.parent = parent
        self.owned = owned
        self.priority = priority
        self.created_at = time.time()
        self.dispatches = 1
        """How many ``dispatch`` calls returned this handle (shared jobs are joined by key)."""
        self.where: str | None = None
        """Where the job's work runs (set by the executor when it first runs some)."""
        self.token = InterruptToken(on_park=lambda: manager._pause_took_effect(self))
        self.tracker = Progress(self, manager._queue_progress)
        self._manager = manager
        self._params_json = params_json
        self._checkpoint = checkpoint
        self._state = JobState.QUEUED
        self._intent: Intent | None = None
        self._started = False
        self._interrupting = False
        self._scope: anyio.CancelScope | None = None
        self._snapshot = ProgressSnapshot()
        self._output: Any = None
        self._error: BaseException | None = None
        self._finished: anyio.Event | None = None
        self._waiters = 0
        self._children: list[JobHandle] = []
        self._item_errors: list[ItemError] = []
        self._error_count = 0
        self._log_tail: deque[str] = deque(maxlen=LOG_TAIL)

    # -- views -----------------------------------------------------------------------------

    @property
    def state(self) -> JobState:
        return self._state

    @property
    def intent(self) -> Intent | None:
        """``pausing`` or ``cancelling`` while a request has not taken effect yet."""
        return self._intent

    @property
    def status(self) -> str:
        """The state for display: the intent while one is pending, else the state."""
        return (self._intent or self._state).value

    @property
    def done(self) -> bool:
        return self._state.is_terminal or self._state is JobState.INTERRUPTED

    @property
    def parent_id(self) -> str | None:
        return None if self.parent is None else self.parent.id

    @property
    def children(self) -> list[JobHandle]:
        """Jobs dispatched from this job: owned children and shared jobs it started."""
        return list(self._children)

    @property
    def progress(self) -> ProgressSnapshot:
        """The newest sampled progress (sampled a few times a second, and at the end)."""
        return self._snapshot

    @property
    def output(self) -> Any:
        return self._output

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def error_text(self) -> str | None:
        return None if self._error is None else error_text(self._error)

    @property
    def item_errors(self) -> list[ItemError]:
        """The first ``MAX_ITEM_ERRORS`` per-item errors; ``error_count`` counts them all."""
        return list(self._item_errors)

    @property
    def error_count(self) -> int:
        return self._error_count

    @property
    def log_tail(self) -> list[str]:
        return list(self._log_tail)

    @property
    def waiters(self) -> int:
        """How many jobs or callers are awaiting this job right now."""
        return self._waiters

    # -- controls --------------------------------------------------------------------------

    def pause(self) -> bool:
        """Ask the job (and its owned children) to wait at their next checkpoint."""
        return self._manager.pause(self)

    def resume(self) -> bool:
        return self._manager.resume(self)

    def cancel(self) -> bool:
        """Stop the job and its owned children. A no-op on a job that already ended."""
        return self._manager.cancel(self)

    # -- waiting ---------------------------------------------------------------------------

    async def join(self) -> JobState:
        """Wait until the job ended and return its final state; never raises its error.

        Inside another job, the wait counts as parked (pausing the waiter takes effect at once)
        and is followed by a checkpoint, so a paused waiter stays paused after the end. On
        cancellation of the waiting task, the wait stops and this job goes on.
        """
        waiter = current_job.get()
        if waiter is None or waiter is self:
            await self._ended()
            return self._state
        with waiter.token.parking():
            await self._ended()
        await waiter.token.checkpoint()
        return self._state

    async def _ended(self) -> None:
        """Wait for the end, counted as a waiter; no checkpoint (the manager's own wait)."""
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

    async def result(self) -> Any:
        """Wait for the end; return the output or raise the job's own exception."""
        state = await self.join()
        if state is JobState.COMPLETED:
            return self._output
        if state is JobState.CANCELLED:
            raise JobCancelled(f"job {self.id} ({self.title}) was cancelled")
        if state is JobState.INTERRUPTED:
            raise JobInterrupted(
                f"job {self.id} ({self.title}) was interrupted; manager.resume({self.id!r}) "
                "continues it"
            )
        assert self._error is not None
        raise self._error

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result().__await__()

    def _set_finished(self) -> None:
        if self._finished is not None:
            self._finished.set()

    def __repr__(self) -> str:
        progress = format_progress(self._snapshot)
        detail = f" {progress}" if progress else ""
        if self._error is not None:
            detail += f" error={self.error_text!r}"
        return f"<Job {self.id} {self.title!r} {self.status}{detail}>"
