"""The embedded SQLite store: every job's record, its place in the tree, and its history.

The schema, the mapping between a job and its row, and the database itself. Writes come from the
:class:`~.writer.StoreWriter` thread only, in batches; reads use a second connection, which in WAL
mode never waits for a writer, so nothing on the event loop waits for SQLite. Several kernels may
share one store: each manager holds a *session lock* file for its lifetime, and at start-up only
jobs of sessions whose lock is free (their process died) are marked interrupted. A file that is
not a readable database is moved aside (named in a warning) and a fresh store starts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from .lifecycle import error_text
from .state import JobState

if TYPE_CHECKING:
    from .handle import JobHandle

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

_UPSERT_JOBS = (
    f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES {{rows}} ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c}=excluded.{c}" for c in JOB_COLUMNS if c not in ("id", "created_at"))
)

_ADD_HISTORY = "INSERT INTO history (job_id, at, state, detail) VALUES {rows}"

#: Bound values per statement (SQLite's smallest limit on any build).
_MAX_VARIABLES = 999

_INTERRUPT = "UPDATE jobs SET state = ?, updated_at = ? WHERE id = ?"

_ACTIVE_STATES = (JobState.QUEUED.value, JobState.RUNNING.value, JobState.PAUSED.value)


#: Seconds the writer's connection waits for another program's write lock before the batch is
#: retried later (its trouble shown meanwhile). The reader never waits.
WRITE_BUSY_TIMEOUT = 2.0
#: Seconds a process waits for another one opening the store at the same moment.
OPEN_TIMEOUT = 30.0


def _insert_rows(db: sqlite3.Connection, sql: str, rows: Sequence[tuple], width: int) -> None:
    """Insert ``rows`` with a few multi-row statements (``sql`` has ``{rows}`` for the VALUES).

    Not ``executemany``: it runs one statement per row, and Python's sqlite3 lets go of the GIL
    around each one, so the event loop's thread waits for it back once per row written."""
    per_statement = _MAX_VARIABLES // width
    one_row = f"({', '.join('?' * width)})"
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        values = ", ".join([one_row] * len(chunk))
        db.execute(sql.format(rows=values), [value for row in chunk for value in row])


def to_json(value: Any) -> str:
    return json.dumps(value, default=repr)


def job_row(handle: JobHandle, session: str, now: float) -> tuple:
    """A job's row, in ``JOB_COLUMNS`` order."""
    error = handle.error
    item_errors = handle.item_errors
    return (
        handle.id,
        handle.kind,
        handle.title,
        handle.key,
        handle.parent_id,
        int(handle.owned),
        handle.priority,
        handle.state.value,
        handle.params_json,
        handle.checkpoint,
        None if handle.output is None else to_json(handle.output),
        None if error is None else error_text(error),
        None if error is None else type(error).__name__,
        to_json(handle.progress.as_dict()),
        to_json([dataclasses.asdict(e) for e in item_errors]) if item_errors else None,
        handle.error_count,
        session,
        handle.created_at,
        now,
    )


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
    def from_row(cls, row: sqlite3.Row | dict[str, Any]) -> JobRecord:
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

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> JobRecord:
        """From a row tuple in ``JOB_COLUMNS`` order (a row not written yet)."""
        return cls.from_row(dict(zip(JOB_COLUMNS, values, strict=True)))


class StoreCorrupt(Exception):
    """The store file is not a readable SQLite database."""


