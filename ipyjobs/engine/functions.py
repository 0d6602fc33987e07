"""Function jobs: any function as a job, with a bar, Pause and Cancel, no job class needed.

``jobs.map(fn, items)`` runs ``fn(item)`` for every item (:class:`MapJob`); ``jobs.submit(fn,
*args)`` runs one call (:class:`CallJob`). Both run on the manager's executor: this kernel's
threads by default, a Dask cluster after ``jobs.use_dask()``. Inside ``fn``,
``ipyjobs.current_token().check()`` (or iterating through :func:`track`) raises on cancel and
waits while the job is paused.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio

from .errors import NotResumable
from .executor import ExecutorLost, LocalExecutor, failing_with_the_loss, workers_of
from .job import Job
from .token import current_token

if TYPE_CHECKING:
    from .context import JobContext

T = TypeVar("T")
log = logging.getLogger(__name__)

#: A result larger than this (as JSON) is kept in memory only, not in the store.
MAX_STORED_RESULT = 64 * 1024
#: The store keeps at most this much of a map's results (as JSON); the rest stay in memory.
MAX_STORED_RESULTS = 8 * 1024 * 1024
#: A map saves its done items at most this often, in seconds.
CHECKPOINT_INTERVAL = 1.0
#: A map hands its items to the executor in chunks that take about this long, in seconds.
CHUNK_SECONDS = 0.05
MAX_CHUNK = 256

_reporter: contextvars.ContextVar[Callable[[float, float | None], None] | None] = (
    contextvars.ContextVar("ipyjobs_reporter", default=None)
)
_supplied: contextvars.ContextVar[Callable[..., Any] | None] = contextvars.ContextVar(
    "ipyjobs_supplied_fn", default=None
)


@overload
def track(iterable: Sequence[T], total: float | None = None) -> Iterator[T]: ...
@overload
def track(iterable: Iterable[T], total: float | None = None) -> Iterator[T]: ...
def track(iterable: Iterable[T], total: float | None = None) -> Iterator[T]:
    """Iterate like ``tqdm``: inside a job, each step checks the job's token (cancel raises,
    pause waits) and, in ``jobs.submit``, moves the job's bar. Outside a job it only iterates."""
    token = current_token()
    report = _reporter.get()
    if total is None and isinstance(iterable, Sequence):
        total = len(iterable)
    for done, item in enumerate(iterable, 1):
        if token is not None:
            token.check()
        yield item
        if report is not None:
            report(done, total)


def reference(fn: Callable[..., Any]) -> str | None:
    """``"module:qualname"`` when ``fn`` can be imported again after a restart, else ``None``."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    ref = f"{module}:{qualname}"
    try:
        return ref if resolve(ref) is fn else None
    except (ImportError, AttributeError):
        return None


def resolve(ref: str) -> Any:
    """The object ``"module:qualname"`` names (``ImportError``/``AttributeError`` if none)."""
    module, _, qualname = ref.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


@contextlib.contextmanager
def supplying(fn: Callable[..., Any]) -> Iterator[None]:
    """While resuming a map from the store, use ``fn`` (``jobs.resume(job_id, fn=fn)``)."""
    reset = _supplied.set(fn)
    try:
        yield
    finally:
        _supplied.reset(reset)


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def one_line(error: BaseException) -> str:
    """``"TypeName: first line of the message"``: an item error as a list shows it."""
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__


@dataclass(frozen=True)
class ItemFailed:
    """Stands in a map's results for an item whose call raised; falsy."""

    item: Any
    error: str

    def __bool__(self) -> bool:
        return False


class MapResults(Sequence[Any]):
    """A map's results in item order; a failed item's place holds an :class:`ItemFailed`."""

    def __init__(self, values: list[Any], in_memory: int) -> None:
        self._values = values
        self.in_memory = in_memory
        """How many results were too big for the store (lost if the kernel restarts)."""

    def __getitem__(self, index: Any) -> Any:
        return self._values[index]

    def __len__(self) -> int:
        return len(self._values)

    @property
    def ok(self) -> list[Any]:
        """The results of the items that succeeded, in order."""
        return [v for v in self._values if not isinstance(v, ItemFailed)]

    @property
    def failed(self) -> list[ItemFailed]:
        return [v for v in self._values if isinstance(v, ItemFailed)]

    def __repr__(self) -> str:
        total, done = len(self._values), len(self.ok)
        memory = f"; {self.in_memory} results kept in memory only" if self.in_memory else ""
        return f"MapResults({total} items: {done} done, {total - done} failed{memory})"


