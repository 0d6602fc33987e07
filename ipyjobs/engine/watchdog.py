"""A thread outside the loop that notices when something blocks the loop, and names it.

Every :data:`BEAT` seconds it asks the loop to answer (``call_soon_threadsafe``). An answer that
has not come after :data:`BLOCKED_AFTER` seconds means the loop is blocked: the watchdog looks at
the loop thread's stack, finds the job whose task is running (the frame of
:func:`~.supervisor.drive`) and the line it is on, and reports it once per blocked stretch.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from .lifecycle import Lifecycle
from .supervisor import drive

#: Seconds between two heartbeats.
BEAT = 0.25
#: A loop that has not answered for this many seconds is reported.
BLOCKED_AFTER = 1.0


def blocked_message(seconds: float, where: str) -> str:
    """The warning a job gets for blocking the loop, with the fix."""
    return (
        f"blocked the event loop for {seconds:.1f} s at {where}, so the notebook could not "
        "respond. Run blocking work in a thread with `await ctx.run_sync(fn, ...)` and call "
        "`await ctx.checkpoint()` often in computing loops."
    )


def blocker(frame: FrameType | None) -> tuple[Lifecycle | None, str]:
    """The job whose task runs in this stack (if any), and the innermost Python line."""
    where = "an unknown place"
    if frame is not None:
        code = frame.f_code
        where = f"{code.co_name} ({code.co_filename}:{frame.f_lineno})"
    while frame is not None:
        if frame.f_code is drive.__code__:
            life = frame.f_locals.get("life")
            return (life if isinstance(life, Lifecycle) else None), where
        frame = frame.f_back
    return None, where


class Watchdog(threading.Thread):
    """Watches one asyncio loop run by thread ``loop_thread``.

    ``report(life, seconds, where)`` is called from this thread once per blocked stretch.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        loop_thread: int,
        report: Callable[[Lifecycle | None, float, str], None],
    ) -> None:
        super().__init__(name="ipyjobs watchdog", daemon=True)
        self._loop = loop
        self._loop_thread = loop_thread
        self._report = report
        self._stopping = threading.Event()
        self._answered = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._answered.clear()
            asked = time.monotonic()
            try:
                self._loop.call_soon_threadsafe(self._answered.set)
            except RuntimeError:  # the loop was closed
                return
            reported = False
            while not self._answered.wait(BEAT):
                if self._stopping.is_set() or self._loop.is_closed():
                    return
                blocked = time.monotonic() - asked
                if blocked >= BLOCKED_AFTER and not reported and self._loop.is_running():
                    reported = True
                    life, where = blocker(sys._current_frames().get(self._loop_thread))
                    self._report(life, blocked, where)
            self._stopping.wait(BEAT)
