"""What a running job sees: ``ctx`` in ``async def run(self, ctx)``."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .handle import ItemError, JobHandle
from .lifecycle import error_text
from .threads import run_in_thread
from .token import InterruptToken, _current_token

if TYPE_CHECKING:
    from .job import Job
    from .manager import JobManager

T = TypeVar("T")

_UNSET: Any = object()


class JobContext:
    """The job's link to its manager: progress, checkpoints, logs, children, worker threads.

    ``ctx.progress(done, total, item=..., message=..., advance=..., unit=...)`` is cheap enough
    to call for every item or every block of bytes; it is safe from worker threads too.
    """

    def __init__(self, manager: JobManager, handle: JobHandle) -> None:
        self.manager = manager
        self.handle = handle
        self.job_id = handle.id
        self._life = handle._life
        self.token: InterruptToken = handle.token
        self.progress = self._life.tracker.update
        self._logger = logging.getLogger(f"ipyjobs.jobs.{handle.kind}")

    @property
    def saved_state(self) -> Any:
        """The state last passed to ``checkpoint(state)``: after a resume, where to go on from;
        ``None`` on a fresh start."""
        text = self._life.checkpoint
        return None if text is None else json.loads(text)

    async def checkpoint(self, state: Any = _UNSET) -> None:
        """Save ``state`` (JSON-able) as the point to resume from, then honour requests: raise
        :class:`~ipyjobs.Cancelled` if the job is being cancelled (again at every later call),
        wait here while it is paused, and give other tasks a turn if this job has held the loop
        for a few milliseconds."""
        if state is not _UNSET:
            self._life.save_checkpoint(state)
        await self.token.checkpoint()

    def log(self, message: str, level: int = logging.INFO) -> None:
        """Log through ``logging`` (logger ``ipyjobs.jobs.<kind>``) and into the job's log tail
        and event stream. Safe from worker threads."""
        self._logger.log(level, "[%s] %s", self.job_id, message)
        self._life.recorder.queue_log(self._life, level, message)

    def item_failed(self, item: object, error: BaseException | str) -> None:
        """Record that one item failed and go on; the job can still complete."""
        text = error if isinstance(error, str) else error_text(error)
        self._life.item_failed(ItemError(str(item), text, time.time()))
        self.log(f"{item}: {text}", logging.WARNING)

    def spawn(self, job: Job, *, priority: int | None = None) -> JobHandle:
        """Start an owned child: cancel and pause of this job reach it, and this job does not
        complete before it ended. If this job ends otherwise, the child is cancelled."""
        return self.manager.submit_child(job, self.handle, owned=True, priority=priority)

    def dispatch(self, job: Job, *, priority: int | None = None) -> JobHandle:
        """Start or join a shared job (by its key): it is shown under this job, but this job's
        cancel and pause do not reach it. ``await`` the handle to wait for it."""
        return self.manager.submit_child(job, self.handle, owned=False, priority=priority)

    async def run_sync(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run blocking ``fn(*args)`` in a worker thread, where ``current_token()`` returns this
        job's token; ``fn`` should call ``token.check()`` now and then.

        On cancel, the token is cancelled and this waits until ``fn`` has returned or raised:
        the thread is never abandoned, so no work runs on after the job ended. Then it raises
        :class:`~ipyjobs.Cancelled`, even if ``fn`` returned.
        """
        result = await run_in_thread(functools.partial(_call_with_token, self.token, fn, args))
        self.token.raise_if_cancelled()
        return result


def _call_with_token(token: InterruptToken, fn: Callable[..., T], args: tuple) -> T:
    _current_token.set(token)  # the worker runs in a copy of the caller's context
    return fn(*args)
