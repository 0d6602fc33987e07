"""The jobs panel with real engine jobs, without a browser.

What the panel sends is captured with a recording comm and applied to a small stand-in for the
front end (``FrontEnd``: the same full/diff rules as panel.js), so the tests check what a page
would show, not the panel's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from ipyjobs import Job, JobContext, JobManager, JobState
from ipyjobs.widgets import JobsPanel, jobs_panel
from ipyjobs.widgets.rowdata import CAN_CANCEL, CAN_PAUSE, CAN_RESTART, CAN_RESUME
from tests.engine.jobs import Items, Resumable, Shared, Steps, WaitFor
from tests.engine.test_states import wait_until
from tests.support.flood import flood_panel
from tests.support.recording_comm import Recorder, recording_comms

pytestmark = pytest.mark.anyio

TITLE, STATUS, FRACTION, FIGURES, SPEED, ITEM, WAITERS, FLAGS, ERRORS = range(9)


class FrontEnd:
    """Applies the panel's custom messages as panel.js does."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.seen = 0
        self.order: list[list[Any]] = []
        self.rows: dict[str, list[Any]] = {}
        self.details: dict | None = None
        self.history: list = []
        self.ready = False

    def update(self) -> FrontEnd:
        messages = self.recorder.messages[self.seen :]
        self.seen = len(self.recorder.messages)
        for _, kind, data in messages:
            if kind != "comm_msg" or data.get("method") != "custom":
                continue
            msg = data["content"]
            if msg["t"] == "full":
                self.order, self.rows, self.ready = msg["order"], dict(msg["rows"]), True
            elif msg["t"] == "diff" and self.ready:
                if "order" in msg:
                    self.order = msg["order"]
                    self.rows = {k: v for k, v in self.rows.items() if [k] in
                                 [[e[0]] for e in self.order]}  # fmt: skip
                self.rows.update(msg.get("rows", {}))
            elif msg["t"] == "details":
                self.details = msg["d"]
            elif msg["t"] == "history":
                self.history = msg["rows"]
        return self

    def row(self, job_id: str) -> list[Any]:
        """The row as shown (empty fields while the job has none yet)."""
        return self.update().rows.get(job_id, [""] * 9)


@pytest.fixture
async def shown(manager: JobManager) -> Any:
    """A panel and the front end of one view of it (which said hello)."""
    with recording_comms() as recorder:
        panel = JobsPanel(manager)
        panel.handle({"t": "hello"})
        yield panel, FrontEnd(recorder).update()
    panel.close()


async def settle(panel: JobsPanel) -> None:
    await wait_until(lambda: panel.in_sync)


@dataclass
class Report(Job, kind="test_panel.report"):
    """Reports ``done`` of ``total`` once, then counts on slowly until cancelled."""

    done: int = 1
    total: int = 10
    step: float = 0.0

    async def run(self, ctx: JobContext) -> None:
        done = float(self.done)
        while True:
            ctx.progress(min(done, self.total), self.total)
            await ctx.checkpoint()
            await anyio.sleep(0.02)
            done += self.step


@dataclass
class Holder(Job, kind="test_panel.holder"):
    """A parent with no progress of its own: its children's shows."""

    children: tuple[tuple[int, int, float], ...] = ((1, 10, 0.0), (30, 40, 0.0))

    async def run(self, ctx: JobContext) -> None:
        for handle in [ctx.spawn(Report(*spec)) for spec in self.children]:
            await handle


async def test_one_row_per_job_and_a_shared_job_once_with_its_waiters(
    manager: JobManager, shown: Any
) -> None:
    panel, view = shown
    waiters = [manager.dispatch(WaitFor(Shared("model", n=20, delay=0.5))) for _ in range(3)]
    await wait_until(lambda: waiters[0].children and waiters[0].children[0].waiters == 3)
    shared = waiters[0].children[0]
    await settle(panel)
    view.update()
    ids = [entry[0] for entry in view.order]
    assert ids.count(shared.id) == 1 and len(ids) == 4  # three waiters, the shared job once
    assert [d for i, d in view.order if i == shared.id] == [1]
    assert view.row(shared.id)[WAITERS] == 3
    shared.cancel()
    for waiter in waiters:
        await waiter.join()
    text = repr(panel)
    data, _ = panel._repr_mimebundle_()
    assert text.startswith("JobsPanel:\n") and data["text/plain"] == text


async def test_a_parent_shows_its_childrens_combined_progress(
    manager: JobManager, shown: Any
) -> None:
    panel, view = shown
    parent = manager.dispatch(Holder())
    await wait_until(lambda: len(parent.children) == 2 and all(
        c.progress.total for c in parent.children))  # fmt: skip
    await settle(panel)
    row = view.row(parent.id)
    assert row[FRACTION] == pytest.approx(31 / 50)  # 1/10 and 30/40, weighted by totals
    assert row[FIGURES] == "62% of its children"
    parent.cancel()
    await parent.join()


async def test_a_parent_has_an_eta_while_running_and_none_when_paused(
    manager: JobManager, shown: Any
) -> None:
    panel, view = shown
    parent = manager.dispatch(Holder(children=((0, 400, 1.0), (0, 400, 1.0))))
    await wait_until(lambda: "ETA" in view.row(parent.id)[SPEED], timeout=10)
    assert 0 < view.row(parent.id)[FRACTION] < 1
    parent.pause()
    await wait_until(lambda: parent.state is JobState.PAUSED)
    await settle(panel)
    assert view.row(parent.id)[SPEED] == ""
    assert all(view.row(c.id)[SPEED] == "" for c in parent.children)
    parent.cancel()
    await parent.join()