def run_items(
    fn: Callable[[Any], Any], pairs: list[tuple[int, Any]], report: Callable[[int], None]
) -> list[tuple[int, bool, Any]]:
    """One chunk of a map, where the executor runs it: ``(index, ok, result or error)`` per item.
    The token is checked before each item; a cancel raises out of the chunk."""
    token = current_token()
    out: list[tuple[int, bool, Any]] = []
    for count, (index, item) in enumerate(pairs, 1):
        if token is not None:
            token.check()
        try:
            out.append((index, True, fn(item)))
        except Exception as exc:  # a cancel (``Cancelled``) is no Exception: it stops the chunk
            out.append((index, False, one_line(exc)))
        report(count)
    return out


def call_tracked(fn: Callable[..., T], args: tuple, kwargs: dict, report: Callable[..., None]) -> T:
    """One call of ``jobs.submit``, where :func:`track` moves the job's bar."""
    _reporter.set(report)
    return fn(*args, **kwargs)


class _ChunkSizer:
    """Chunks grow until one takes about ``CHUNK_SECONDS``: few round trips for quick items,
    one item at a time for slow ones."""

    def __init__(self) -> None:
        self.size = 1
        self._per_item: float | None = None

    def observe(self, items: int, seconds: float) -> None:
        per_item = seconds / items
        self._per_item = per_item if self._per_item is None else (self._per_item + per_item) / 2
        self.size = max(1, min(MAX_CHUNK, int(CHUNK_SECONDS / max(self._per_item, 1e-6))))


