"""The job manager: dispatch, control, progress sampling, persistence.

One manager serves one event loop. In Jupyter, ``ipyjobs.jobs()`` returns the kernel's manager,
started in the background on the kernel's loop; in a script, ``async with JobManager() as jm``
runs it inside the caller's task group. Every job runs as a task of the manager's task group:
the manager owns them, and closing it interrupts what is still active (resumable later).
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import json
import logging
import math
import sys
import time
import uuid
import weakref
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from . import events
from .context import JobContext
from .errors import InvalidTransition, JobCancelled, JobNotFound, ManagerClosed, NotResumable
from .executor import Executor, LocalExecutor, executor_from_environment
from .handle import JobHandle, current_job, error_text
from .job import Job, job_class
from .limits import PriorityLimiter
from .paths import data_home
from .progress import Progress
from .state import Intent, JobState, is_legal
from .store import JobRecord, JobStore, StoreWriter

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

log = logging.getLogger(__name__)

_LIFECYCLE_EVENT = {
    JobState.COMPLETED: events.Completed,
    JobState.FAILED: events.Failed,
    JobState.CANCELLED: events.Cancelled,
    JobState.INTERRUPTED: events.Interrupted,
    JobState.PAUSED: events.Paused,
}


def _only_cancellations(exc: BaseException) -> bool:
    """A ``JobCancelled``, or a group of them (from a task group inside the job)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancellations(e) for e in exc.exceptions)
    return isinstance(exc, JobCancelled)


def _to_json(value: Any) -> str:
    return json.dumps(value, default=repr)


