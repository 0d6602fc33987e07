"""The one timer that copies job state into widgets.

Jobs change state many times a second, from the loop and from worker threads. Views never react
to those changes directly: a single task on the kernel's loop calls each registered view's
``refresh()`` a few times a second, on the loop, and views set their traits inside
``hold_sync()``. So no widget is written from a worker thread, and the number of comm messages
depends on the refresh rate, not on how often jobs report.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

log = logging.getLogger(__name__)

#: Refreshes per second (the design allows 5 to 10).
RATE = 8.0


class View(Protocol):
    def refresh(self) -> None: ...


class Ticker:
    """Refreshes views on the running asyncio loop while any is registered."""

    def __init__(self, rate: float = RATE) -> None:
        self.interval = 1.0 / rate
        self._views: weakref.WeakSet[View] = weakref.WeakSet()
        self._task: asyncio.Task | None = None

    def add(self, view: View) -> None:
        """Refresh ``view`` from now on (until it is closed and collected, or discarded)."""
        self._views.add(view)
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (plain script): views refresh when asked
            self._task = loop.create_task(self._run(), name="ipyjobs widget ticker")

    def discard(self, view: View) -> None:
        self._views.discard(view)

    def refresh_all(self) -> None:
        for view in list(self._views):
            try:
                view.refresh()
            except Exception:  # one broken view must not stop the others
                log.exception("refreshing %r failed", view)

    async def _run(self) -> None:
        while self._views:
            self.refresh_all()
            await asyncio.sleep(self.interval)


_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticker] = weakref.WeakKeyDictionary()
_loopless = Ticker()


def ticker() -> Ticker:
    """The ticker of the running loop (the kernel's)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _loopless
    found = _tickers.get(loop)
    if found is None:
        found = _tickers[loop] = Ticker()
    return found
