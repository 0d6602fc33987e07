"""Recording what happens to jobs: history, events, sampled progress, logs, and the store.

Lifecycles report every change here (on the manager's loop); worker threads only queue progress
and logs. The manager's ticker calls :meth:`Recorder.tick` a few times a second: it samples the
queued progress, publishes the logs, acknowledges pauses that took effect in threads, and hands
the changed job rows and new history rows to the store's writer thread without waiting for it.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

from . import events
from .state import JobState
from .store import JobRecord, JobStore, job_row
from .writer import StoreWriter

if TYPE_CHECKING:
    from .lifecycle import Lifecycle
    from .progress import Progress

HistoryRow = tuple[str, float, str, "str | None"]


class Recorder:
    """History, dirty rows, progress and log queues, and the store writer of one manager."""

    def __init__(self, store: JobStore | None, session: str, store_interval: float) -> None:
        self.bus = events.EventBus()
        self.store = store
        self.writer = StoreWriter(store) if store is not None else None
        self.session = session
        self.pausing: set[Lifecycle] = set()
        """Jobs asked to pause whose pause has not taken effect yet."""
        self._store_interval = store_interval
        self._last_write = time.monotonic()
        self._dirty: set[Lifecycle] = set()
        self._history: list[HistoryRow] = []
        self._progress: deque[Progress] = deque()
        self._logs: deque[tuple[Lifecycle, int, str]] = deque()

    # -- what lifecycles report --------------------------------------------------------------

    def record(self, life: Lifecycle, state: JobState, detail: str | None) -> None:
        self._history.append((life.handle.id, time.time(), state.value, detail))
        self._dirty.add(life)

    def mark_dirty(self, life: Lifecycle) -> None:
        self._dirty.add(life)

    def publish(self, event: events.JobEvent) -> None:
        self.bus.publish(event)

    def queue_progress(self, tracker: Progress) -> None:
        """From any thread: a tracker has news (it queues itself once per sample)."""
        self._progress.append(tracker)

    def queue_log(self, life: Lifecycle, level: int, message: str) -> None:
        """From any thread."""
        self._logs.append((life, level, message))

    # -- the ticker ------------------------------------------------------------------------

    def tick(self) -> None:
        self.flush_progress()
        self.flush_logs()
        for life in [life for life in self.pausing if life.token.parked]:
            life.pause_took_effect()
        if time.monotonic() - self._last_write >= self._store_interval:
            self.submit()

    def flush_progress(self) -> None:
        now = time.monotonic()
        queue = self._progress
        while queue:
            life: Lifecycle = queue.popleft().owner  # type: ignore[assignment]
            if not life.done:
                life.publish_progress(now)

    def flush_logs(self) -> None:
        queue = self._logs
        while queue:
            life, level, message = queue.popleft()
            life.log_tail.append(message)
            self.bus.publish(
                events.Log(life.handle.id, life.handle.kind, level=level, message=message)
            )

    def submit(self) -> None:
        """Hand the changed rows and the new history to the writer thread; never waits."""
        self._last_write = time.monotonic()
        if self.writer is None or not (self._dirty or self._history):
            return
        now = time.time()
        rows = [job_row(life.handle, self.session, now) for life in self._dirty]
        history, self._history = self._history, []
        self._dirty = set()
        self.writer.submit(rows, history)

    # -- reading back what may not be written yet -------------------------------------------

    def pending_record(self, job_id: str) -> JobRecord | None:
        row = None if self.writer is None else self.writer.pending_row(job_id)
        return None if row is None else JobRecord.from_values(row)

    def history(self, job_id: str) -> list[tuple[float, JobState, str | None]]:
        """Written history, then what the writer holds, then what it was not handed yet."""
        assert self.store is not None and self.writer is not None
        unwritten = self.writer.pending_history(job_id)
        rows = [
            (job_id, at, state.value, detail) for at, state, detail in self.store.history(job_id)
        ]
        seen = set(rows)
        rows += [row for row in unwritten if row not in seen]
        rows += [row for row in self._history if row[0] == job_id]
        return [(at, JobState(state), detail) for _, at, state, detail in rows]
