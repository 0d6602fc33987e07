"""The interrupt token: how a cancel or pause request reaches the code doing the work.

One token per job. The job's async code calls ``await token.checkpoint()`` (usually through
``ctx.checkpoint()``); code in a worker thread calls the blocking ``token.check()``. Both raise
:class:`~ipyjobs.engine.errors.Cancelled` (a ``BaseException``) once a cancel was requested, again
at every later call (level-triggered), and wait while the job is paused. Requests
(``request_pause`` and friends) are made on the manager's event loop.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio

from .errors import Cancelled
from .turns import HOLD_LIMIT, take_turn

_current_token: contextvars.ContextVar[InterruptToken | None] = contextvars.ContextVar(
    "ipyjobs_current_token", default=None
)

#: How many raised ``Cancelled`` exceptions a token keeps, to tell where one was swallowed.
_KEEP_RAISED = 4


def current_token() -> InterruptToken | None:
    """The token of the job this code runs for, in its task or in a worker thread it started
    with ``ctx.run_sync``; ``None`` outside a job."""
    return _current_token.get()


class InterruptToken:
    """Cancel and pause flags of one job, readable from the loop and from worker threads.

    ``parked`` counts the places currently waiting because of a pause; the manager reports the
    job as paused only once something is parked, so "pausing" shows until the work has really
    stopped.
    """

    def __init__(self, on_park: Callable[[], None] | None = None) -> None:
        self._condition = threading.Condition()
        self._cancelled = False
        self._paused = False
        self._parked = 0
        self._resume_event: anyio.Event | None = None
        self._on_park = on_park
        self._held_since = time.monotonic()
        self.raised: list[Cancelled] = []
        """The first few ``Cancelled`` this token raised: if the job went on, their tracebacks
        end where the job's code caught them."""

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def parked(self) -> bool:
        """Whether some part of the job is waiting because of a pause right now."""
        return self._parked > 0

    # -- requests, made on the event loop -------------------------------------------------

    def request_pause(self) -> None:
        with self._condition:
            self._paused = True

    def request_resume(self) -> None:
        with self._condition:
            self._paused = False
            self._condition.notify_all()
        self._wake_async_waiters()

    def request_cancel(self) -> None:
        with self._condition:
            self._cancelled = True
            self._condition.notify_all()
        self._wake_async_waiters()

    def _wake_async_waiters(self) -> None:
        if self._resume_event is not None:
            self._resume_event.set()
            self._resume_event = None

    # -- checks, made by the work ---------------------------------------------------------

    def start_holding(self) -> None:
        """The job's task has just got the loop (it starts, or got its slot after waiting):
        its hold on the loop, which :meth:`checkpoint` limits, counts from now."""
        self._held_since = time.monotonic()

    async def checkpoint(self) -> None:
        """Raise ``Cancelled`` if cancelled; while paused, wait (parked) for resume or cancel;
        after holding the loop for more than a few milliseconds, let other tasks run.

        On cancellation of the calling task while waiting, the cancellation propagates as usual.
        """
        while True:
            while self._paused and not self._cancelled:
                if self._resume_event is None:
                    self._resume_event = anyio.Event()
                with self.parking():
                    await self._resume_event.wait()
                self._held_since = time.monotonic()
            if self._cancelled:
                self._raise()
            if time.monotonic() - self._held_since <= HOLD_LIMIT:
                return
            await take_turn()  # a pause or cancel asked meanwhile is honoured on the next round
            self._held_since = time.monotonic()

    def check(self) -> None:
        """Blocking twin of :meth:`checkpoint` for worker threads. Never call it on the loop."""
        with self._condition:
            while self._paused and not self._cancelled:
                self._parked += 1
                try:
                    self._condition.wait()
                finally:
                    self._parked -= 1
        if self._cancelled:
            self._raise()

    def raise_if_cancelled(self) -> None:
        """Raise ``Cancelled`` if a cancel was requested; never waits."""
        if self._cancelled:
            self._raise()

    def _raise(self) -> None:
        error = Cancelled("the job was cancelled")
        if len(self.raised) < _KEEP_RAISED:
            self.raised.append(error)
        raise error

    @contextmanager
    def parking(self) -> Iterator[None]:
        """Count the enclosed wait as parked, so a pause requested meanwhile takes effect at once.

        Used by checkpoints and by waits on other jobs: a job waiting for a download is idle, so
        pausing it needs no further cooperation.
        """
        with self._condition:
            self._parked += 1
        if self._paused and self._on_park is not None:
            self._on_park()
        try:
            yield
        finally:
            with self._condition:
                self._parked -= 1
