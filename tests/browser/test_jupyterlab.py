"""The widgets in a real JupyterLab, clicked in a real Chromium; the kernel is asked what the
clicks did.

Each test writes a notebook into the server's root, opens it in a fresh workspace, runs all
cells, clicks widget buttons on the page, then checks both the page and the kernel: kernel-side
values are read by executing code in the notebook's own kernel through the page
(``kernel.requestExecute``), so a page that only looks right does not pass.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import httpx
import nbformat
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

#: True once the current tab is the notebook, connected to an idle kernel, with kernel specs.
KERNEL_READY = """
(path) => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.context || panel.context.path !== path || !panel.context.isReady) {
    return false;
  }
  const session = panel.sessionContext;
  const kernel = session.session && session.session.kernel;
  return Boolean(
    session.isReady && session.specsManager.specs && !session.hasNoKernel && kernel &&
    kernel.connectionStatus === "connected" && kernel.status === "idle"
  );
}
"""

#: Runs in the kernel through the page; resolves to what the code printed (and any error).
KERNEL_EXECUTE = """
async (code) => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session.kernel;
  const future = kernel.requestExecute({ code, silent: false, store_history: false });
  let out = "";
  future.onIOPub = (msg) => {
    const content = msg.content;
    if (msg.header.msg_type === "stream") out += content.text;
    if (msg.header.msg_type === "error") out += `${content.ename}: ${content.evalue}\\n`;
  };
  try { await future.done; } catch (error) { out += `request failed: ${error}\\n`; }
  return out;
}
"""


def write_notebook(root: Path, name: str, cells: list[str]) -> str:
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(textwrap.dedent(code).strip()) for code in cells],
        metadata={
            "kernelspec": {
                "name": "python3",
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            },
            "language_info": {"name": "python"},
        },
    )
    nbformat.write(notebook, root / name)
    return name


def open_and_run(page: Page, lab: Lab, name: str) -> None:
    """Start the notebook's kernel, open the notebook, wait until it is connected to that
    kernel, and run all cells.

    The session is made through the REST API first, so JupyterLab connects to it rather than
    choosing a kernel itself (which it may try before it has the kernel specs, and then ask
    with a "Select Kernel" dialog). The toolbar's execution indicator says "idle" before the
    kernel is connected, so readiness is read from the session context instead: running cells
    before that makes JupyterLab start (or ask for) another kernel.
    """
    session = {"path": name, "type": "notebook", "name": name, "kernel": {"name": "python3"}}
    httpx.post(f"{lab.url}/api/sessions", json=session, timeout=30).raise_for_status()
    page.goto(lab.notebook_url(name))
    page.wait_for_function(KERNEL_READY, arg=name, timeout=60_000, polling=100)
    page.evaluate("window.jupyterapp.shell.collapseLeft()")  # room for the widgets
    # not awaited: the command's promise ends only when every cell has run
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def kernel_print(page: Page, code: str) -> str:
    """What ``code`` prints when run in the notebook's kernel (stripped)."""
    return page.evaluate(KERNEL_EXECUTE, textwrap.dedent(code)).strip()


def wait_for_kernel(page: Page, code: str, expected: str, timeout: float = 15) -> None:
    """Poll the kernel until ``code`` prints ``expected``."""
    seen: list[str] = []

    def check() -> bool:
        seen.append(kernel_print(page, code))
        return seen[-1] == expected

    try:
        wait_for(check, timeout, f"the kernel to print {expected!r}", interval=0.3)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it printed {seen[-1]!r} last") from None


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
    parent, child = row(page, "parent job"), row(page, "child job")
    expect(parent).to_have_count(1, timeout=30_000)
    expect(child).to_have_count(1)
    expect(parent).to_contain_text("running")
    states = "print(h.state.value, h.children[0].state.value)"
    wait_for_kernel(page, states, "running running")

    # Some progress first, for the README's picture of a working panel.
    wait_for(lambda: percent(parent.inner_text()) >= 8, 30, "the parent's progress to show")
    expect(parent.locator(".widget-hprogress .progress-bar")).to_be_visible()
    save_screenshot(page, DOCS_IMAGES / "jobs-panel.png", page.locator(".ipyjobs-panel"))

    parent.locator("button.widget-button", has_text="Pause").click()
    expect(parent).to_contain_text("paused")
    expect(child).to_contain_text("paused")
    wait_for_kernel(page, states, "paused paused")
    page.wait_for_timeout(400)  # the last progress sample before the pause lands
    done = kernel_print(page, "print(h.progress.done, h.children[0].progress.done)")
    page.wait_for_timeout(800)  # a paused job does not move
    assert kernel_print(page, "print(h.progress.done, h.children[0].progress.done)") == done
    expect(parent.locator("button.widget-button", has_text="Pause")).to_be_disabled()

    parent.locator("button.widget-button", has_text="Resume").click()
    expect(parent).to_contain_text("running")
    wait_for_kernel(page, states, "running running")

    parent.locator("button.widget-button", has_text="Cancel").click()
    expect(parent).to_contain_text("cancelled")
    expect(child).to_contain_text("cancelled")
    wait_for_kernel(page, states, "cancelled cancelled")
    # an ended job's row keeps its label and bar, and loses its buttons
    expect(parent.locator("button.widget-button")).to_have_count(0)


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
