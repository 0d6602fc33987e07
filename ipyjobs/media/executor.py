"""Where media jobs run their per-file work: the engine's executor seam.

A job hands each file's work to ``await executor.run(ctx, fn, *args)``. By default that is
the kernel's executor (``ctx.manager.executor``): threads of this process, or a Dask cluster
after ``ipyjobs.jobs().use_dask(...)``. See :mod:`ipyjobs.engine.executor`.
"""

from ..engine.executor import (
    Executor,
    ExecutorLost,
    LocalExecutor,
    failing_with_the_loss,
    workers_of,
)

__all__ = ["Executor", "ExecutorLost", "LocalExecutor", "failing_with_the_loss", "workers_of"]