async def test_rate_and_eta_only_while_running(manager: JobManager, shown: Any) -> None:
    panel, view = shown
    handle = manager.dispatch(Steps(2000, 0.005, name="long job"))
    await wait_until(lambda: "ETA" in view.row(handle.id)[SPEED], timeout=10)
    assert "/s" in view.row(handle.id)[SPEED]
    assert view.row(handle.id)[FLAGS] == CAN_PAUSE | CAN_CANCEL
    panel.handle({"t": "pause", "id": handle.id})
    await wait_until(lambda: handle.state is JobState.PAUSED)
    await settle(panel)
    assert view.row(handle.id)[SPEED] == "" and view.row(handle.id)[STATUS] == "paused"
    assert view.row(handle.id)[FLAGS] == CAN_RESUME | CAN_CANCEL
    panel.handle({"t": "resume", "id": handle.id})
    await wait_until(lambda: "ETA" in view.row(handle.id)[SPEED], timeout=10)
    panel.handle({"t": "cancel", "id": handle.id})
    assert handle.status == "cancelling"
    await handle.join()
    await settle(panel)
    row = view.row(handle.id)
    assert row[STATUS] == "cancelled" and row[SPEED] == "" and row[FLAGS] == 0


async def test_a_job_opens_to_its_log_errors_output_timings_and_warnings(
    manager: JobManager, shown: Any
) -> None:
    panel, view = shown
    handle = manager.dispatch(Items(n=20, bad=(3, 4)))
    await handle
    stored = manager.store.history
    await wait_until(lambda: JobState.COMPLETED in [state for _, state, _ in stored(handle.id)])
    warnings = getattr(handle, "warnings", None)
    if warnings is None:  # before the engine keeps warnings on the handle
        handle.warnings = warnings = []  # type: ignore[attr-defined]
    warnings.append("2 items failed: see the item errors")
    panel.handle({"t": "open", "id": handle.id})
    details = view.update().details
    assert details is not None and details["id"] == handle.id
    assert details["error_count"] == 2 and details["item_errors"][0][0] == "item-3.wav"
    assert details["item_errors"][0][1]  # why it failed
    assert "2 items failed: see the item errors" in details["warnings"]
    assert details["output"] == [str(handle.output)]
    assert any("completed" in line for line in details["timings"])
    assert details["timings"][-1].startswith("active ")
    assert view.row(handle.id)[ERRORS] == 2
    panel.handle({"t": "open", "id": ""})
    assert panel.selected == ""


async def test_history_and_resume_of_interrupted_jobs(ipyjobs_home: Path, tmp_path: Path) -> None:
    counted = tmp_path / "steps.log"
    async with JobManager(ipyjobs_home, tick=0.02, store_interval=0.05) as first:
        handle = first.dispatch(Resumable(n=60, delay=0.02, log_path=str(counted)))
        await wait_until(lambda: handle.progress.done >= 10)
    # the manager closed with the job running: interrupted, and the store knows it
    before = counted.read_text().split()
    async with JobManager(ipyjobs_home, tick=0.02, store_interval=0.05) as second:
        with recording_comms() as recorder:
            panel = JobsPanel(second)
            view = FrontEnd(recorder)
            assert panel.interrupted == 1
            panel.show_history = True
            panel.history_state = "interrupted"
            panel.refresh()
            [[job_id, row]] = view.update().history
            assert job_id == handle.id and row[STATUS] == "interrupted"
            assert row[FLAGS] == CAN_RESTART
            panel.handle({"t": "resume_all"})
            assert panel.notice == "Resumed 1 interrupted job."
            resumed = second.get(handle.id)
            assert await resumed == 60
            await wait_until(lambda: panel.interrupted == 0 or panel.refresh(), timeout=5)
            panel.close()
    steps = counted.read_text().split()
    assert len(before) >= 10 and len(steps) <= 60 + 1  # only the rest ran (and at most
    # the one step whose checkpoint the interruption beat)
    assert sorted(set(steps), key=int) == [str(i) for i in range(60)]


async def test_one_panel_per_manager_and_closed_once_no_view_shows_it(
    manager: JobManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    panel = JobsPanel(manager)
    assert JobsPanel(manager) is panel  # displayed again: the same model, one stream
    panel._view_count = 1  # the front end counts its views
    panel._view_count = 0
    monkeypatch.setattr(jobs_panel, "CLOSE_AFTER", 0.0)
    await anyio.sleep(0.01)
    panel.refresh()
    assert panel.comm is None  # closed
    again = JobsPanel(manager)
    assert again is not panel and again.comm is not None
    again.close()


async def test_a_flood_stays_within_the_message_budget(manager: JobManager) -> None:
    rate, exact, panel = await flood_panel(manager)
    panel.close()
    assert rate <= 100, f"{rate:.0f} messages/s"
    assert exact  # every row shows its job's final values


async def test_the_header_shows_the_stores_trouble_until_it_recovers_and_where_work_runs(
    manager: JobManager, shown: Any
) -> None:
    import sqlite3

    panel, _ = shown
    assert panel.trouble == "" and panel.dashboard == ""
    assert panel.where == manager.executor.where != ""
    assert manager.store is not None
    other = sqlite3.connect(manager.store.path, isolation_level=None, timeout=0.1)
    other.execute("BEGIN EXCLUSIVE")  # another program holds the store's write lock
    try:
        job = manager.dispatch(Report(step=1.0))
        await wait_until(lambda: panel.trouble != "", timeout=30)
        assert panel.trouble == manager.store_problem
        assert str(manager.store.path.name) in panel.trouble or "lock" in panel.trouble
    finally:
        other.execute("ROLLBACK")
        other.close()
    await wait_until(lambda: panel.trouble == "", timeout=30)
    job.cancel()
    await job.join()