class MapJob(Job, kind="ipyjobs.map"):
    """``fn(item)`` for each item, in parallel on the executor; the output is a
    :class:`MapResults` in item order.

    Per-item errors are recorded (one line each) and the job goes on. Pause: no new item
    starts, and ``fn`` waits at its next ``check()``/``track`` step. Cancel: the same places
    raise, and the job ends cancelled. Resume after a kernel restart (``jobs.resume(job_id)``)
    skips the items done before: their results are in the store, unless too big (then they
    stay in memory and run again after a restart). A function defined in a notebook cannot
    be imported again, so it is resumed with ``jobs.resume(job_id, fn=fn)``. Results go
    through JSON when stored (tuples come back as lists).
    """

    resumable = True

    def __init__(
        self, fn: Callable[[Any], Any], items: list[Any], *, workers: int | None = None
    ) -> None:
        if not callable(fn):
            raise TypeError(f"jobs.map() needs a function to call, got {type(fn).__name__}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        self.fn = fn
        self.items = items
        self.workers = workers
        self.ref = reference(fn)
        try:
            json.dumps(items)
        except (TypeError, ValueError):
            self.resumable = False  # type: ignore[misc]  # items cannot be stored

    @property
    def title(self) -> str:
        return f"map {_name(self.fn)} over {len(self.items)} items"

    def params(self) -> dict[str, Any]:
        return {
            "fn": self.ref or f"<notebook>:{_name(self.fn)}",
            "items": self.items if self.resumable else repr(self.items)[:200],
            "workers": self.workers,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> MapJob:
        fn = _supplied.get()
        ref: str = params["fn"]
        if fn is None:
            module, _, qualname = ref.partition(":")
            if module == "<notebook>":
                raise NotResumable(
                    f"this map calls {qualname}, a function defined in a notebook: it cannot be "
                    f"imported after a restart. Run the cell defining it, then "
                    f"jobs.resume(job_id, fn={qualname})"
                )
            try:
                fn = resolve(ref)
            except (ImportError, AttributeError) as exc:
                raise NotResumable(
                    f"cannot import {ref} to resume this map ({exc}); pass the function: "
                    "jobs.resume(job_id, fn=...)"
                ) from None
        return cls(fn, params["items"], workers=params["workers"])

    async def run(self, ctx: JobContext) -> MapResults:
        return await _MapRun(self, ctx).run()


class _MapRun:
    """The state of one run of a :class:`MapJob`."""

    def __init__(self, job: MapJob, ctx: JobContext) -> None:
        self.job, self.ctx = job, ctx
        self.executor = ctx.manager.executor
        n = len(job.items)
        self.values: list[Any] = [None] * n
        self.done: set[int] = set()
        self.stored: dict[str, Any] = {}
        self.failed: dict[str, str] = {}
        self.stored_bytes = 0
        self.in_memory = 0
        self.running: dict[int, int] = {}
        saved = ctx.saved_state or {}
        for key, value in saved.get("done", {}).items():
            self._keep(int(key), value, stored=True)
        for key, error in saved.get("failed", {}).items():
            self._fail(int(key), error)
        self.todo = deque(i for i in range(n) if i not in self.done)
        self.sizer = _ChunkSizer()
        self.saved_at = time.monotonic()

    def _keep(self, index: int, value: Any, *, stored: bool = False) -> None:
        self.values[index] = value
        self.done.add(index)
        if stored:
            self.stored[str(index)] = value
            return
        if self.job.resumable:
            try:
                size = len(json.dumps(value))
            except (TypeError, ValueError):
                size = MAX_STORED_RESULT + 1
            if size <= MAX_STORED_RESULT and self.stored_bytes + size <= MAX_STORED_RESULTS:
                self.stored[str(index)] = value
                self.stored_bytes += size
                return
        self.in_memory += 1
        if self.in_memory == 1 and self.job.resumable:
            self.ctx.log(
                "some results are too big for the job store (or not JSON): they are kept in "
                "memory only, and their items run again if the job is resumed after a restart",
                logging.WARNING,
            )

    def _fail(self, index: int, error: str) -> None:
        item = self.job.items[index]
        self.values[index] = ItemFailed(item, error)
        self.done.add(index)
        self.failed[str(index)] = error
        self.ctx.item_failed(repr(item)[:80], error)

    def _report(self, lane: int, count: int) -> None:
        self.running[lane] = count
        self.ctx.progress(len(self.done) + sum(self.running.values()), len(self.values))

    async def run(self) -> MapResults:
        ctx, job = self.ctx, self.job
        if job.ref is None:
            ctx.log(
                f"{_name(job.fn)} is defined in the notebook: after a kernel restart, resume "
                f"this map with jobs.resume({ctx.job_id!r}, fn={_name(job.fn)})"
            )
        ctx.progress(len(self.done), len(self.values), unit="items")
        lanes = job.workers or await workers_of(self.executor)
        if not isinstance(self.executor, LocalExecutor):
            lanes *= 2  # keep a call queued per worker thread: no idle round trip
        with failing_with_the_loss():
            async with anyio.create_task_group() as group:
                for lane in range(min(lanes, len(self.todo))):
                    group.start_soon(self._lane, lane)
        await self._save()
        return MapResults(self.values, self.in_memory)

    async def _lane(self, lane: int) -> None:
        ctx, todo = self.ctx, self.todo
        chunk_fn = functools.partial(run_items, self.job.fn)
        report = functools.partial(self._report, lane)
        while todo:
            await ctx.checkpoint()
            chunk = [todo.popleft() for _ in range(min(self.sizer.size, len(todo)))]
            if not chunk:
                return
            items = self.job.items
            started = time.monotonic()
            try:
                pairs = [(i, items[i]) for i in chunk]
                outcome = await self.executor.run(ctx, chunk_fn, pairs, report)
            except ExecutorLost:
                raise
            except Exception as exc:  # the executor's own failure (worker lost): these items
                outcome = [(i, False, one_line(exc)) for i in chunk]
            self.sizer.observe(len(chunk), time.monotonic() - started)
            self.running.pop(lane, None)
            for index, ok, value in outcome:
                self._keep(index, value) if ok else self._fail(index, value)
            ctx.progress(len(self.done), len(self.values))
            if self.job.resumable and time.monotonic() - self.saved_at >= CHECKPOINT_INTERVAL:
                self.saved_at = time.monotonic()
                await self._save()

    async def _save(self) -> None:
        """Keep the done items in the store (a checkpoint: also honours pause and cancel)."""
        if self.job.resumable:
            await self.ctx.checkpoint({"done": self.stored, "failed": self.failed})
        else:
            await self.ctx.checkpoint()


class CallJob(Job, kind="ipyjobs.call"):
    """One call ``fn(*args, **kwargs)`` on the executor; its result is the job's output.
    :func:`track` inside ``fn`` moves the bar; not resumable (its arguments may be anything)."""

    def __init__(
        self, fn: Callable[..., Any], args: tuple = (), kwargs: dict | None = None
    ) -> None:
        if not callable(fn):
            raise TypeError(f"jobs.submit() needs a function to call, got {type(fn).__name__}")
        self.fn, self.args, self.kwargs = fn, tuple(args), dict(kwargs or {})

    @property
    def title(self) -> str:
        return f"{_name(self.fn)}()"

    def params(self) -> dict[str, Any]:
        return {"fn": reference(self.fn) or _name(self.fn), "args": repr(self.args)[:200]}

    async def run(self, ctx: JobContext) -> Any:
        call = functools.partial(call_tracked, self.fn, self.args, self.kwargs)
        return await ctx.manager.executor.run(ctx, call, ctx.progress)
