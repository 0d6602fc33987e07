"""The embedded SQLite store: every job's record, its place in the tree, and its history.

The manager hands over batches (``write``) from its ticker, in a worker thread, so a job that
reports often costs one row write per batch, not one per report. Several kernels may share one
store: each manager holds a *session lock* file for its lifetime, and at start-up only jobs of
sessions whose lock is free (their process died) are marked interrupted.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .state import JobState

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    key TEXT,
    parent_id TEXT,
    owned INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    checkpoint TEXT,
    output TEXT,
    error TEXT,
    error_type TEXT,
    progress TEXT,
    item_errors TEXT,
    error_count INTEGER NOT NULL DEFAULT 0,
    session TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs(parent_id);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    state TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS history_job ON history(job_id);
"""

#: Column order of a job row as ``write`` receives it.
JOB_COLUMNS = (
    "id",
    "kind",
    "title",
    "key",
    "parent_id",
    "owned",
    "priority",
    "state",
    "params",
    "checkpoint",
    "output",
    "error",
    "error_type",
    "progress",
    "item_errors",
    "error_count",
    "session",
    "created_at",
    "updated_at",
)

_UPSERT = (
    f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' * len(JOB_COLUMNS))}) "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c}=excluded.{c}" for c in JOB_COLUMNS if c not in ("id", "created_at"))
)

_ADD_HISTORY = "INSERT INTO history (job_id, at, state, detail) VALUES (?, ?, ?, ?)"

_ACTIVE_STATES = (JobState.QUEUED.value, JobState.RUNNING.value, JobState.PAUSED.value)


@dataclass(frozen=True)
class JobRecord:
    """A job as the store knows it; for jobs of this process, the handle is fresher."""

    id: str
    kind: str
    title: str
    key: str | None
    parent_id: str | None
    owned: bool
    priority: int
    state: JobState
    params: dict[str, Any]
    checkpoint: Any
    output: Any
    error: str | None
    error_type: str | None
    progress: dict[str, Any] | None
    item_errors: list[dict[str, Any]]
    error_count: int
    session: str
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRecord:
        def loads(text: str | None) -> Any:
            return None if text is None else json.loads(text)

        return cls(
            id=row["id"],
            kind=row["kind"],
            title=row["title"],
            key=row["key"],
            parent_id=row["parent_id"],
            owned=bool(row["owned"]),
            priority=row["priority"],
            state=JobState(row["state"]),
            params=loads(row["params"]),
            checkpoint=loads(row["checkpoint"]),
            output=loads(row["output"]),
            error=row["error"],
            error_type=row["error_type"],
            progress=loads(row["progress"]),
            item_errors=loads(row["item_errors"]) or [],
            error_count=row["error_count"],
            session=row["session"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


class JobStore:
    """SQLite file ``jobs.sqlite`` plus a ``sessions/`` folder of session locks."""

    def __init__(self, folder: Path, session: str) -> None:
        self.folder = folder
        self.session = session
        folder.mkdir(parents=True, exist_ok=True)
        self._sessions = folder / "sessions"
        self._sessions.mkdir(exist_ok=True)
        self._session_lock = FileLock(self._sessions / f"{session}.lock")
        self._session_lock.acquire(timeout=0)
        self._lock = threading.Lock()
        self.closed = False
        self._db = sqlite3.connect(
            folder / "jobs.sqlite", check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def write(self, jobs: Sequence[tuple], history: Iterable[tuple]) -> None:
        """Upsert job rows (in ``JOB_COLUMNS`` order) and append history rows
        ``(job_id, at, state, detail)`` in one transaction."""
        with self._transaction() as db:
            db.executemany(_UPSERT, jobs)
            db.executemany(_ADD_HISTORY, history)

    def mark_orphans_interrupted(self) -> list[str]:
        """Mark interrupted the active jobs of sessions whose process is gone; return their ids."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, session FROM jobs WHERE state IN ({', '.join('?' * 3)})",
                _ACTIVE_STATES,
            ).fetchall()
        dead = {s for s in {row["session"] for row in rows} if not self._session_alive(s)}
        orphans = [row["id"] for row in rows if row["session"] in dead]
        now, interrupted = time.time(), JobState.INTERRUPTED.value
        with self._transaction() as db:
            db.executemany(
                "UPDATE jobs SET state = ?, updated_at = ? WHERE id = ?",
                [(interrupted, now, job_id) for job_id in orphans],
            )
            db.executemany(
                _ADD_HISTORY,
                [(job_id, now, interrupted, "its process ended") for job_id in orphans],
            )
        for session in dead:
            (self._sessions / f"{session}.lock").unlink(missing_ok=True)
        if orphans:
            log.info("marked %d job(s) of ended sessions as interrupted", len(orphans))
        return orphans

    def _session_alive(self, session: str) -> bool:
        if session == self.session:
            return True
        lock = FileLock(self._sessions / f"{session}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        lock.release()
        return False

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else JobRecord.from_row(row)

    def records(
        self, *, states: Iterable[JobState] | None = None, limit: int = 1000
    ) -> list[JobRecord]:
        """Newest first, optionally only in the given states."""
        query, args = "SELECT * FROM jobs", []
        if states is not None:
            values = [s.value for s in states]
            query += f" WHERE state IN ({', '.join('?' * len(values))})"
            args = values
        query += " ORDER BY created_at DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, [*args, limit]).fetchall()
        return [JobRecord.from_row(row) for row in rows]

    def history(self, job_id: str) -> list[tuple[float, JobState, str | None]]:
        """``(time, state, detail)`` of every state the job entered, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT at, state, detail FROM history WHERE job_id = ? ORDER BY seq", (job_id,)
            ).fetchall()
        return [(row["at"], JobState(row["state"]), row["detail"]) for row in rows]

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._db.close()
        self._session_lock.release()
        (self._sessions / f"{self.session}.lock").unlink(missing_ok=True)


class StoreWriter:
    """Writes batches to a store from one daemon thread, in order.

    A daemon thread, for the reason :mod:`.threads` gives: a kernel must be able to exit.
    """

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._batches: queue.SimpleQueue[tuple[list, list] | threading.Event] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ipyjobs-store", daemon=True)
        self._thread.start()

    def submit(self, rows: list[tuple], history: list[tuple]) -> None:
        self._batches.put((rows, history))

    def flush(self) -> None:
        """Wait until every batch submitted so far is written."""
        done = threading.Event()
        self._batches.put(done)
        done.wait()

    def _run(self) -> None:
        while True:
            batch = self._batches.get()
            if isinstance(batch, threading.Event):
                batch.set()
                continue
            try:
                self._store.write(*batch)
            except Exception:
                log.exception("could not write the job store at %s", self._store.folder)
