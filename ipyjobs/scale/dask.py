"""The Dask executor: a job's blocking calls run on a ``distributed`` cluster.

``manager.use_dask(client_or_address)`` (or ``IPYJOBS_DASK_SCHEDULER`` at start) makes it the
kernel's executor. Each ``run`` submits one task (see :mod:`.remote` for the worker side) and
waits for it on the kernel's loop, meanwhile

- copying the job's token to the job's ``distributed.Variable`` when it changes (``run``,
  ``pause``, ``cancel``), which the workers read a few times a second;
- calling the job's callbacks with the newest values workers sent (progress), on the loop;
- counting the workers whose part of the job is parked, so "pausing" turns into "paused".

Cancel: the Variable says ``cancel``; running calls raise at their next ``check()`` and queued
ones at their start; ``run`` returns once the task has really ended on its worker. A worker
that dies mid-call has its task retried on another by Dask (``allowed-failures``, default 3);
then the call raises :class:`WorkerLost`. A lost scheduler raises :class:`SchedulerLost`
(saying where it was and what to do), which fails the job rather than an item.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ..engine.errors import Cancelled
from ..engine.executor import Executor, ExecutorLost
from ..engine.threads import run_in_thread
from ..engine.token import InterruptToken
from . import remote
from .models import model_refs

if TYPE_CHECKING:
    from ..engine import JobContext

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often a waiting call looks at the token and the callbacks, in seconds.
POLL = 0.05
#: How old (seconds) what was seen of the cluster's workers may be before it is asked again.
LOOK_EVERY = 1.0
#: How long a cancelled call may take to stop on its worker before its task is dropped.
STOP_GRACE = 30.0


class WorkerLost(RuntimeError):
    """The worker running a call died, and so did the workers it was retried on."""


class SchedulerLost(ExecutorLost):
    """The kernel lost its connection to the Dask scheduler."""


class _Job:
    """What the executor keeps per job: its Variable, inbox, parked workers."""

    def __init__(self, handle: Any, variable: Any, token: InterruptToken) -> None:
        self.handle = handle
        self.job_id = handle.id
        self.variable = variable
        self.token = token
        self.sent = "run"
        self.calls = 0
        self.inbox: deque[dict] = deque()
        self.parked: set[str] = set()
        self.parking: contextlib.ExitStack | None = None
        self.callbacks: dict[str, dict[int, Callable[..., Any]]] = {}


class DaskExecutor(Executor):
    """Runs calls on a Dask cluster; ``client_or_address`` is a ``distributed.Client`` or a
    scheduler address (``tcp://host:8786``), connected on first use. ``owned``: ``close()``
    closes the client and its (local) cluster too."""

    def __init__(self, client_or_address: Any, *, owned: bool = False) -> None:
        self._address: str | None = None
        self._client: Any = None
        self._own_client = owned
        self._topic = f"ipyjobs-{uuid.uuid4().hex}"
        self._jobs: dict[str, _Job] = {}
        self._connect_lock = threading.Lock()
        self._subscribed = False
        self._seen: tuple[int, int] | None = None
        """(workers, threads) as the scheduler last said, asked at most every
        :data:`LOOK_EVERY` seconds off the loop: a lost scheduler never blocks the kernel."""
        self._seen_at = 0.0
        self._looking = threading.Lock()
        if isinstance(client_or_address, str):
            self._address = client_or_address
        else:
            self._attach(client_or_address)

    def _attach(self, client: Any) -> None:
        import distributed

        if not isinstance(client, distributed.Client):
            raise TypeError(
                "use_dask() takes a distributed.Client or a scheduler address such as "
                f"'tcp://127.0.0.1:8786', got {type(client).__name__}"
            )
        self._client = client
        self._address = getattr(client.scheduler, "address", None)
        self._look()  # in use_dask's cell, not on a job's turn of the loop

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (connected now if it was given as an address)."""
        with self._connect_lock:
            if self._client is None:
                import distributed

                try:
                    self._client = distributed.Client(self._address, timeout="10s")
                except OSError as exc:
                    raise SchedulerLost(
                        f"cannot reach the Dask scheduler at {self._address}: {exc}. Check the "
                        "address (IPYJOBS_DASK_SCHEDULER or use_dask(...)) and that it runs."
                    ) from exc
                self._own_client = True
            if not self._subscribed:
                self._client.subscribe_topic(self._topic, self._on_event)
                self._subscribed = True
            return self._client

    @property
    def workers(self) -> int:
        """The cluster's worker threads, as last seen (asked now only the first time)."""
        if self._seen is None:
            client = self.client
            with self._losing(client):
                self._look(needed=True)
        self._look_soon()
        return max(1, self._seen[1] if self._seen else 1)

    @property
    def where(self) -> str:
        self._look_soon()
        if self._seen is None:
            return f"Dask cluster at {self._address} (not connected yet)"
        workers, threads = self._seen
        late = time.monotonic() - self._seen_at > 3 * LOOK_EVERY
        return (f"Dask cluster {self._address}: {workers} workers, {threads} threads"
                + (" (not heard from lately)" if late else ""))  # fmt: skip

    def _look(self, needed: bool = False) -> None:
        """Ask the scheduler for its workers (blocking: never on the kernel's loop but once).

        ``needed``: the caller has no answer yet, so it waits for a look already under way
        (rather than return without one) and its errors are raised."""
        if not self._looking.acquire(blocking=needed):
            return
        try:
            info = self.client.scheduler_info()
            workers = info.get("workers", {})
            threads = sum(w.get("nthreads", 0) for w in workers.values())
            self._seen, self._seen_at = (len(workers), threads), time.monotonic()
        except Exception:
            if needed:
                raise
            log.debug("the Dask scheduler at %s did not answer", self._address, exc_info=True)
        finally:
            self._looking.release()

    def _look_soon(self) -> None:
        """Refresh what was seen of the cluster in a thread, if it is older than LOOK_EVERY."""
        stale = time.monotonic() - self._seen_at > LOOK_EVERY
        if self._client is not None and stale and not self._looking.locked():
            threading.Thread(target=self._look, name="ipyjobs-dask-look", daemon=True).start()

    @property
    def label(self) -> str:
        return f"Dask cluster {self._address}"

    @property
    def dashboard_link(self) -> str | None:
        return None if self._client is None else self._client.dashboard_link

    def close(self) -> None:
        if self._client is not None and self._subscribed:
            with contextlib.suppress(Exception):
                self._client.unsubscribe_topic(self._topic)
            self._subscribed = False
        if self._own_client and self._client is not None:
            cluster = self._client.cluster
            self._client.close()
            if cluster is not None:
                cluster.close()
            self._client = None

    def __repr__(self) -> str:
        return f"DaskExecutor({self.where})"

    # -- events from workers (on the client's own thread) ----------------------------------

    def _on_event(self, event: tuple[float, dict]) -> None:
        message = event[1]
        job = self._jobs.get(message.get("job", ""))
        if job is not None:
            job.inbox.append(message)  # handled on the kernel's loop by a waiting call

    # -- one call --------------------------------------------------------------------------

    async def run(self, ctx: JobContext, fn: Callable[..., T], /, *args: Any) -> T:
        client = (
            self.client if self._client is not None else await run_in_thread(lambda: self.client)
        )
        with self._losing(client):
            return await self._run(ctx, client, fn, *args)

    async def _run(self, ctx: JobContext, client: Any, fn: Callable[..., T], *args: Any) -> T:
        ctx.handle.where = self.where
        job = await self._job(ctx, client)
        call_id = uuid.uuid4().hex[:12]
        positions = tuple(i for i, a in enumerate(args) if callable(a))
        job.callbacks[call_id] = {i: args[i] for i in positions}
        spec = remote.CallSpec(
            job_id=job.job_id,
            call_id=call_id,
            variable=job.variable.name,
            topic=self._topic,
            callbacks=positions,
            models=model_refs(ctx.manager.home, args),
            kernel_home=str(ctx.manager.home),
            mirror=_mirror(),
        )
        sent = tuple(None if i in positions else a for i, a in enumerate(args))
        job.calls += 1
        try:
            future = client.submit(
                remote.call, spec, fn, sent, pure=False, key=f"ipyjobs-{job.job_id}-{call_id}"
            )
            try:
                await self._wait(job, future)
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    await self._stop(job, future)
                raise
            result = await run_in_thread(self._outcome, future)
            if isinstance(result, str) and result == remote.CANCELLED:
                ctx.token.raise_if_cancelled()  # as a check here would: Cancelled
                raise Cancelled("the job was cancelled")
            return result  # type: ignore[no-any-return]
        finally:
            job.calls -= 1
            del job.callbacks[call_id]
            if job.calls == 0:
                self._unpark(job)

    async def _job(self, ctx: JobContext, client: Any) -> _Job:
        job = self._jobs.get(ctx.job_id)
        if job is None:
            import distributed

            for ended in [j for j in self._jobs.values() if j.handle.done and not j.calls]:
                del self._jobs[ended.job_id]
                await run_in_thread(ended.variable.delete)
            variable = distributed.Variable(f"{self._topic}-{ctx.job_id}", client=client)
            job = _Job(ctx.handle, variable, ctx.token)
            job.sent = _state_of(ctx.token)
            await run_in_thread(variable.set, job.sent)
            self._jobs[ctx.job_id] = job
        return job

    async def _wait(self, job: _Job, future: Any) -> None:
        loop = asyncio.get_running_loop()
        finished = asyncio.Event()
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(finished.set))
        while not finished.is_set():
            if future.client.status in ("closing", "closed"):  # its future may never end
                raise self._lost("the client gave up reconnecting and closed")
            await self._sync(job)
            with anyio.move_on_after(POLL):
                await finished.wait()
        await self._sync(job)

    async def _sync(self, job: _Job) -> None:
        """Token to Variable; workers' messages to callbacks and parking (on the loop)."""
        state = _state_of(job.token)
        if state != job.sent:
            job.sent = state
            await run_in_thread(job.variable.set, state)
        while job.inbox:
            message = job.inbox.popleft()
            if "parked" in message:
                (job.parked.add if message["parked"] else job.parked.discard)(message["worker"])
                self._unpark(job) if not job.parked else self._park(job)
                continue
            callback = job.callbacks.get(message["call"], {}).get(message["callback"])
            if callback is not None:
                try:
                    callback(*message["args"])
                except Exception:
                    log.exception("ipyjobs: a progress callback of job %s failed", job.job_id)

    def _park(self, job: _Job) -> None:
        if job.parking is None:
            job.parking = contextlib.ExitStack()
            job.parking.enter_context(job.token.parking())

    def _unpark(self, job: _Job) -> None:
        if job.parking is not None:
            job.parking.close()
            job.parking = None
        job.parked.clear()

    async def _stop(self, job: _Job, future: Any) -> None:
        """After a cancel: make sure the workers know, then wait until the task ended."""
        if job.sent != "cancel":
            job.sent = "cancel"
            await run_in_thread(job.variable.set, "cancel")
        deadline = time.monotonic() + STOP_GRACE
        while not future.done() and time.monotonic() < deadline:
            await anyio.sleep(POLL)
        if not future.done():
            log.warning(
                "ipyjobs: call %s did not stop within %.0f s: dropped", future.key, STOP_GRACE
            )
            future.cancel()

    @contextlib.contextmanager
    def _losing(self, client: Any) -> Iterator[None]:
        """A client without its scheduler fails in many ways (a submit, a Variable, a call to
        the scheduler): while it is not connected, each is :class:`SchedulerLost`."""
        try:
            yield
        except SchedulerLost:
            raise
        except Exception as exc:
            if client.status == "running":
                raise
            raise self._lost(str(exc).splitlines()[0] if str(exc) else repr(exc)) from None

    def _lost(self, reason: str) -> SchedulerLost:
        return SchedulerLost(
            f"the Dask scheduler at {self._address} was lost ({reason}). What was done is "
            "kept: start the cluster again and call ipyjobs.jobs().use_dask(...) with it, or "
            "ipyjobs.jobs().use_local() to work on this kernel, then run the job again (a "
            "media job does only the files not done)"
        )

    def _outcome(self, future: Any) -> Any:
        import distributed
        from distributed.client import FutureCancelledError

        try:
            return future.result()
        except distributed.KilledWorker as exc:
            raise WorkerLost(
                f"worker lost: the Dask worker running this died, and so did the workers it "
                f"was retried on ({exc})"
            ) from None
        except FutureCancelledError as exc:  # "<key> cancelled for reason: <reason>."
            reason = str(exc).partition("reason: ")[2].strip(" .") or "its work was cancelled"
            raise self._lost(reason) from None


def _state_of(token: InterruptToken) -> str:
    return "cancel" if token.cancelled else "pause" if token.paused else "run"


def _mirror() -> str | None:
    from ..models.settings import mirror

    return mirror()
