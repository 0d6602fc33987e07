"""The store's writer thread: batches in order, retried until written, trouble shown meanwhile.

The manager's ticker hands over batches and never waits. A batch that cannot be written (disk
full, another program holding a write lock, ...) is kept and retried with a growing pause (at
most :data:`MAX_RETRY_PAUSE`); later batches are merged into it: a job's row is replaced by its
newer row (so memory stays bounded by the number of jobs) and history rows, the lifecycle, are
all kept in order. Until a write succeeds again, :attr:`StoreWriter.problem` says what is wrong
and how to fix it.

A daemon thread, for the reason :mod:`.threads` gives: a kernel must be able to exit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence

from .store import JobStore

log = logging.getLogger(__name__)

#: Longest pause between two attempts at writing a failed batch, in seconds.
MAX_RETRY_PAUSE = 5.0
_FIRST_RETRY_PAUSE = 0.25


def describe(store: JobStore, error: Exception) -> str:
    """The trouble and its fix, as a user can act on it."""
    text = str(error) or type(error).__name__
    if "disk is full" in text or "No space left" in text:
        fix = f"free space on the disk of {store.folder}"
    elif "locked" in text or "busy" in text:
        fix = "another program holds a write lock on it: close it, or end its transaction"
    else:
        fix = f"check that {store.folder} is writable"
    return (
        f"cannot write the job store {store.path} ({text}): {fix}. Nothing is lost, the "
        "engine keeps the records and retries."
    )


class _Batch:
    __slots__ = ("history", "interrupted", "rows")

    def __init__(self) -> None:
        self.rows: dict[str, tuple] = {}
        self.history: list[tuple] = []
        self.interrupted: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.rows or self.history or self.interrupted)


class StoreWriter:
    """Writes batches to a store from one daemon thread, in order, retrying failed ones."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._queue: queue.SimpleQueue[_Batch | threading.Event | None] = queue.SimpleQueue()
        self._pending = _Batch()
        self._writing = _Batch()
        self._lock = threading.Lock()
        self.problem: str | None = None
        """What keeps the store from being written right now (and the fix), or ``None``."""
        self._thread = threading.Thread(target=self._run, name="ipyjobs-store", daemon=True)
        self._thread.start()

    def submit(
        self, rows: Sequence[tuple], history: Sequence[tuple], interrupted: Sequence[str] = ()
    ) -> None:
        """Queue a batch (job rows keyed by their first column, the id); never waits."""
        batch = _Batch()
        batch.rows = {row[0]: row for row in rows}
        batch.history = list(history)
        batch.interrupted = list(interrupted)
        self._queue.put(batch)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every batch submitted so far was tried (written, or kept for a retry).
        Returns whether the store holds everything now. Never call it on the event loop."""
        tried = threading.Event()
        self._queue.put(tried)
        tried.wait(timeout)
        return tried.is_set() and not self.pending()

    def close(self) -> None:
        """Try a last time, then end the thread."""
        self.flush()
        self._queue.put(None)
        self._thread.join()

    def pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def pending_row(self, job_id: str) -> tuple | None:
        """The newest row of a job that may not be written yet."""
        with self._lock:
            return self._pending.rows.get(job_id) or self._writing.rows.get(job_id)

    def pending_history(self, job_id: str) -> list[tuple]:
        """History rows of a job that may not be written yet (some may be, just now)."""
        with self._lock:
            rows = self._writing.history + self._pending.history
        return [row for row in rows if row[0] == job_id]

    def _run(self) -> None:
        pause = _FIRST_RETRY_PAUSE
        while True:
            waiting = self.pending()
            try:
                item = self._queue.get(timeout=pause if waiting else None)
            except queue.Empty:
                item = _Batch()
            tried: list[threading.Event] = []
            while True:
                if item is None:
                    return
                if isinstance(item, threading.Event):
                    tried.append(item)
                else:
                    self._merge(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            pause = _FIRST_RETRY_PAUSE if self._write() else min(pause * 2, MAX_RETRY_PAUSE)
            for event in tried:
                event.set()

    def _merge(self, batch: _Batch) -> None:
        with self._lock:
            self._pending.rows.update(batch.rows)
            self._pending.history.extend(batch.history)
            self._pending.interrupted.extend(batch.interrupted)

    def _write(self) -> bool:
        with self._lock:
            batch = self._writing = self._pending
            self._pending = _Batch()
        if not batch:
            return True
        try:
            self._store.write(list(batch.rows.values()), batch.history, batch.interrupted)
        except Exception as exc:
            with self._lock:  # put it back in front of what came meanwhile
                self._writing = _Batch()
                batch.rows.update(self._pending.rows)
                batch.history.extend(self._pending.history)
                batch.interrupted.extend(self._pending.interrupted)
                self._pending = batch
            problem = describe(self._store, exc)
            if problem != self.problem:
                log.warning("%s", problem)
            self.problem = problem
            return False
        with self._lock:
            self._writing = _Batch()
        if self.problem is not None:
            log.warning("the job store %s is written again", self._store.path)
            self.problem = None
        return True
