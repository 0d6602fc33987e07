"""``ipyjobs.jobs()``: the one manager of this kernel (or process), from any thread.

In a Jupyter kernel the manager runs on the kernel's main loop, whichever thread asks first (an
ipykernel 7 subshell runs on a thread and loop of its own): the notebook's panel and every
subshell see the same jobs. Outside a kernel it runs on the loop of the first caller. A manager
whose task ended by error is never handed out again: the error is logged and a fresh manager
starts.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import Any

from .manager import JobManager

log = logging.getLogger(__name__)

_lock = threading.Lock()
_current: JobManager | None = None


def _kernel_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop of the running ipykernel's main shell, if this is a kernel."""
    if "ipykernel" not in sys.modules:
        return None
    from ipykernel.kernelbase import Kernel

    if not Kernel.initialized():
        return None
    io_loop = getattr(Kernel.instance(), "io_loop", None)
    loop = getattr(io_loop, "asyncio_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) and loop.is_running() else None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def jobs(**config: Any) -> JobManager:
    """The job manager of this kernel (or of the first caller's event loop), made on first use.

    Safe from any thread. ``config`` (``home``, ``limits``, ...) applies when the manager is
    made. If the previous manager's task ended by an error, says so (``logging``) and starts a
    fresh one.
    """
    global _current
    with _lock:
        manager = _current
        if manager is not None and manager.alive:
            return manager
        if manager is not None and manager.failure is not None:
            log.error(
                "the ipyjobs job manager stopped by an error (%r); starting a fresh one. Its "
                "jobs that were active are interrupted in the store and can be resumed.",
                manager.failure,
            )
        loop = _kernel_loop() or _running_loop()
        if loop is None:
            raise RuntimeError(
                "ipyjobs.jobs() needs a running asyncio event loop: call it from a notebook cell "
                "or async code; in a script use `async with ipyjobs.JobManager() as manager:`"
            )
        _current = manager = _start_on(loop, config)
        return manager


def _start_on(loop: asyncio.AbstractEventLoop, config: dict[str, Any]) -> JobManager:
    """Make and start a manager on ``loop``, from that loop's thread or another."""

    async def start() -> JobManager:
        manager = JobManager(**config)
        manager.start_in_background()
        return manager

    if _running_loop() is loop:
        manager = JobManager(**config)
        manager.start_in_background()
        return manager
    return asyncio.run_coroutine_threadsafe(start(), loop).result()
