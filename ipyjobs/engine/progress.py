"""Progress: cheap to report from the job, sampled by the manager a few times a second.

A job may call ``ctx.progress(...)`` millions of times; each call only stores numbers and, the
first time since the last sample, queues the tracker for the manager's ticker. Rate and ETA are
computed at sampling time over *active* time: a paused job's clock stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

#: Weight of the newest rate measurement in the moving average.
_RATE_SMOOTHING = 0.3


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """Progress of a job at one moment; what events, widgets and the store see."""

    done: float = 0
    total: float | None = None
    unit: str = "items"
    item: str | None = None
    message: str | None = None
    rate: float | None = None
    """Units per second of active (not paused) time, smoothed."""
    eta: float | None = None
    """Seconds of active time until ``total`` at the current rate."""
    elapsed: float = 0.0
    """Seconds the job has been running, paused time excluded."""

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    def as_dict(self) -> dict:
        return {
            "done": self.done,
            "total": self.total,
            "unit": self.unit,
            "item": self.item,
            "message": self.message,
            "rate": self.rate,
            "eta": self.eta,
            "elapsed": self.elapsed,
        }


class Progress:
    """The mutable progress of one job, written by the job from any thread.

    ``update`` is the hot path: plain attribute writes, plus one append to the manager's queue
    the first time after a sample. The flag is cleared by :meth:`sample` *before* it reads the
    numbers, so an update racing with a sample is either read by it or queued again.
    """

    __slots__ = (
        "_active_since",
        "_active_total",
        "_last_done",
        "_last_elapsed",
        "_queue",
        "_rate",
        "done",
        "item",
        "message",
        "owner",
        "queued",
        "total",
        "unit",
    )

    def __init__(self, owner: object, queue: Callable[[Progress], None]) -> None:
        self.owner = owner
        self._queue = queue
        self.done: float = 0
        self.total: float | None = None
        self.unit = "items"
        self.item: str | None = None
        self.message: str | None = None
        self.queued = False
        self._active_since: float | None = None
        self._active_total = 0.0
        self._rate: float | None = None
        self._last_done: float = 0
        self._last_elapsed = 0.0

    def update(
        self,
        done: float | None = None,
        total: float | None = None,
        *,
        advance: float | None = None,
        item: str | None = None,
        message: str | None = None,
        unit: str | None = None,
    ) -> None:
        """Report progress: an absolute ``done`` or an ``advance``, and optionally the ``total``,
        the current ``item``, a ``message`` and the ``unit`` ("items", "bytes", "frames", ...)."""
        if done is not None:
            self.done = done
        elif advance is not None:
            self.done += advance
        if total is not None:
            self.total = total
        if item is not None:
            self.item = item
        if message is not None:
            self.message = message
        if unit is not None:
            self.unit = unit
        if not self.queued:
            self.queued = True
            self._queue(self)

    # -- the clock: driven by the manager on state changes ----------------------------------

    def start_clock(self, now: float | None = None) -> None:
        if self._active_since is None:
            self._active_since = time.monotonic() if now is None else now

    def stop_clock(self, now: float | None = None) -> None:
        if self._active_since is not None:
            now = time.monotonic() if now is None else now
            self._active_total += now - self._active_since
            self._active_since = None

    def elapsed(self, now: float) -> float:
        if self._active_since is None:
            return self._active_total
        return self._active_total + (now - self._active_since)

    def sample(self, now: float | None = None) -> ProgressSnapshot:
        """Take a snapshot, updating the smoothed rate from the progress since the last one."""
        self.queued = False
        now = time.monotonic() if now is None else now
        done, total = self.done, self.total
        elapsed = self.elapsed(now)
        span = elapsed - self._last_elapsed
        if span > 0.05:
            measured = (done - self._last_done) / span
            if self._rate is None:
                self._rate = done / elapsed if elapsed > 0 else measured
            else:
                self._rate += _RATE_SMOOTHING * (measured - self._rate)
            self._last_done, self._last_elapsed = done, elapsed
        eta = None
        if total is not None and self._rate:
            eta = max(0.0, (total - done) / self._rate)
        return ProgressSnapshot(
            done=done,
            total=total,
            unit=self.unit,
            item=self.item,
            message=self.message,
            rate=self._rate,
            eta=eta,
            elapsed=elapsed,
        )
