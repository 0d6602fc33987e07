"""The job manager: dispatch, controls and queries, safe from any thread.

One manager serves one event loop. In Jupyter, ``ipyjobs.jobs()`` returns the kernel's manager,
started in the background on the kernel's loop; in a script, ``async with JobManager() as jm``
runs it inside the caller's task group. Every job runs as a task of the manager's task group
(:mod:`.supervisor`); what happens is recorded and stored by its :mod:`.recorder`.

Only the manager's loop changes the manager's state: a control called from another thread (an
ipykernel 7 subshell, a worker thread, a widget callback on another loop) is handed to it by its
:class:`~.homeloop.HomeLoop`, and the caller waits for its answer.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import json
import math
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from . import events
from .context import JobContext
from .errors import InvalidTransition, JobNotFound, ManagerClosed, NotResumable
from .executor import Executor, LocalExecutor, executor_from_environment
from .handle import JobHandle
from .homeloop import HomeLoop
from .job import Job, job_class
from .lifecycle import Lifecycle
from .limits import PriorityLimiter
from .paths import data_home
from .recorder import Recorder
from .state import JobState
from .store import JobRecord, JobStore, job_row, to_json
from .supervisor import drive
from .threads import run_in_thread

#: How long an atexit flush of the store may take.
_EXIT_FLUSH = 10.0


class JobManager:
    """Runs jobs on one event loop; its controls may be called from any thread.

    ``home`` is the data folder (default: ``$IPYJOBS_HOME`` or the platform's), made absolute
    once; the job store lives in ``home/jobs``. ``limits`` maps a job group to its number of
    concurrent jobs. ``tick`` is how often progress is sampled and published; the store is
    written every ``store_interval`` seconds by its own thread.
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
        self.home = Path(home).expanduser().absolute() if home is not None else data_home()
        self.session = uuid.uuid4().hex
        self.store = JobStore(self.home / "jobs", self.session) if persist else None
        self._recorder = Recorder(self.store, self.session, store_interval)
        self.interrupted_at_start: list[str] = []
        if self.store is not None and self._recorder.writer is not None:
            self.interrupted_at_start = self.store.find_orphans()
            now = time.time()
            history = [
                (i, now, "interrupted", "its process ended") for i in self.interrupted_at_start
            ]
            self._recorder.writer.submit([], history, self.interrupted_at_start)
        self._limiters = {group: PriorityLimiter(n) for group, n in (limits or {}).items()}
        self._tick = tick
        self._handles: dict[str, JobHandle] = {}
        self._by_key: dict[str, JobHandle] = {}
        self._spawn_send, self._spawn_receive = anyio.create_memory_object_stream[JobHandle](
            math.inf
        )
        self._closed = False
        self._stopped: anyio.Event | None = None
        self._host: Any = None
        self._home = HomeLoop()
        self.executor: Executor = executor_from_environment()
        """Where jobs run their blocking work (files, ``map`` calls): see :meth:`use_dask`."""

    @property
    def bus(self) -> events.EventBus:
        """The event bus: ``manager.bus.subscribe()``."""
        return self._recorder.bus

    @bus.setter
    def bus(self, bus: events.EventBus) -> None:
        self._recorder.bus = bus

    @property
    def store_problem(self) -> str | None:
        """What keeps the store from being written right now, with the fix; ``None`` when all
        is written (nothing is lost meanwhile: the records are kept and retried)."""
        writer = self._recorder.writer
        return None if writer is None else writer.problem

    # -- lifetime --------------------------------------------------------------------------

    async def __aenter__(self) -> JobManager:
        self._home.bind()
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
        self._home.bind()
        self._host = asyncio.get_running_loop().create_task(self._serve(), name="ipyjobs")
        atexit.register(self._flush_at_exit)

    @property
    def failure(self) -> BaseException | None:
        """The error that ended the manager's background task, if one did."""
        host = self._host
        if isinstance(host, asyncio.Task) and host.done() and not host.cancelled():
            return host.exception()
        return None

    @property
    def alive(self) -> bool:
        """Open, and its loop is serving it."""
        if self._closed or self._home.closed:
            return False
        return not (isinstance(self._host, asyncio.Task) and self._host.done())

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
            self._home.stop_watching()
            self._recorder.flush_progress()
            self._recorder.flush_logs()
            self._recorder.submit()
            self._stopped.set()

    async def aclose(self) -> None:
        """Stop accepting jobs, interrupt the active ones (they keep their checkpoints and can
        be resumed), wait until their tasks ended, and write the store (in a worker thread)."""
        if self._closed:
            return
        self._closed = True
        for handle in self._handles.values():
            if handle.state.is_active:
                handle._life.stop(interrupting=True)
        self._spawn_send.close()
        if self._stopped is not None:
            await self._stopped.wait()
        if self._recorder.writer is not None:
            await run_in_thread(self._recorder.writer.close)
        if self.store is not None:
            self.store.close()

    def _flush_at_exit(self) -> None:
        if self._recorder.writer is None or self.store is None or self.store.closed:
            return
        self._recorder.submit()
        self._recorder.writer.flush(_EXIT_FLUSH)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- any thread -------------------------------------------------------------------------

    def on_its_loop(self) -> bool:
        """Whether the caller runs on the manager's loop (or the manager has not started)."""
        return self._home.here()

    async def wait_from_elsewhere(self, handle: JobHandle) -> None:
        """Wait on the caller's own loop (another thread's) until ``handle`` ended."""
        await self._home.wait_for_end(handle._life)

    # -- dispatch --------------------------------------------------------------------------

    def dispatch(self, job: Job, *, priority: int = 0) -> JobHandle:
        """Queue ``job`` and return its handle at once (from any thread, sync or async code).

        A job with a ``key`` equal to an active job's joins that job: the same handle is
        returned and its ``dispatches`` count goes up.
        """
        return self._home.call(self._submit, job, priority, None, False)

    def submit_child(
        self, job: Job, parent: JobHandle, *, owned: bool, priority: int | None = None
    ) -> JobHandle:
        """A job dispatched from inside ``parent`` (see ``ctx.spawn`` and ``ctx.dispatch``)."""
        chosen = parent.priority if priority is None else priority
        return self._home.call(self._submit, job, chosen, parent, owned)

    def _submit(
        self,
        job: Job,
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
                if parent is not None and active not in parent._life.children:
                    parent._life.children.append(active)  # shown under every waiter
                return active
        params = job.params()
        try:
            params_json = json.dumps(params)
        except TypeError as exc:
            if job.resumable:
                raise TypeError(
                    f"{type(job).__name__} is resumable, so its parameters must be JSON-able: {exc}"
                ) from None
            params_json = to_json(params)
        handle = JobHandle(
            self,
            self._recorder,
            job,
            job_id or uuid.uuid4().hex[:12],
            parent=parent,
            owned=owned,
            priority=priority,
            params_json=params_json,
            checkpoint=checkpoint,
            created_at=time.time(),
        )
        self._handles[handle.id] = handle
        if key is not None:
            self._by_key[key] = handle
        if parent is not None:
            parent._life.children.append(handle)
        self._recorder.record(handle._life, JobState.QUEUED, None)
        self._recorder.publish(
            events.Queued(handle.id, handle.kind, title=handle.title, parent_id=handle.parent_id)
        )
        self._spawn_send.send_nowait(handle)
        return handle

    async def _drive(self, handle: JobHandle) -> None:
        group = handle.job.group
        limiter = self._limiters.get(group) if group else None
        await drive(handle._life, limiter, JobContext(self, handle), self._ended)

    def _ended(self, life: Lifecycle) -> None:
        key = life.handle.key
        if key is not None and self._by_key.get(key) is life.handle:
            del self._by_key[key]

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
        return self._home.call(lambda: self._handle(job)._life.pause())

    def resume(self, job: JobHandle | str, *, fn: Any = None) -> bool | JobHandle:
        """Let a paused job (and its owned children) go on, or restart an interrupted one.

        For a job id that only the store knows (interrupted in an earlier session), the job is
        rebuilt from its kind and parameters and resumes from its last checkpoint; its new
        handle is returned. Returns ``False`` when the job is neither paused nor pausing.
        ``fn`` gives a ``map`` of a function defined in a notebook its function again.
        """
        return self._home.call(self._resume, job, fn)

    def _resume(self, job: JobHandle | str, fn: Any = None) -> bool | JobHandle:
        if fn is not None:
            from .functions import supplying

            with supplying(fn):
                return self._resume(job)
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
        return handle._life.resume()

    def cancel(self, job: JobHandle | str) -> bool:
        """Cancel a job and its owned children; ``cancelling`` shows until the work stopped.

        Cancelling a job that waits for a shared job leaves the shared job running. A no-op
        (returns ``False``) on a job that already ended or is being cancelled.
        """
        return self._home.call(lambda: self._handle(job)._life.cancel())

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
        return self._submit(
            cls.from_params(record.params),
            record.priority,
            None if previous is None else previous.parent,
            False,
            job_id=job_id,
            checkpoint=None if record.checkpoint is None else json.dumps(record.checkpoint),
        )

    def forget_finished(self) -> int:
        """Drop ended jobs (and their ended subtrees) from memory; the store keeps them."""
        return self._home.call(self._forget_finished)

    def _forget_finished(self) -> int:
        gone = [h for h in self._handles.values() if h.done and h.state.is_terminal]
        for handle in gone:
            del self._handles[handle.id]
        for handle in self._handles.values():
            life = handle._life
            life.children = [c for c in life.children if c.id in self._handles]
        return len(gone)

    def set_limit(self, group: str, slots: int) -> None:
        """Allow ``slots`` jobs of ``group`` to run at once (takes effect immediately)."""
        self._home.call(self._set_limit, group, slots)

    def _set_limit(self, group: str, slots: int) -> None:
        limiter = self._limiters.get(group)
        if limiter is None:
            self._limiters[group] = PriorityLimiter(slots)
        else:
            limiter.slots = slots

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
        return [h for h in list(self._handles.values()) if h.parent is None]

    def record(self, job_id: str) -> JobRecord:
        """The record of a job: from memory while the manager holds the job or its unwritten
        row, else from the store. Never waits for SQLite's locks."""
        if self.store is None:
            raise JobNotFound(f"job {job_id!r}: this manager keeps no store")
        handle = self._handles.get(job_id)
        if handle is not None:
            return JobRecord.from_values(job_row(handle, self.session, time.time()))
        record = self._recorder.pending_record(job_id) or self.store.get(job_id)
        if record is None:
            raise JobNotFound(f"no job {job_id!r} in the store at {self.store.folder}")
        if job_id in self.interrupted_at_start and record.state.is_active:
            record = dataclasses.replace(record, state=JobState.INTERRUPTED)
        return record

    def history(self, job_id: str) -> list[tuple[float, JobState, str | None]]:
        """Every state the job entered, ``(time, state, detail)``, oldest first."""
        self.record(job_id)
        return self._recorder.history(job_id)

    # -- the ticker ------------------------------------------------------------------------

    async def _tick_forever(self, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                await anyio.sleep(self._tick)
                self._recorder.tick()
