"""The widgets in a real JupyterLab, clicked in a real Chromium; the kernel is asked what the
clicks did.

Each test writes a notebook into the server's root, opens it in a fresh workspace, runs all
cells, clicks widget buttons on the page, then checks both the page and the kernel: kernel-side
values are read by executing code in the notebook's own kernel through the page
(``kernel.requestExecute``), so a page that only looks right does not pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser.conftest import (
    DOCS_IMAGES,
    TEST_MODEL,
    TEST_MODEL_PATH,
    Lab,
    missing_requirements,
    row,
    save_screenshot,
    wait_for,
)
from tests.support.http_server import LoopbackServer

if (reason := missing_requirements()) is not None:
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Page, expect

from tests.browser.lab import job_row, kernel_print, open_and_run, wait_for_kernel, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

#: A parent job that spawns an owned child; both count slowly and check in at every step.
DEFINE_JOBS = """
import asyncio
from dataclasses import dataclass

import ipyjobs
from ipyjobs.widgets import JobsPanel


@dataclass
class Steps(ipyjobs.Job, kind="browser_test.steps"):
    name: str
    steps: int = 300
    delay: float = 0.1

    @property
    def title(self):
        return self.name

    async def run(self, ctx):
        for i in range(self.steps):
            await ctx.checkpoint()
            ctx.progress(i + 1, self.steps, item=f"step {i + 1}")
            await asyncio.sleep(self.delay)
        return self.steps


@dataclass
class Parent(Steps, kind="browser_test.parent"):
    async def run(self, ctx):
        child = ctx.spawn(Steps("child job", self.steps * 2, self.delay / 2))
        await super().run(ctx)
        return await child
"""


def percent(locator_text: str) -> int:
    match = re.search(r"(\d+)%", locator_text)
    return int(match.group(1)) if match else 0


def test_pause_resume_and_cancel_from_the_jobs_panel(page: Page, lab: Lab) -> None:
    name = write_notebook(
        lab.root,
        "jobs_panel.ipynb",
        [DEFINE_JOBS, "JobsPanel()", 'h = ipyjobs.jobs().dispatch(Parent("parent job"))'],
    )
    open_and_run(page, lab, name)
    parent, child = job_row(page, "parent job"), job_row(page, "child job")
    expect(parent).to_have_count(1, timeout=30_000)
    expect(child).to_have_count(1)
    expect(parent.locator(".ipyjobs-status")).to_have_text("running")
    states = "print(h.state.value, h.children[0].state.value)"
    wait_for_kernel(page, states, "running running")

    # Some progress first, for the README's picture of a working panel.
    wait_for(lambda: percent(parent.inner_text()) >= 8, 30, "the parent's progress to show")
    expect(parent.locator(".ipyjobs-speed")).to_contain_text("ETA")
    child.click()  # opens the job's details
    expect(page.locator(".ipyjobs-details")).to_contain_text("Timings")
    save_screenshot(page, DOCS_IMAGES / "jobs-panel.png", page.locator(".ipyjobs-panel"))

    parent.locator("button.ipyjobs-toggle[title^='Pause']").click()
    expect(parent.locator(".ipyjobs-status")).to_have_text("paused")
    expect(child.locator(".ipyjobs-status")).to_have_text("paused")
    wait_for_kernel(page, states, "paused paused")
    expect(parent.locator(".ipyjobs-speed")).to_have_text("")  # no rate or ETA while paused
    page.wait_for_timeout(400)  # the last progress sample before the pause lands
    done = kernel_print(page, "print(h.progress.done, h.children[0].progress.done)")
    page.wait_for_timeout(800)  # a paused job does not move
    assert kernel_print(page, "print(h.progress.done, h.children[0].progress.done)") == done

    parent.locator("button.ipyjobs-toggle[title='Resume']").click()
    expect(parent.locator(".ipyjobs-status")).to_have_text("running")
    wait_for_kernel(page, states, "running running")

    parent.locator("button.ipyjobs-cancel").click()
    expect(parent.locator(".ipyjobs-status")).to_have_text("cancelled")
    expect(child.locator(".ipyjobs-status")).to_have_text("cancelled")
    wait_for_kernel(page, states, "cancelled cancelled")
    # an ended job's row keeps its title and bar; its controls are gone
    expect(parent.locator("button.ipyjobs-cancel")).to_be_hidden()
    expect(parent.locator("button.ipyjobs-toggle")).to_be_hidden()


def test_download_a_model_from_the_model_manager(
    page: Page, lab: Lab, model_mirror: LoopbackServer, whisper_checkpoint: Path
) -> None:
    name = write_notebook(
        lab.root,
        "model_manager.ipynb",
        [
            "import ipyjobs\nfrom ipyjobs.models import ModelStore\n"
            "from ipyjobs.widgets import ModelManager",
            "ModelManager()",
        ],
    )
    open_and_run(page, lab, name)
    model = row(page, TEST_MODEL)
    expect(model).to_have_count(1, timeout=30_000)
    expect(model).to_contain_text("missing")
    status = f'print(ModelStore.at(ipyjobs.jobs().home).info("{TEST_MODEL}").status)'
    assert kernel_print(page, status) == "missing"

    model.locator("button.widget-button", has_text="Download").click()
    try:
        expect(model).to_contain_text("ready", timeout=60_000)
    except AssertionError as exc:
        jobs = kernel_print(page, "print(*ipyjobs.jobs().handles, sep='\\n')")
        requests = model_mirror.requests(TEST_MODEL_PATH)
        sent = model_mirror.bytes_sent(TEST_MODEL_PATH)
        raise AssertionError(
            f"{exc}\nkernel: {kernel_print(page, status)}; jobs:\n{jobs}\n"
            f"mirror: {sent} bytes sent; requests: {requests}"
        ) from None
    wait_for_kernel(page, status, "ready", timeout=30)
    expect(model.locator("button.widget-button", has_text="Verify")).to_be_visible()
    expect(model.locator("button.widget-button", has_text="Delete")).to_be_visible()
    assert model_mirror.bytes_sent(TEST_MODEL_PATH) == whisper_checkpoint.stat().st_size
    save_screenshot(page, DOCS_IMAGES / "model-manager.png", page.locator(".ipyjobs-models"))