class JobStore:
    """SQLite file ``jobs.sqlite`` plus a ``sessions/`` folder of session locks.

    If opening fails, the session lock is released again before the error propagates.
    """

    def __init__(self, folder: Path, session: str) -> None:
        self.folder = folder
        self.session = session
        self.path = folder / "jobs.sqlite"
        self.moved_aside: Path | None = None
        """Where an unreadable store file found at start was moved, if one was."""
        folder.mkdir(parents=True, exist_ok=True)
        self._sessions = folder / "sessions"
        self._sessions.mkdir(exist_ok=True)
        self._session_lock = FileLock(self._sessions / f"{session}.lock")
        self._session_lock.acquire(timeout=0)
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.closed = False
        try:
            # One process at a time: two kernels starting together on a new store both switch
            # it to WAL, and SQLite answers the second "database is locked" without waiting.
            with FileLock(folder / "opening.lock", timeout=OPEN_TIMEOUT):
                try:
                    self._db, self._reader = self._open()
                except StoreCorrupt as exc:
                    self._move_aside(exc)
                    self._db, self._reader = self._open()
        except BaseException:
            self._release_session()
            raise

    def _open(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=WRITE_BUSY_TIMEOUT
        )
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreCorrupt(check)
        except sqlite3.OperationalError:  # locked, unreadable folder...: not the file's fault
            db.close()
            raise
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreCorrupt(str(exc)) from exc
        except BaseException:
            db.close()
            raise
        reader = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=0.1
        )
        reader.row_factory = sqlite3.Row
        return db, reader

    def _move_aside(self, problem: StoreCorrupt) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        self.path.replace(aside)
        for suffix in ("-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        self.moved_aside = aside
        log.warning(
            "the job store %s is not a readable database (%s): it was moved to %s and a fresh "
            "store was started. Earlier job history is in the moved file: open it with the "
            "sqlite3 tool to recover what it holds, or delete it.",
            self.path,
            problem,
            aside,
        )

    def write(
        self, jobs: Sequence[tuple], history: Iterable[tuple], interrupted: Iterable[str] = ()
    ) -> None:
        """Upsert job rows (in ``JOB_COLUMNS`` order), append history rows
        ``(job_id, at, state, detail)`` and mark ``interrupted`` job ids, in one transaction.
        Called from the writer thread only; :meth:`close` waits for it (closing the connection
        under a running statement crashes the process)."""
        with self._write_lock:
            self._write(jobs, history, interrupted)

    def _write(
        self, jobs: Sequence[tuple], history: Iterable[tuple], interrupted: Iterable[str]
    ) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            _insert_rows(db, _UPSERT_JOBS, jobs, len(JOB_COLUMNS))
            _insert_rows(db, _ADD_HISTORY, list(history), 4)
            now, state = time.time(), JobState.INTERRUPTED.value
            db.executemany(_INTERRUPT, [(state, now, job_id) for job_id in interrupted])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def find_orphans(self) -> list[str]:
        """The active jobs of sessions whose process is gone (their lock files are removed).

        The caller has them marked interrupted through the writer."""
        rows = self._read(
            f"SELECT id, session FROM jobs WHERE state IN ({', '.join('?' * 3)})", _ACTIVE_STATES
        )
        dead = {s for s in {row["session"] for row in rows} if not self._session_alive(s)}
        for session in dead:
            (self._sessions / f"{session}.lock").unlink(missing_ok=True)
        orphans = [row["id"] for row in rows if row["session"] in dead]
        if orphans:
            log.info("marking %d job(s) of ended sessions as interrupted", len(orphans))
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

    def _read(self, query: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._read_lock:
            return self._reader.execute(query, args).fetchall()

    def get(self, job_id: str) -> JobRecord | None:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return JobRecord.from_row(rows[0]) if rows else None

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
        return [JobRecord.from_row(row) for row in self._read(query, [*args, limit])]

    def history(self, job_id: str) -> list[tuple[float, JobState, str | None]]:
        """``(time, state, detail)`` of every state the job entered, oldest first."""
        rows = self._read(
            "SELECT at, state, detail FROM history WHERE job_id = ? ORDER BY seq", (job_id,)
        )
        return [(row["at"], JobState(row["state"]), row["detail"]) for row in rows]

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self.closed = True
            self._db.close()
            self._reader.close()
        self._release_session()

    def _release_session(self) -> None:
        self._session_lock.release()
        (self._sessions / f"{self.session}.lock").unlink(missing_ok=True)
