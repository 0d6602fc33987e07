"""The jobs panel with real engine jobs, without a browser."""

from __future__ import annotations

import pytest

from ipyjobs import JobManager, JobState
from ipyjobs.widgets import JobsPanel
from tests.engine.jobs import Items, Parent, Shared, Steps, WaitFor
from tests.engine.test_states import wait_until
from tests.support.flood import flood_panel

pytestmark = pytest.mark.anyio


async def test_rows_follow_the_tree(manager: JobManager) -> None:
    panel = JobsPanel(manager)
    parent = manager.dispatch(Parent(children=2, n=5))
    waiters = [manager.dispatch(WaitFor(Shared("model", n=5))) for _ in range(2)]
    await parent
    for waiter in waiters:
        await waiter
    await wait_until(lambda: panel.in_sync)
    labels = [row.children[0].children[0].value for row in panel._list.children]
    assert len(labels) == 1 + 2 + 2 * 2  # parent, its children, each waiter and its download
    assert "padding-left:1.5em" in labels[1] and "└─" in labels[1]
    assert all("completed" in label for label in labels)
    text = repr(panel)
    assert "test.parent [completed]" in text and "  └─ child 0 [completed]" in text
    assert panel._repr_mimebundle_()["text/plain"] == text


async def test_buttons_pause_resume_and_cancel_the_job(manager: JobManager) -> None:
    panel = JobsPanel(manager)
    handle = manager.dispatch(Steps(1000, 0.01, name="long job"))
    await wait_until(lambda: handle.state is JobState.RUNNING and panel.in_sync)
    [row] = panel._rows.values()
    assert not row.pause.disabled and row.resume.disabled and not row.cancel.disabled
    row.pause.click()
    await wait_until(lambda: handle.state is JobState.PAUSED and panel.in_sync)
    assert row.pause.disabled and not row.resume.disabled
    assert "paused" in row.label.value
    row.resume.click()
    await wait_until(lambda: handle.state is JobState.RUNNING)
    row.cancel.click()
    assert handle.status == "cancelling"
    await handle.join()
    await wait_until(lambda: panel.in_sync)
    assert handle.state is JobState.CANCELLED
    assert "cancelled" in row.label.value and row.line.children == (row.label, row.bar)


async def test_errors_and_finished_rows_and_clear(manager: JobManager) -> None:
    panel = JobsPanel(manager)
    handle = manager.dispatch(Items(n=50, bad=(3, 4)))
    await handle
    await wait_until(lambda: panel.in_sync)
    [row] = panel._rows.values()
    assert "2 item errors" in row.details.value and "item-3.wav" in row.details.value
    assert row.bar.value == 1.0 and row.bar.bar_style == "success"
    closed = row.widgets
    assert panel.clear_finished() == 1
    assert panel._rows == {} and all(w.comm is None for w in closed)  # widgets closed
    assert "No jobs yet" in panel._list.children[0].value


async def test_a_flood_stays_within_the_message_budget(manager: JobManager) -> None:
    rate, exact, _ = await flood_panel(manager)
    assert rate <= 100, f"{rate:.0f} messages/s"
    assert exact  # every row shows its job's final values
