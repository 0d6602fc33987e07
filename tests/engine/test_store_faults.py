"""A store that loses nothing: a write lock held elsewhere, a full disk, a corrupt file."""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from ipyjobs import JobManager, JobState, data_home
from ipyjobs.engine.store import JobStore

from .jobs import Items, Steps
from .test_states import wait_until

pytestmark = pytest.mark.anyio

LIFECYCLE = ["queued", "running", "completed"]


def stored_history(home: Path) -> dict[str, list[str]]:
    """Every job's states as the file holds them, read with a connection of our own."""
    db = sqlite3.connect(home / "jobs" / "jobs.sqlite")
    try:
        rows = db.execute("SELECT job_id, state FROM history ORDER BY seq").fetchall()
    finally:
        db.close()
    history: dict[str, list[str]] = {}
    for job_id, state in rows:
        history.setdefault(job_id, []).append(state)
    return history


class LoopProbe:
    """Sleeps 10 ms over and over on the loop and notes how late each wake-up was."""

    def __init__(self) -> None:
        self.lags: list[float] = []

    async def run(self, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                started = time.perf_counter()
                await anyio.sleep(0.01)
                self.lags.append(time.perf_counter() - started - 0.01)


@pytest.fixture
def writes_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread of every ``JobStore.write``."""
    threads: list[int] = []
    write = JobStore.write

    def noted(self, *args, **kwargs):
        threads.append(threading.get_ident())
        return write(self, *args, **kwargs)

    monkeypatch.setattr(JobStore, "write", noted)
    return threads


async def run_through_trouble(home: Path, trouble, writes: list[int], expect: str) -> None:
    """Run jobs while ``trouble()`` (an async context manager factory) holds; check that the
    trouble shows (its text has ``expect``), goes, and that no lifecycle row was lost and the
    loop never waited."""
    probe = LoopProbe()
    async with JobManager(home, tick=0.02, store_interval=0.05) as manager:
        loop_thread = threading.get_ident()
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()
            tg.start_soon(probe.run, scope)
            first = manager.dispatch(Steps(2, 0.001))
            await first
            await wait_until(lambda: first.id in stored_history(home), 5)
            handles = []
            async with trouble():
                for _ in range(20):
                    handles.append(manager.dispatch(Items(50, bad=(3,))))
                    await anyio.sleep(0.02)
                for handle in handles:
                    await handle
                await wait_until(lambda: manager.store_problem is not None, 10)
                problem = manager.store_problem
                # the record is served from memory meanwhile
                assert manager.record(handles[-1].id).state is JobState.COMPLETED
                assert [s.value for _, s, _ in manager.history(handles[0].id)] == LIFECYCLE
            await wait_until(lambda: manager.store_problem is None, 15)
            scope.cancel()
    assert str(home / "jobs" / "jobs.sqlite") in problem and "Nothing is lost" in problem
    assert expect in problem
    history = stored_history(home)
    for handle in [first, *handles]:
        assert history[handle.id] == LIFECYCLE
    assert writes and loop_thread not in writes  # no write ever ran (or waited) on the loop
    assert statistics.quantiles(probe.lags, n=100)[-1] <= 0.050
    assert max(probe.lags) < 1.0  # a wait for the lock would take the busy timeout (2 s)


HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


async def test_a_write_lock_held_elsewhere_for_10_s(
    ipyjobs_home: Path, writes_off_the_loop: list[int]
) -> None:
    @asynccontextmanager
    async def other_program_locks() -> AsyncIterator[None]:
        path = ipyjobs_home / "jobs" / "jobs.sqlite"
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(path), "10"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None
            assert await anyio.to_thread.run_sync(holder.stdout.readline) == "locked\n"
            yield
        finally:
            await anyio.to_thread.run_sync(holder.wait)

    await run_through_trouble(
        ipyjobs_home, other_program_locks, writes_off_the_loop, "another program holds a write lock"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
async def test_a_full_disk(tmp_path: Path, writes_off_the_loop: list[int]) -> None:
    disk = tmp_path / "small-disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], check=True)
    try:
        home = disk / "home"

        @asynccontextmanager
        async def disk_fills() -> AsyncIterator[None]:
            filler = disk / "filler"
            with open(filler, "wb") as out:
                try:
                    while True:
                        out.write(b"\0" * 65536)
                        out.flush()
                except OSError:
                    pass
            try:
                yield
            finally:
                filler.unlink()

        await run_through_trouble(home, disk_fills, writes_off_the_loop, "free space on the disk")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
async def test_a_corrupt_store_is_moved_aside(
    ipyjobs_home: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with JobManager(ipyjobs_home, store_interval=0.02) as manager:
        for _ in range(30):
            await manager.dispatch(Items(20))
    path = ipyjobs_home / "jobs" / "jobs.sqlite"
    if damage == "garbage":
        path.write_bytes(b"this is not a database\n" * 100)
    else:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    async with JobManager(ipyjobs_home, store_interval=0.02) as manager:
        handle = manager.dispatch(Steps(2, 0.001))
        await handle
        moved = manager.store.moved_aside
    assert moved is not None and moved.exists() and moved.name.startswith("jobs.sqlite.corrupt-")
    warning = next(r.getMessage() for r in caplog.records if "moved to" in r.getMessage())
    assert str(path) in warning and str(moved) in warning and "sqlite3" in warning
    assert stored_history(ipyjobs_home)[handle.id] == LIFECYCLE


def test_a_failed_start_releases_the_session_lock(ipyjobs_home: Path) -> None:
    (ipyjobs_home / "jobs" / "jobs.sqlite").mkdir(parents=True)  # cannot be opened at all
    with pytest.raises(sqlite3.OperationalError):
        JobStore(ipyjobs_home / "jobs", "a-session")
    assert list((ipyjobs_home / "jobs" / "sessions").iterdir()) == []


def test_a_relative_data_folder_is_resolved_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IPYJOBS_HOME", "relative-home")
    first = data_home()
    monkeypatch.chdir(tmp_path.parent)
    assert data_home() == first == tmp_path / "relative-home"
    assert first.is_absolute()
    store = JobStore(data_home() / "jobs", "s")
    try:
        assert store.path == tmp_path / "relative-home" / "jobs" / "jobs.sqlite"
    finally:
        store.close()


OPEN_AT_ONCE = """
import sys, time, uuid
from pathlib import Path
from ipyjobs.engine.store import JobStore

start = float(sys.argv[2])
while time.time() < start:
    pass
JobStore(Path(sys.argv[1]), uuid.uuid4().hex).close()
"""


def test_kernels_starting_together_on_a_new_store_all_open_it(tmp_path: Path) -> None:
    """Eight processes open one new store at the same instant (kernels of a notebook server
    started together), four times over: each one opens it; none is told "database is
    locked" (one round in three was, before the opening lock)."""
    for round_ in range(4):
        folder = tmp_path / f"jobs-{round_}"
        start = time.time() + 1.5  # after every interpreter has started
        command = [sys.executable, "-c", OPEN_AT_ONCE, str(folder), str(start)]
        processes = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(8)]
        errors = [p.communicate(timeout=60)[1] for p in processes]
        assert [p.returncode for p in processes] == [0] * 8, "\n".join(e for e in errors if e)
