"""The manager's home: its event loop and thread. Calls from elsewhere are handed to it.

Only the home loop changes a manager's state. A control called from another thread (an
ipykernel 7 subshell, a worker thread, a widget callback on another loop) is run on the home loop
and the caller waits for its answer; an ``await handle`` on another thread's loop waits for an
end reported from the home loop. A :class:`~.watchdog.Watchdog` watches the home loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ManagerClosed
from .lifecycle import Lifecycle
from .watchdog import Watchdog, blocked_message

log = logging.getLogger("ipyjobs.engine")

T = TypeVar("T")


class HomeLoop:
    """The loop a manager was started on (asyncio; other anyio backends get no hand-over)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: int | None = None
        self._watchdog: Watchdog | None = None

    def bind(self) -> None:
        """Take the running loop as home, and watch it."""
        self.thread = threading.get_ident()
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        else:
            self._watchdog = Watchdog(self.loop, self.thread, self._blocked)
            self._watchdog.start()

    def stop_watching(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()

    @property
    def closed(self) -> bool:
        return self.loop is None or self.loop.is_closed()

    def here(self) -> bool:
        """Whether the caller runs on the home loop's thread (or there is no home yet)."""
        return self.thread is None or threading.get_ident() == self.thread

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the home loop: its result, or its error raised here. From another
        thread, waits (without spinning) until the home loop has run it."""
        if self.here() or self.loop is None:
            return fn(*args)
        loop = self.loop
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(call)
        except RuntimeError:
            raise ManagerClosed("this job manager's event loop has ended") from None
        while True:
            try:
                return future.result(timeout=1.0)
            except concurrent.futures.TimeoutError:
                if loop.is_closed() or not loop.is_running():
                    raise ManagerClosed("this job manager's event loop has ended") from None

    async def wait_for_end(self, life: Lifecycle) -> None:
        """On another thread's asyncio loop: wait until the job ended."""
        ended: concurrent.futures.Future[None] = self.call(self._end_future, life)
        await asyncio.wrap_future(ended)

    def _end_future(self, life: Lifecycle) -> concurrent.futures.Future[None]:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        if life.done:
            future.set_result(None)
            return future

        async def wait() -> None:
            await life.ended()
            future.set_result(None)

        assert self.loop is not None
        self.loop.create_task(wait())
        return future

    def _blocked(self, life: Lifecycle | None, seconds: float, where: str) -> None:
        """From the watchdog thread: the loop has not answered for ``seconds``."""
        if life is None:
            log.info("the event loop was blocked %.1f s, outside any job, at %s", seconds, where)
            return
        assert self.loop is not None
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            self.loop.call_soon_threadsafe(life.warn, blocked_message(seconds, where))
