"""The handle of a dispatched job: its live state, its controls, and its result."""

from __future__ import annotations

import contextvars
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import JobCancelled, JobInterrupted
from .lifecycle import Lifecycle, error_text
from .progress import Progress, ProgressSnapshot
from .state import Intent, JobState
from .text import format_progress
from .token import InterruptToken

if TYPE_CHECKING:
    from .job import Job
    from .manager import JobManager
    from .recorder import Recorder

#: The handle of the job whose task (or worker thread) is running; ``None`` outside jobs.
current_job: contextvars.ContextVar[JobHandle | None] = contextvars.ContextVar(
    "ipyjobs_current_job", default=None
)


@dataclass(frozen=True, slots=True)
class ItemError:
    """One item a job could not process; the job went on with the others."""

    item: str
    error: str
    at: float


class JobHandle:
    """A job dispatched to a manager. ``await handle`` gives its output or raises its error.

    Read-only views (``state``, ``progress``, ``item_errors``, ...) may be read any time; they
    change on the manager's loop. The controls ``pause``, ``resume`` and ``cancel`` go through
    the manager (from any thread), which records the intent before signalling the job.
    """

    def __init__(
        self,
        manager: JobManager,
        recorder: Recorder,
        job: Job,
        job_id: str,
        *,
        parent: JobHandle | None,
        owned: bool,
        priority: int,
        params_json: str,
        checkpoint: str | None,
        created_at: float,
    ) -> None:
        self.id = job_id
        self.job = job
        self.kind = job.kind
        self.title = job.title
        self.key = job.key
        self.parent = parent
        self.owned = owned
        self.priority = priority
        self.params_json = params_json
        self.created_at = created_at
        self.dispatches = 1
        """How many ``dispatch`` calls returned this handle (shared jobs are joined by key)."""
        self.where: str | None = None
        """Where the job's work runs (set by the executor when it first runs some)."""
        self._manager = manager
        self._life = Lifecycle(self, recorder, checkpoint)
        self.token: InterruptToken = self._life.token

    # -- views -----------------------------------------------------------------------------

    @property
    def state(self) -> JobState:
        return self._life.state

    @property
    def intent(self) -> Intent | None:
        """``pausing`` or ``cancelling`` while a request has not taken effect yet."""
        return self._life.intent

    @property
    def status(self) -> str:
        """The state for display: the intent while one is pending, else the state."""
        return (self._life.intent or self._life.state).value

    @property
    def done(self) -> bool:
        return self._life.done

    @property
    def parent_id(self) -> str | None:
        return None if self.parent is None else self.parent.id

    @property
    def children(self) -> list[JobHandle]:
        """Jobs dispatched from this job: owned children and shared jobs it started."""
        return list(self._life.children)

    @property
    def progress(self) -> ProgressSnapshot:
        """The newest sampled progress (sampled a few times a second, and at the end)."""
        return self._life.snapshot

    @property
    def tracker(self) -> Progress:
        """The live progress the job writes (``progress`` is its sampled snapshot)."""
        return self._life.tracker

    @property
    def output(self) -> Any:
        return self._life.output

    @property
    def error(self) -> BaseException | None:
        return self._life.error

    @property
    def error_text(self) -> str | None:
        error = self._life.error
        return None if error is None else error_text(error)

    @property
    def item_errors(self) -> list[ItemError]:
        """The first ``MAX_ITEM_ERRORS`` per-item errors; ``error_count`` counts them all."""
        return list(self._life.item_errors)

    @property
    def error_count(self) -> int:
        return self._life.error_count

    @property
    def log_tail(self) -> list[str]:
        return list(self._life.log_tail)

    @property
    def warnings(self) -> list[str]:
        """Warnings about the job (it blocked the loop, it swallowed its cancel, ...), oldest
        first; also logged through ``logging``, never printed into a cell."""
        return self._life.warnings

    @property
    def checkpoint(self) -> str | None:
        """The JSON text of the state last saved by ``ctx.checkpoint(state)``."""
        return self._life.checkpoint

    @property
    def waiters(self) -> int:
        """How many jobs or callers are awaiting this job right now."""
        return self._life.waiters

    # -- controls --------------------------------------------------------------------------

    def pause(self) -> bool:
        """Ask the job (and its owned children) to wait at their next checkpoint."""
        return self._manager.pause(self)

    def resume(self) -> bool | JobHandle:
        return self._manager.resume(self)

    def cancel(self) -> bool:
        """Stop the job and its owned children. A no-op on a job that already ended."""
        return self._manager.cancel(self)

    # -- waiting ---------------------------------------------------------------------------

    async def join(self) -> JobState:
        """Wait until the job ended and return its final state; never raises its error.

        Inside another job, the wait counts as parked (pausing the waiter takes effect at once)
        and is followed by a checkpoint, so a paused waiter stays paused after the end. On
        cancellation of the waiting task, the wait stops and this job goes on. From another
        thread's event loop (a subshell), the wait is handed to the manager's loop.
        """
        if not self._manager.on_its_loop():
            await self._manager.wait_from_elsewhere(self)
            return self.state
        waiter = current_job.get()
        if waiter is None or waiter is self:
            await self._life.ended()
            return self.state
        with waiter.token.parking():
            await self._life.ended()
        await waiter.token.checkpoint()
        return self.state

    async def result(self) -> Any:
        """Wait for the end; return the output or raise the job's own exception."""
        state = await self.join()
        if state is JobState.COMPLETED:
            return self._life.output
        if state is JobState.CANCELLED:
            raise JobCancelled(f"job {self.id} ({self.title}) was cancelled")
        if state is JobState.INTERRUPTED:
            raise JobInterrupted(
                f"job {self.id} ({self.title}) was interrupted; manager.resume({self.id!r}) "
                "continues it"
            )
        assert self._life.error is not None
        raise self._life.error

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result().__await__()

    def __repr__(self) -> str:
        progress = format_progress(self._life.snapshot)
        detail = f" {progress}" if progress else ""
        if self._life.error is not None:
            detail += f" error={self.error_text!r}"
        return f"<Job {self.id} {self.title!r} {self.status}{detail}>"
