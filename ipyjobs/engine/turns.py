"""Fair turns on the event loop for jobs that compute between their checkpoints.

A job that does CPU work between ``await ctx.checkpoint()`` calls holds the loop for that long.
Yielding with ``sleep(0)`` is not enough when several such jobs run: asyncio runs every ready task
once per loop iteration, so a timer or a keypress waits for *all* of their work slices. Instead,
a job that has held the loop for more than :data:`HOLD_LIMIT` queues for a turn, and the jobs in
the queue run one slice at a time: between two slices of job work, the loop always gets round to
timers, I/O and other tasks.
"""

from __future__ import annotations

import asyncio
from collections import deque

import anyio

#: A job that has held the loop this long (seconds) gives it up at its next checkpoint.
HOLD_LIMIT = 0.005


class _Turns:
    """The queue of one asyncio loop: one job's slice at a time, first come first served.

    Served from a timer callback, and the waiter woken one hop later still, so that between two
    slices every due timer fires and the tasks those timers wake run: asyncio moves due timers to
    its ready queue only at the start of an iteration, behind what ``call_soon`` queued, and a
    task sleeping on a timer runs one iteration after its timer fired. The next turn is armed
    only after the woken job's slice, so only one slice is ever on its way.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._scheduled = False

    def take(self) -> asyncio.Future[None]:
        future = self._loop.create_future()
        self._waiting.append(future)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_later(0, self._next_turn)
        return future

    def _next_turn(self) -> None:
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():  # a waiter cancelled meanwhile left its future cancelled
                self._loop.call_soon(self._wake, future)
                return
        self._scheduled = False

    def _wake(self, future: asyncio.Future[None]) -> None:
        if not future.done():
            future.set_result(None)
        # Queued behind the woken job's step, so it runs once the slice is over; its timer is
        # then due after every timer that fell due during the slice, which fire first.
        self._loop.call_soon(self._arm)

    def _arm(self) -> None:
        if self._waiting:
            self._loop.call_later(0, self._next_turn)
        else:
            self._scheduled = False


_turns: dict[asyncio.AbstractEventLoop, _Turns] = {}


async def take_turn() -> None:
    """Give the loop up until this job's turn comes again. On cancel, leaves the queue."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # another anyio backend: a plain yield
        await anyio.sleep(0)
        return
    turns = _turns.get(loop)
    if turns is None:
        for old in [old for old in _turns if old.is_closed()]:
            del _turns[old]
        turns = _turns[loop] = _Turns(loop)
    await turns.take()
