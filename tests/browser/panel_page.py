"""The jobs panel in a page, for the browser tests and bench/panel.py: jobs to dispatch by the
thousand, what the page must show, and counters of comm messages and lost widget models."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import Page

from tests.browser.lab import kernel_print

#: Jobs that count slowly; at most 20 run at once, the others wait in the queue.
DEFINE = """
import asyncio
from dataclasses import dataclass

import ipyjobs
from ipywidgets.widgets.widget import _instances
from ipyjobs.widgets import JobsPanel, ticker


@dataclass
class Wait(ipyjobs.Job, kind="browser_panel.wait"):
    group = "browser_panel"
    name: str
    steps: int = 1200

    @property
    def title(self):
        return self.name

    async def run(self, ctx):
        for i in range(self.steps):
            await ctx.checkpoint()
            ctx.progress(i + 1, self.steps, item=f"step {i + 1}")
            await asyncio.sleep(0.1)


def open_panels():
    return sum(isinstance(w, JobsPanel) for w in list(_instances.values()))


jobs = ipyjobs.jobs()
jobs.set_limit("browser_panel", 20)
"""

DISPATCH = """
hs = [
    jobs.dispatch(Wait(f"job {i:04d}" + ("" if i % 7 else " with a much longer title")))
    for i in range(JOBS)
]
print(len(hs))
"""

ROW_HEIGHT = 28  # px, as panel.js draws rows
BAR_XS = """
() => [...document.querySelectorAll('.ipyjobs-panel .ipyjobs-row .ipyjobs-bar')]
  .map((bar) => Math.round(bar.getBoundingClientRect().x * 2) / 2)
"""
PANEL_SHOWS = """
(jobs) => {
  const panel = document.querySelector('.ipyjobs-panel');
  if (!panel) return false;
  const summary = panel.querySelector('.ipyjobs-summary');
  const spacer = panel.querySelector('.ipyjobs-spacer');
  return Boolean(summary && summary.textContent.startsWith(`${jobs} jobs`) && spacer &&
    spacer.style.height === `${jobs * 28}px` && panel.querySelector('.ipyjobs-row .ipyjobs-bar'));
}
"""


class CommCounter:
    """Counts the kernel's comm messages reaching the page (websocket frames)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.frames = 0
        page.on("websocket", self._watch)

    def _watch(self, socket: Any) -> None:
        def received(payload: str | bytes) -> None:
            data = payload if isinstance(payload, bytes) else payload.encode()
            if b'"comm_msg"' in data:
                self.frames += 1

        socket.on("framereceived", received)

    def rate(self, seconds: float) -> float:
        """Messages per second over the next ``seconds`` (Playwright delivers the frames
        while it waits, so this waits through the page, never with a plain sleep)."""
        before, started = self.frames, time.monotonic()
        self.page.wait_for_timeout(seconds * 1000)
        return (self.frames - before) / (time.monotonic() - started)


def watch_console(page: Page) -> list[str]:
    lines: list[str] = []
    page.on("console", lambda msg: lines.append(msg.text))
    page.on("pageerror", lambda error: lines.append(str(error)))
    return lines


def lost_models(console: list[str]) -> list[str]:
    return [line for line in console if "not found" in line.lower() and "model" in line.lower()]


def dispatch_and_time(page: Page, jobs: int) -> float:
    """Seconds from sending the dispatching cell to the page showing every job."""
    started = time.monotonic()
    assert kernel_print(page, f"JOBS = {jobs}\n{DISPATCH}") == str(jobs)
    page.wait_for_function(PANEL_SHOWS, arg=jobs, timeout=60_000, polling="raf")
    return time.monotonic() - started
