"""Concurrency limits per job group, served by priority.

A group ("download", "transcribe", "ocr", ...) has a number of slots. Jobs waiting for a slot
are served highest priority first, then first come first served. Changing the limit takes effect
at once: raising it admits waiters, lowering it lets running jobs finish.
"""

from __future__ import annotations

import heapq
import itertools
import math

import anyio


class PriorityLimiter:
    """Slots for one group, handed out by priority."""

    def __init__(self, slots: float = math.inf) -> None:
        self._slots = slots
        self._in_use = 0
        self._waiting: list[tuple[int, int, anyio.Event]] = []
        self._order = itertools.count()

    @property
    def slots(self) -> float:
        return self._slots

    @slots.setter
    def slots(self, value: float) -> None:
        if value < 1:
            raise ValueError(f"a concurrency limit must be at least 1, got {value}")
        self._slots = value
        self._admit()

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _admit(self) -> None:
        while self._waiting and self._in_use < self._slots:
            *_, event = heapq.heappop(self._waiting)
            self._in_use += 1
            event.set()

    async def acquire(self, priority: int = 0) -> None:
        """Wait for a slot. Cancelled while waiting: leaves the queue and holds nothing."""
        if self._in_use < self._slots and not self._waiting:
            self._in_use += 1
            return
        event = anyio.Event()
        entry = (-priority, next(self._order), event)
        heapq.heappush(self._waiting, entry)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():  # admitted just as the wait was cancelled: pass the slot on
                self.release()
            else:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
            raise

    def release(self) -> None:
        self._in_use -= 1
        self._admit()
