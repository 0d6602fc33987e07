"""Driving a notebook in a real JupyterLab (or Notebook 7) page: write it, open it, run it, and
ask its kernel what happened (code executed through the page's own kernel connection)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import nbformat
from playwright.sync_api import Locator, Page

from tests.browser.conftest import Lab, wait_for

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


def open_and_run(page: Page, lab: Lab, name: str, url: str | None = None) -> None:
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
    page.goto(url or lab.notebook_url(name))
    page.wait_for_function(KERNEL_READY, arg=name, timeout=60_000, polling=100)
    page.evaluate("window.jupyterapp.shell.collapseLeft && window.jupyterapp.shell.collapseLeft()")
    run_all(page)


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


def job_row(page: Page, title: str) -> Locator:
    """The jobs panel's row of the job whose title contains ``title``."""
    return page.locator(".ipyjobs-row").filter(has=page.locator(".ipyjobs-name", has_text=title))


def run_all(page: Page) -> None:
    """Run every cell (not awaited: the command ends only when every cell has run)."""
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
