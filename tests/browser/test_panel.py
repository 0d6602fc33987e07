"""The jobs panel at scale, in a real JupyterLab and Notebook 7 page in Chromium.

5,000 jobs dispatched from one cell must show within 2 s with no widget model lost; clicks on
rows must reach the kernel (asked through the page's own kernel connection); the bars of all
rows must start at the same x (measured from the DOM); a reload must show the live jobs again;
displaying the panel again and again must leave one panel (one refresh stream), and a panel
no longer displayed must be closed.
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import Lab, missing_requirements

if (reason := missing_requirements()) is not None:
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Page, expect

from tests.browser.lab import (
    KERNEL_READY,
    job_row,
    kernel_print,
    open_and_run,
    wait_for_kernel,
    write_notebook,
)
from tests.browser.panel_page import (
    BAR_XS,
    DEFINE,
    PANEL_SHOWS,
    ROW_HEIGHT,
    CommCounter,
    dispatch_and_time,
    lost_models,
    watch_console,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


def test_5000_jobs_show_at_once_clicks_reach_the_kernel_and_bars_line_up(
    page: Page, lab: Lab
) -> None:
    console = watch_console(page)
    comms = CommCounter(page)
    name = write_notebook(lab.root, "panel_5000.ipynb", [DEFINE, "JobsPanel()"])
    open_and_run(page, lab, name)
    expect(page.locator(".ipyjobs-panel")).to_contain_text("No jobs yet", timeout=30_000)

    took = dispatch_and_time(page, 5000)
    assert took <= 2.0, f"5,000 jobs took {took:.2f} s to show"
    assert lost_models(console) == []
    drawn = page.locator(".ipyjobs-panel .ipyjobs-row").count()
    assert 0 < drawn < 100, f"{drawn} rows in the DOM: only those in view should be"

    # bars line up, whatever the title, and stay put as figures change and rows scroll
    xs = page.evaluate(BAR_XS)
    assert len(xs) == drawn and len(set(xs)) == 1, xs
    page.wait_for_timeout(1500)
    assert set(page.evaluate(BAR_XS)) == set(xs)
    page.locator(".ipyjobs-list").evaluate(f"(el) => {{ el.scrollTop = {2500 * ROW_HEIGHT}; }}")
    expect(job_row(page, "job 2500")).to_be_visible()
    assert set(page.evaluate(BAR_XS)) == set(xs)

    rate = comms.rate(3.0)
    assert rate <= 100, f"{rate:.0f} comm messages/s with 5,000 jobs"

    # a queued job deep in the list: cancel it
    job_row(page, "job 2500").locator("button.ipyjobs-cancel").click()
    wait_for_kernel(page, "print(hs[2500].state.value)", "cancelled")
    expect(job_row(page, "job 2500").locator(".ipyjobs-status")).to_have_text("cancelled")

    # a running job at the top: pause, resume, cancel
    page.locator(".ipyjobs-list").evaluate("(el) => { el.scrollTop = 0; }")
    first = job_row(page, "job 0000")
    expect(first.locator(".ipyjobs-status")).to_have_text("running")
    first.locator("button.ipyjobs-toggle[title^='Pause']").click()
    wait_for_kernel(page, "print(hs[0].state.value)", "paused")
    expect(first.locator(".ipyjobs-status")).to_have_text("paused")
    first.locator("button.ipyjobs-toggle[title='Resume']").click()
    wait_for_kernel(page, "print(hs[0].state.value)", "running")
    first.locator("button.ipyjobs-cancel").click()
    wait_for_kernel(page, "print(hs[0].state.value)", "cancelled")

    # a reload of the page shows the live jobs again (from the kernel, not from the file)
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_timeout(500)
    page.reload()
    page.wait_for_function(KERNEL_READY, arg=name, timeout=60_000, polling=100)
    page.wait_for_function(PANEL_SHOWS, arg=5000, timeout=30_000)
    expect(job_row(page, "job 0000").locator(".ipyjobs-status")).to_have_text("cancelled")
    expect(job_row(page, "job 0001").locator(".ipyjobs-status")).to_have_text("running")
    assert lost_models(console) == []
    kernel_print(page, "for h in hs: h.cancel()")


def test_displaying_again_leaves_one_panel_and_a_hidden_panel_is_closed(
    page: Page, lab: Lab
) -> None:
    name = write_notebook(
        lab.root, "panel_again.ipynb", [DEFINE, "JobsPanel()", 'h = jobs.dispatch(Wait("solo"))']
    )
    open_and_run(page, lab, name)
    expect(job_row(page, "solo").locator(".ipyjobs-status")).to_have_text("running", timeout=30_000)
    for _ in range(5):  # run the panel's cell again, five times
        page.evaluate(
            """async () => {
              const panel = window.jupyterapp.shell.currentWidget;
              panel.content.activeCellIndex = 1;
              await window.jupyterapp.commands.execute('notebook:run-cell');
            }"""
        )
    expect(page.locator(".ipyjobs-panel")).to_have_count(1)
    expect(job_row(page, "solo")).to_have_count(1)
    count = "print(open_panels(), len(ticker.ticker()._views))"
    wait_for_kernel(page, count, "1 1")

    # no view left: the panel is closed within CLOSE_AFTER (5 s), and so is its refresh
    page.evaluate(
        """async () => {
          const panel = window.jupyterapp.shell.currentWidget;
          panel.content.activeCellIndex = 1;
          await window.jupyterapp.commands.execute('notebook:clear-cell-output');
        }"""
    )
    expect(page.locator(".ipyjobs-panel")).to_have_count(0)
    wait_for_kernel(page, count, "0 0", timeout=20)
    kernel_print(page, "h.cancel()")


def test_the_panel_in_notebook_7_cancels_a_job(page: Page, lab: Lab) -> None:
    name = write_notebook(
        lab.root, "panel_nb7.ipynb", [DEFINE, "JobsPanel()", 'h = jobs.dispatch(Wait("in nb7"))']
    )
    open_and_run(page, lab, name, url=f"{lab.url}/notebooks/{name}")
    row = job_row(page, "in nb7")
    expect(row.locator(".ipyjobs-status")).to_have_text("running", timeout=30_000)
    row.locator("button.ipyjobs-cancel").click()
    wait_for_kernel(page, "print(h.state.value)", "cancelled")
    expect(row.locator(".ipyjobs-status")).to_have_text("cancelled")
