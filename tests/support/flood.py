"""A progress flood: many jobs reporting as fast as they can, for the widget budget."""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio

from ipyjobs import Job, JobContext, JobManager
from ipyjobs.widgets import JobsPanel
from tests.support.recording_comm import recording_comms

JOBS = 100
UPDATES = 10_000


@dataclass
class Flood(Job, kind="test.flood"):
    updates: int = UPDATES

    async def run(self, ctx: JobContext) -> int:
        for i in range(self.updates):
            ctx.progress(i + 1, self.updates)
            if i % 500 == 0:
                await anyio.sleep(0.05)
        return self.updates


async def flood_panel(manager: JobManager, jobs: int = JOBS) -> tuple[float, bool, JobsPanel]:
    """Run the flood under a panel; return (update messages per second, final values exact,
    panel). Counting starts once the rows exist and ends when the panel sent the endings."""
    with recording_comms() as recorder:
        panel = JobsPanel(manager)
        handles = [manager.dispatch(Flood()) for _ in range(jobs)]
        await anyio.sleep(0.3)
        since = time.monotonic()
        for handle in handles:
            await handle
        with anyio.fail_after(60):
            while not panel.in_sync:
                await anyio.sleep(0.05)
        rate = recorder.updates(since) / (time.monotonic() - since)
    rows = [panel._feed._rows.get(handle.id) for handle in handles]
    final = f"{UPDATES:,} items / {UPDATES:,} items"
    exact = all(row is not None and row[2] == 1.0 and final in row[3] for row in rows)
    return rate, exact, panel
