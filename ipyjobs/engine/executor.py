"""Where a job's blocking work runs: threads of this kernel, or a cluster.

A job hands each unit of blocking work (one file, one chunk of a ``map``) to
``await executor.run(ctx, fn, *args)``. Every manager has one executor, ``manager.executor``:
threads of this process by default; ``manager.use_dask(...)`` swaps in a Dask cluster for the
whole kernel, so jobs and their stored parameters never name where they run, and a persisted
job resumes wherever the kernel that resumes it runs its work.

What ``fn`` may rely on, wherever it runs:

- ``ipyjobs.current_token().check()`` raises on cancel and parks while the job is paused.
- Arguments and the result are plain data (picklable) when a cluster may run it.
- A *callable* among ``args`` is a callback into the job (a progress report): locally it is
  called as it is; on a cluster it is called back in the kernel with the same (plain-data)
  arguments, the newest call at least once a second and always the last one. So callbacks
  must report absolute values ("3 of 10 done"), never increments.
"""

from __future__ import annotations

import contextlib
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .threads import run_in_thread

if TYPE_CHECKING:
    from .context import JobContext

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

T = TypeVar("T")


class ExecutorLost(RuntimeError):
    """The executor itself is gone (a cluster's scheduler lost): the job fails with this,
    rather than recording every remaining item as failed. Code that turns an item's failure
    into an item error lets it through (``except ExecutorLost: raise`` first)."""


@contextlib.contextmanager
def failing_with_the_loss() -> Iterator[None]:
    """Around a task group whose tasks run calls on an executor: when the executor is lost,
    raise that :class:`ExecutorLost` itself (the first one) rather than the group, so the job
    fails with the reason ("errors in a task group" says nothing). Other errors pass as they
    are, a cancel too."""
    try:
        yield
    except BaseExceptionGroup as errors:
        lost = errors.subgroup(ExecutorLost)
        if lost is None:
            raise
        first: BaseException = lost
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


class Executor(ABC):
    """Runs blocking calls for jobs; ``workers`` says how many calls can usefully overlap."""

    @property
    @abstractmethod
    def workers(self) -> int:
        """How many calls run at once (threads, or the cluster's worker threads)."""

    @property
    @abstractmethod
    def where(self) -> str:
        """Where the work runs, for panels and logs: ``"4 threads of this kernel"``."""

    @property
    def label(self) -> str:
        """A short name to choose it by in a form: ``"this kernel (4 threads)"``."""
        return self.where

    @property
    def dashboard_link(self) -> str | None:
        """The cluster's dashboard URL, if it has one."""
        return None

    @abstractmethod
    async def run(self, ctx: JobContext, fn: Callable[..., T], /, *args: Any) -> T:
        """Run ``fn(*args)`` for the job and return its result or raise its exception.

        On cancel of the job, the work is told (its token is cancelled) and this returns only
        once it has stopped: no work outlives its job.
        """

    def close(self) -> None:  # noqa: B027 (most executors hold nothing)
        """Release what the executor holds (a cluster connection it opened itself)."""


async def workers_of(executor: Executor) -> int:
    """``executor.workers``, asked from a worker thread: a cluster known by its address is
    connected at its first use, which takes seconds (and longer when it is not there), never
    on the kernel's loop. On cancel, waits for the answer first."""
    return await run_in_thread(lambda: executor.workers)


class LocalExecutor(Executor):
    """Worker threads of this process (the default): ``ctx.run_sync`` for each call."""

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers or os.cpu_count() or 1

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def where(self) -> str:
        return "this kernel's threads"

    @property
    def label(self) -> str:
        return f"this kernel ({self._workers} threads)"

    async def run(self, ctx: JobContext, fn: Callable[..., T], /, *args: Any) -> T:
        ctx.handle.where = self.where
        return await ctx.run_sync(fn, *args)

    def __repr__(self) -> str:
        return f"LocalExecutor(workers={self._workers})"


#: A scheduler address here makes every new manager run its work on that Dask cluster.
DASK_VARIABLE = "IPYJOBS_DASK_SCHEDULER"


def executor_from_environment() -> Executor:
    """A :class:`LocalExecutor`, or the Dask cluster ``$IPYJOBS_DASK_SCHEDULER`` names
    (connected at its first use; ``distributed`` is imported only then)."""
    address = os.environ.get(DASK_VARIABLE, "").strip()
    if not address:
        return LocalExecutor()
    from ..scale.dask import DaskExecutor

    return DaskExecutor(address)