class JobManager:
    """Runs jobs on the current event loop.

    ``home`` is the data folder (default: ``$IPYJOBS_HOME`` or the platform's); the job store
    lives in ``home/jobs``. ``limits`` maps a job group to its number of concurrent jobs.
    ``tick`` is how often progress is sampled and published; the store is written every
    ``store_interval`` seconds in a worker thread.
    """

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        limits: Mapping[str, int] | None = None,
        persist: bool = True,
        tick: float = 0.1,
        store_interval: float = 0.5,
    ) -> None:
        self.home = Path(home) if home is not None else data_home()
        self.session = uuid.uuid4().hex
        self.bus = events.EventBus()
        self.store = JobStore(self.home / "jobs", self.session) if persist else None
        self._writer = StoreWriter(self.store) if self.store else None
        self.interrupted_at_start = self.store.mark_orphans_interrupted() if self.store else []
        self._limiters = {group: PriorityLimiter(n) for group, n in (limits or {}).items()}
        self._tick = tick
        self._store_interval = store_interval
        self._handles: dict[str, JobHandle] = {}
        self._by_key: dict[str, JobHandle] = {}
        self._progress_queue: deque[Progress] = deque()
        self._log_queue: deque[tuple[JobHandle, int, str]] = deque()
        self._pausing: set[JobHandle] = set()
        self._dirty: set[JobHandle] = set()
        self._history: list[tuple[str, float, str, str | None]] = []
        self._spawn_send, self._spawn_receive = anyio.create_memory_object_stream[JobHandle](
            math.inf
        )
        self._closed = False
        self._stopped: anyio.Event | None = None
        self._host: Any = None
        self.executor: Executor = executor_from_environment()
        """Where jobs run their blocking work (files, ``map`` calls): see :meth:`use_dask`."""

    # -- lifetime --------------------------------------------------------------------------

    async def __aenter__(self) -> JobManager:
        self._host = anyio.create_task_group()
        await self._host.__aenter__()
        await self._host.start(self._serve)
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        try:
            await self.aclose()
        except BaseException as exc:  # still leave the task group, then report the real error
            if await self._host.__aexit__(type(exc), exc, exc.__traceback__):
                return True
            raise
        return await self._host.__aexit__(*exc_info)

    def start_in_background(self) -> None:
        """Serve from a task of the running asyncio loop (the Jupyter kernel's), kept here."""
        self._host = asyncio.get_running_loop().create_task(self._serve(), name="ipyjobs")
        atexit.register(self._write_store_now)

    async def _serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._stopped = anyio.Event()
        try:
            async with anyio.create_task_group() as jobs:
                ticker = anyio.CancelScope()
                jobs.start_soon(self._tick_forever, ticker)
                task_status.started()
                async with self._spawn_receive:
                    async for handle in self._spawn_receive:
                        jobs.start_soon(self._drive, handle, name=f"ipyjobs {handle.id}")
                ticker.cancel()
        finally:
            self._flush_progress()
            self._flush_logs()
            self._write_store_now()
            self._stopped.set()

    async def aclose(self) -> None:
        """Stop accepting jobs, interrupt the active ones (they keep their checkpoints and can
        be resumed), wait until their tasks ended, and write the store."""
        if self._closed:
            return
        self._closed = True
        for handle in self._handles.values():
            if handle.state.is_active:
                handle._interrupting = True
                self._signal_cancel(handle)
        self._spawn_send.close()
        if self._stopped is not None:
            await self._stopped.wait()
        if self.store is not None:
            self.store.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- dispatch --------------------------------------------------------------------------

    def dispatch(self, job: Job, *, priority: int = 0) -> JobHandle:
        """Queue ``job`` and return its handle at once (from sync or async code on the loop).

        A job with a ``key`` equal to an active job's joins that job: the same handle is
        returned and its ``dispatches`` count goes up.
        """
        return self._submit(job, priority=priority, parent=None, owned=False)

    def _submit(
        self,
        job: Job,
        *,
        priority: int,
        parent: JobHandle | None,
        owned: bool,
        job_id: str | None = None,
        checkpoint: str | None = None,
    ) -> JobHandle:
        if self._closed:
            raise ManagerClosed("this job manager is closed; ipyjobs.jobs() gives a new one")
        if not isinstance(job, Job):
            raise TypeError(
                f"dispatch() takes an ipyjobs.Job instance, got {type(job).__name__}: "
                "define a subclass of ipyjobs.Job with async def run(self, ctx)"
            )
        key = job.key
        if key is not None:
            active = self._by_key.get(key)
            if active is not None and active.state.is_active:
                active.dispatches += 1
                if parent is not None and active not in parent._children:
                    parent._children.append(active)  # shown under every job that waits for it
                return active
        params = job.params()
        try:
            params_json = json.dumps(params)
        except TypeError as exc:
            if job.resumable:
                raise TypeError(
                    f"{type(job).__name__} is resumable, so its parameters must be JSON-able: {exc}"
                ) from None
            params_json = _to_json(params)
        handle = JobHandle(
            self,
            job,
            job_id or uuid.uuid4().hex[:12],
            parent=parent,
            owned=owned,
            priority=priority,
            params_json=params_json,
            checkpoint=checkpoint,
        )
        self._handles[handle.id] = handle
        if key is not None:
            self._by_key[key] = handle
        if parent is not None:
            parent._children.append(handle)
        self._record(handle, JobState.QUEUED)
        self.bus.publish(
            events.Queued(handle.id, handle.kind, title=handle.title, parent_id=handle.parent_id)
        )
        self._spawn_send.send_nowait(handle)
        return handle

    # -- the task that drives one job ------------------------------------------------------

    async def _drive(self, handle: JobHandle) -> None:
        current_job.set(handle)
        limiter = self._limiters.get(handle.job.group) if handle.job.group else None
        ending, output, error = JobState.COMPLETED, None, None
        try:
            with anyio.CancelScope() as scope:
                handle._scope = scope
                await self._take_slot(handle, limiter)
                try:
                    self._set_state(handle, JobState.RUNNING)
                    output = await handle.job.run(JobContext(self, handle))
                    await self._join_children(handle)
                finally:
                    if limiter is not None:
                        limiter.release()
            if scope.cancelled_caught:
                ending = self._stopped_state(handle)
        except anyio.get_cancelled_exc_class():
            # The manager's own scope was cancelled (its host is shutting down).
            handle._interrupting = True
            with anyio.CancelScope(shield=True):
                await self._stop_children(handle)
            self._finish(handle, JobState.INTERRUPTED)
            raise
        except Exception as exc:
            stopping = handle._intent is Intent.CANCELLING or handle._interrupting
            if stopping and _only_cancellations(exc):
                ending = self._stopped_state(handle)
            else:  # a JobCancelled of a dependency means this job did not get what it needed
                ending, error = JobState.FAILED, exc
        if ending is not JobState.COMPLETED:
            with anyio.CancelScope(shield=True):
                await self._stop_children(handle)
        self._finish(handle, ending, output=output, error=error)

    async def _take_slot(self, handle: JobHandle, limiter: PriorityLimiter | None) -> None:
        """Wait for a slot of the job's group; a job paused while queued gives its slot back."""
        while True:
            await handle.token.checkpoint()
            if limiter is None:
                return
            await limiter.acquire(handle.priority)
            if not handle.token.paused and not handle.token.cancelled:
                return
            limiter.release()

    def _stopped_state(self, handle: JobHandle) -> JobState:
        return JobState.INTERRUPTED if handle._interrupting else JobState.CANCELLED

    async def _join_children(self, handle: JobHandle) -> None:
        for child in handle.children:
            if child.owned:
                await child.join()

    async def _stop_children(self, handle: JobHandle) -> None:
        """Owned children never outlive their owner: cancel (or interrupt) and wait for them."""
        for child in handle.children:
            if child.owned and not child.done:
                self._mark_stopping(child, interrupting=handle._interrupting)
                self._signal_cancel(child)
                await child._ended()

    def _finish(
        self,
        handle: JobHandle,
        state: JobState,
        *,
        output: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """Deliver the final progress and pending logs, then the ending, then wake waiters."""
        self._flush_logs()
        self._publish_progress(handle)
        handle._output, handle._error = output, error
        handle._intent = None
        handle._scope = None
        self._pausing.discard(handle)
        try:
            self._set_state(handle, state, None if error is None else error_text(error))
        except InvalidTransition:
            # An engine bug must not take the manager, and every other job, down with it.
            log.exception("ipyjobs engine error while ending job %s", handle.id)
            handle._state = state
        if handle.key is not None and self._by_key.get(handle.key) is handle:
            del self._by_key[handle.key]
        handle._set_finished()

    # -- state changes ---------------------------------------------------------------------

    def _record(self, handle: JobHandle, state: JobState, detail: str | None = None) -> None:
        self._history.append((handle.id, time.time(), state.value, detail))
        self._dirty.add(handle)

    def _set_state(self, handle: JobHandle, new: JobState, detail: str | None = None) -> None:
        old = handle._state
        if not is_legal(old, new):
            raise InvalidTransition(
                f"job {handle.id} ({handle.title}) cannot go from {old.value} to {new.value}"
            )
        handle._state = new
        self._record(handle, new, detail)
        if new is JobState.RUNNING:
            handle.tracker.start_clock()
            event = events.Resumed if handle._started else events.Started
            handle._started = True
        elif new is JobState.QUEUED:
            event = events.Resumed
        else:
            handle.tracker.stop_clock()
            event = _LIFECYCLE_EVENT[new]
        if new is JobState.COMPLETED:
            self.bus.publish(event(handle.id, handle.kind, output=handle._output))
        elif new is JobState.FAILED:
            error = handle._error
            self.bus.publish(
                event(
                    handle.id,
                    handle.kind,
                    error=detail or "",
                    error_type=type(error).__name__ if error else "",
                )
            )
        else:
            self.bus.publish(event(handle.id, handle.kind))

    # -- controls --------------------------------------------------------------------------

    def _handle(self, job: JobHandle | str) -> JobHandle:
        if isinstance(job, JobHandle):
            return job
        try:
            return self._handles[job]
        except KeyError:
            raise JobNotFound(f"no job {job!r} in this manager") from None

    def pause(self, job: JobHandle | str) -> bool:
        """Ask a job and its owned children to wait at their next checkpoint.

        The intent ``pausing`` shows until the job is parked; a queued job pauses at once.
        Returns ``False`` when already paused or pausing. Raises ``InvalidTransition`` on a job
        that ended.
        """
        handle = self._handle(job)
        if handle.done:
            raise InvalidTransition(
                f"cannot pause job {handle.id} ({handle.title}): it is {handle.state.value}"
            )
        if handle._intent is not None or handle.state is JobState.PAUSED:
            return False
        handle.token.request_pause()
        if handle.state is JobState.QUEUED:
            self._set_state(handle, JobState.PAUSED)
        else:
            handle._intent = Intent.PAUSING
            self._pausing.add(handle)
            if handle.token.parked:
                self._pause_took_effect(handle)
        for child in handle.children:
            if child.owned and not child.done:
                self.pause(child)
        return True

    def _pause_took_effect(self, handle: JobHandle) -> None:
        if handle._intent is Intent.PAUSING and handle.state is JobState.RUNNING:
            handle._intent = None
            self._pausing.discard(handle)
            self._set_state(handle, JobState.PAUSED)
            self._publish_progress(handle)  # show exactly where it stopped

    def resume(self, job: JobHandle | str, *, fn: Any = None) -> bool | JobHandle:
        """Let a paused job (and its owned children) go on, or restart an interrupted one.

        For a job id that only the store knows (interrupted in an earlier session), the job is
        rebuilt from its kind and parameters and resumes from its last checkpoint; its new
        handle is returned. Returns ``False`` when the job is neither paused nor pausing.
        ``fn`` gives a ``map`` of a function defined in a notebook its function again.
        """
        if fn is not None:
            from .functions import supplying

            with supplying(fn):
                return self.resume(job)
        if isinstance(job, str) and job not in self._handles:
            return self._resume_from_store(job)
        handle = self._handle(job)
        if handle.state.is_terminal:
            raise InvalidTransition(
                f"cannot resume job {handle.id} ({handle.title}): it is {handle.state.value}; "
                "dispatch a new job to run it again"
            )
        if handle.state is JobState.INTERRUPTED:
            return self._resume_from_store(handle.id)
        if handle._intent is Intent.CANCELLING:  # the cancel wakes it; keep it cancelling
            return False
        resumed = False
        if handle.state is JobState.PAUSED or handle._intent is Intent.PAUSING:
            handle._intent = None
            self._pausing.discard(handle)
            handle.token.request_resume()
            if handle.state is JobState.PAUSED:
                new = JobState.RUNNING if handle._started else JobState.QUEUED
                self._set_state(handle, new)
            resumed = True
        for child in handle.children:
            if child.owned and not child.done:
                resumed = bool(self.resume(child)) or resumed
        return resumed

    def cancel(self, job: JobHandle | str) -> bool:
        """Cancel a job and its owned children; ``cancelling`` shows until the work stopped.

        Cancelling a job that waits for a shared job leaves the shared job running. A no-op
        (returns ``False``) on a job that already ended or is being cancelled.
        """
        handle = self._handle(job)
        if handle.state.is_terminal or handle._intent is Intent.CANCELLING:
            return False
        if handle.state is JobState.INTERRUPTED:
            self._set_state(handle, JobState.CANCELLED)
            return True
        self._mark_stopping(handle, interrupting=False)
        self._signal_cancel(handle)
        return True

    def _signal_cancel(self, handle: JobHandle) -> None:
        handle.token.request_cancel()
        if handle._scope is not None:
            handle._scope.cancel()
        for child in handle.children:
            if child.owned and not child.done:
                self._mark_stopping(child, interrupting=handle._interrupting)
                self._signal_cancel(child)

    def _mark_stopping(self, handle: JobHandle, *, interrupting: bool) -> None:
        """Record why an owned child is being stopped: its owner was cancelled or interrupted."""
        if interrupting:
            handle._interrupting = True
        else:
            handle._intent = Intent.CANCELLING
            self._pausing.discard(handle)

    def _resume_from_store(self, job_id: str) -> JobHandle:
        record = self.record(job_id)
        if record.state is not JobState.INTERRUPTED:
            raise NotResumable(
                f"job {job_id} ({record.title}) is {record.state.value}; only interrupted jobs "
                "are resumed from the store"
            )
        cls = job_class(record.kind)
        if not cls.resumable:
            raise NotResumable(
                f"job {job_id} ({record.title}) is of kind {record.kind!r}, which is not "
                "resumable; dispatch it again instead"
            )
        previous = self._handles.pop(job_id, None)
        handle = self._submit(
            cls.from_params(record.params),
            priority=record.priority,
            parent=None if previous is None else previous.parent,
            owned=False,
            job_id=job_id,
            checkpoint=None if record.checkpoint is None else json.dumps(record.checkpoint),
        )
        return handle

    # -- where work runs, and function jobs (engine/executor.py, engine/functions.py) --------

    def use_dask(self, client_or_address: Any = None, **cluster_options: Any) -> Executor:
        """Run the jobs' per-file work and ``map`` calls on a Dask cluster from now on.

        ``client_or_address``: a ``distributed.Client``, a scheduler address, or ``None`` for a
        new ``LocalCluster`` of processes on this machine (``cluster_options`` go to
        :func:`ipyjobs.scale.local_cluster`). Jobs already running keep their executor.
        """
        from ..scale import dask_executor

        self.executor = dask_executor(client_or_address, **cluster_options)
        return self.executor

    def use_local(self, workers: int | None = None) -> Executor:
        """Run the work in this kernel's threads again (the default)."""
        self.executor = LocalExecutor(workers)
        return self.executor

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard of the cluster in use, or ``None``."""
        return self.executor.dashboard_link

    def map(self, fn: Any, items: Any, **options: Any) -> JobHandle:
        """Run ``fn(item)`` for each item as one job (see :class:`~.functions.MapJob`)."""
        from .functions import MapJob

        priority = options.pop("priority", 0)
        return self.dispatch(MapJob(fn, list(items), **options), priority=priority)

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> JobHandle:
        """Run one call ``fn(*args, **kwargs)`` as a job (see :class:`~.functions.CallJob`)."""
        from .functions import CallJob

        return self.dispatch(CallJob(fn, args, kwargs))

    # -- queries ---------------------------------------------------------------------------

    def get(self, job_id: str) -> JobHandle:
        return self._handle(job_id)

    @property
    def handles(self) -> list[JobHandle]:
        """Every job of this manager, in dispatch order."""
        return list(self._handles.values())

    def roots(self) -> list[JobHandle]:
        """Jobs dispatched from outside any job: the top rows of a job tree."""
        return [h for h in self._handles.values() if h.parent is None]

    def forget_finished(self) -> int:
        """Drop ended jobs (and their ended subtrees) from memory; the store keeps them."""
        gone = [h for h in self._handles.values() if h.done and h.state.is_terminal]
        for handle in gone:
            del self._handles[handle.id]
        for handle in self._handles.values():
            handle._children = [c for c in handle._children if c.id in self._handles]
        return len(gone)

    def record(self, job_id: str) -> JobRecord:
        """The stored record of a job (written in batches: fresh within ``store_interval``)."""
        if self.store is None:
            raise JobNotFound(f"job {job_id!r}: this manager keeps no store")
        self._write_store_now()
        record = self.store.get(job_id)
        if record is None:
            raise JobNotFound(f"no job {job_id!r} in the store at {self.store.folder}")
        return record

    def history(self, job_id: str) -> list[tuple[float, JobState, str | None]]:
        """Every state the job entered, ``(time, state, detail)``, oldest first."""
        self.record(job_id)
        return self.store.history(job_id)

    def set_limit(self, group: str, slots: int) -> None:
        """Allow ``slots`` jobs of ``group`` to run at once (takes effect immediately)."""
        limiter = self._limiters.get(group)
        if limiter is None:
            self._limiters[group] = PriorityLimiter(slots)
        else:
            limiter.slots = slots

    # -- the ticker: progress, logs, pause acknowledgements, store -------------------------

    def _queue_progress(self, tracker: Progress) -> None:
        self._progress_queue.append(tracker)

    def _queue_log(self, handle: JobHandle, level: int, message: str) -> None:
        self._log_queue.append((handle, level, message))

    def _mark_dirty(self, handle: JobHandle) -> None:
        self._dirty.add(handle)

    async def _tick_forever(self, scope: anyio.CancelScope) -> None:
        with scope:
            last_write = time.monotonic()
            while True:
                await anyio.sleep(self._tick)
                self._flush_progress()
                self._flush_logs()
                for handle in [h for h in self._pausing if h.token.parked]:
                    self._pause_took_effect(handle)
                if self.store is not None and time.monotonic() - last_write >= self._store_interval:
                    last_write = time.monotonic()
                    self._write_store()

    def _flush_progress(self) -> None:
        now = time.monotonic()
        queue = self._progress_queue
        while queue:
            tracker = queue.popleft()
            handle: JobHandle = tracker.owner  # type: ignore[assignment]
            if handle.done:
                continue
            self._publish_progress(handle, now)

    def _publish_progress(self, handle: JobHandle, now: float | None = None) -> None:
        handle._snapshot = handle.tracker.sample(now)
        self._dirty.add(handle)
        self.bus.publish(events.ProgressChanged(handle.id, handle.kind, progress=handle._snapshot))

    def _flush_logs(self) -> None:
        queue = self._log_queue
        while queue:
            handle, level, message = queue.popleft()
            handle._log_tail.append(message)
            self.bus.publish(events.Log(handle.id, handle.kind, level=level, message=message))

    def _take_batch(self) -> tuple[list[tuple], list[tuple]]:
        now = time.time()
        rows = [self._row(handle, now) for handle in self._dirty]
        history, self._history = self._history, []
        self._dirty = set()
        return rows, history

    def _write_store(self) -> None:
        """Hand the batch to the writer thread (the ticker does not wait for it)."""
        rows, history = self._take_batch()
        if rows or history:
            self._writer.submit(rows, history)

    def _write_store_now(self) -> None:
        """Write everything recorded so far, and wait for it."""
        if self.store is None or self.store.closed:
            return
        self._write_store()
        self._writer.flush()

    def _row(self, handle: JobHandle, now: float) -> tuple:
        error = handle._error
        return (
            handle.id,
            handle.kind,
            handle.title,
            handle.key,
            handle.parent_id,
            int(handle.owned),
            handle.priority,
            handle._state.value,
            handle._params_json,
            handle._checkpoint,
            None if handle._output is None else _to_json(handle._output),
            None if error is None else error_text(error),
            None if error is None else type(error).__name__,
            _to_json(handle._snapshot.as_dict()),
            _to_json([dataclasses.asdict(e) for e in handle._item_errors])
            if handle._item_errors
            else None,
            handle._error_count,
            self.session,
            handle.created_at,
            now,
        )


_managers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, JobManager] = (
    weakref.WeakKeyDictionary()
)


def jobs(**config: Any) -> JobManager:
    """The job manager of the running event loop (the Jupyter kernel's), made on first use.

    ``config`` (``home``, ``limits``, ...) applies when the manager is made.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "ipyjobs.jobs() needs a running asyncio event loop: call it from a notebook cell "
            "or async code; in a script use `async with ipyjobs.JobManager() as manager:`"
        ) from None
    manager = _managers.get(loop)
    if manager is None or manager.closed:
        manager = JobManager(**config)
        manager.start_in_background()
        _managers[loop] = manager
    return manager
