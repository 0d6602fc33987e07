"""Where media jobs run their per-file work.

A job hands each file's work to an :class:`Executor`. The default runs it in a worker thread of
this process, with the job's interrupt token at hand (``ipyjobs.current_token()``), so cancel and
pause reach inside a file. Another backend (a Dask cluster, say) implements the same two members
and the jobs do not change.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

from ..engine import JobContext

T = TypeVar("T")


class Executor(ABC):
    """Runs one file's work at a time per call; ``workers`` says how many calls may overlap."""

    workers: int

    @abstractmethod
    async def run(self, ctx: JobContext, fn: Callable[..., T], /, *args: Any) -> T:
        """Run ``fn(*args)`` and return its result or raise its exception.

        On cancel of the job, the work is told (its token is cancelled) and this returns only
        once it has stopped: no file's work outlives its job.
        """


class LocalExecutor(Executor):
    """Worker threads of this process (the default)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1

    async def run(self, ctx: JobContext, fn: Callable[..., T], /, *args: Any) -> T:
        return await ctx.run_sync(fn, *args)

    def __repr__(self) -> str:
        return f"LocalExecutor(workers={self.workers})"
