"""Typed job events and the bus that delivers them.

Each subscriber has its own bounded queue. Lifecycle events (queued, started, paused, resumed
and the four endings) are never dropped; a slow subscriber's progress events are coalesced so it
sees the newest progress of each job once; log events beyond the subscriber's ``max_logs`` are
dropped and counted. All publishing happens on the event loop.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from .progress import ProgressSnapshot


@dataclass(frozen=True, slots=True)
class JobEvent:
    job_id: str
    kind: str
    at: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True, slots=True)
class Queued(JobEvent):
    title: str = ""
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Started(JobEvent):
    pass


@dataclass(frozen=True, slots=True)
class ProgressChanged(JobEvent):
    progress: ProgressSnapshot = field(default_factory=ProgressSnapshot)


@dataclass(frozen=True, slots=True)
class Log(JobEvent):
    level: int = 20
    message: str = ""


@dataclass(frozen=True, slots=True)
class Paused(JobEvent):
    pass


@dataclass(frozen=True, slots=True)
class Resumed(JobEvent):
    pass


@dataclass(frozen=True, slots=True)
class Completed(JobEvent):
    output: Any = None


@dataclass(frozen=True, slots=True)
class Failed(JobEvent):
    error: str = ""
    """The real error text, ``"TypeName: message"``."""
    error_type: str = ""


@dataclass(frozen=True, slots=True)
class Cancelled(JobEvent):
    pass


@dataclass(frozen=True, slots=True)
class Interrupted(JobEvent):
    pass


LIFECYCLE = (Queued, Started, Paused, Resumed, Completed, Failed, Cancelled, Interrupted)


class _ProgressSlot:
    """A place in a subscriber's queue holding the newest progress of one job."""

    __slots__ = ("event",)

    def __init__(self, event: ProgressChanged) -> None:
        self.event = event


class Subscription:
    """One subscriber's queue. Iterate it with ``async for``; leave the ``with`` block (or call
    :meth:`close`) to unsubscribe. Iteration ends after ``close``."""

    def __init__(self, bus: EventBus, job_id: str | None, max_logs: int) -> None:
        self._bus = bus
        self._job_id = job_id
        self._max_logs = max_logs
        self._queue: deque[JobEvent | _ProgressSlot] = deque()
        self._progress_slots: dict[str, _ProgressSlot] = {}
        self._logs_queued = 0
        self._wakeup: anyio.Event | None = None
        self._closed = False
        self.dropped_logs = 0

    def _offer(self, event: JobEvent) -> None:
        if self._job_id is not None and event.job_id != self._job_id:
            return
        if isinstance(event, ProgressChanged):
            slot = self._progress_slots.get(event.job_id)
            if slot is not None:
                slot.event = event
                return
            slot = self._progress_slots[event.job_id] = _ProgressSlot(event)
            self._queue.append(slot)
        elif isinstance(event, Log):
            if self._logs_queued >= self._max_logs:
                self.dropped_logs += 1
                return
            self._logs_queued += 1
            self._queue.append(event)
        else:
            self._queue.append(event)
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def get_nowait(self) -> JobEvent | None:
        """The next event, or ``None`` when the queue is empty."""
        if not self._queue:
            return None
        entry = self._queue.popleft()
        if isinstance(entry, _ProgressSlot):
            del self._progress_slots[entry.event.job_id]
            return entry.event
        if isinstance(entry, Log):
            self._logs_queued -= 1
        return entry

    async def get(self) -> JobEvent:
        """Wait for the next event. Raises ``anyio.EndOfStream`` once closed and drained."""
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            if self._closed:
                raise anyio.EndOfStream
            if self._wakeup is None:
                self._wakeup = anyio.Event()
            await self._wakeup.wait()

    def __len__(self) -> int:
        return len(self._queue)

    def __aiter__(self) -> AsyncIterator[JobEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JobEvent]:
        while True:
            try:
                yield await self.get()
            except anyio.EndOfStream:
                return

    def close(self) -> None:
        self._closed = True
        self._bus._subscriptions.discard(self)
        self._wake()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EventBus:
    """Fan-out of job events to subscribers, each with its own bounded queue."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def subscribe(self, *, job_id: str | None = None, max_logs: int = 1000) -> Subscription:
        """Start receiving events (of one job, or of all). Events published before this call are
        not replayed: to wait for a job's end use ``await handle``, which cannot miss it."""
        subscription = Subscription(self, job_id, max_logs)
        self._subscriptions.add(subscription)
        return subscription

    def publish(self, event: JobEvent) -> None:
        for subscription in tuple(self._subscriptions):
            subscription._offer(event)
