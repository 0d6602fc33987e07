"""The jobs panel in a real JupyterLab + Debian Chromium, with 5,000 jobs from one cell.

- first_render_s: from sending the cell that dispatches 5,000 jobs to the page showing all of
  them (summary, full-height list, drawn rows), panel already displayed.
- click_to_state_s: median over 6 clicks (pause, resume alternately) on a running row, from the
  click to the row showing the state the kernel set (a full round trip).
- msgs_per_s: comm messages reaching the page per second in steady state (5 s, 20 running).
- lost_models: "model not found" errors in the page.

Prints human lines, then ``{"jobs": 5000, "first_render_s": F, "click_to_state_s": C,
"msgs_per_s": M, "lost_models": L}``. Goals: F <= 2.0, C <= 0.5, M <= 100, L = 0.
Needs /usr/bin/chromium and the playwright package (never ``playwright install``).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser.conftest import jupyter_env, lab_server, launch_chromium, missing_requirements

JOBS = 5000
CLICKS = 6

#: Clicks the toggle of the row titled ``title`` and resolves, in seconds, when the row shows
#: a status other than the one it had (the kernel's answer).
CLICK_AND_WAIT = """
async (title) => {
  const row = [...document.querySelectorAll('.ipyjobs-row')]
    .find((r) => r.querySelector('.ipyjobs-name').textContent.startsWith(title));
  const before = row.dataset.status;
  const started = performance.now();
  row.querySelector('.ipyjobs-toggle').click();
  while (row.dataset.status === before) await new Promise((r) => requestAnimationFrame(r));
  return (performance.now() - started) / 1000;
}
"""


def main() -> None:
    reason = missing_requirements()
    if reason is not None:
        sys.exit(f"bench/panel.py cannot run: {reason}")
    from playwright.sync_api import sync_playwright

    from tests.browser.lab import kernel_print, open_and_run, write_notebook
    from tests.browser.panel_page import (
        DEFINE,
        CommCounter,
        dispatch_and_time,
        lost_models,
        watch_console,
    )

    with tempfile.TemporaryDirectory() as temp:
        base = Path(temp)
        (base / "root").mkdir()
        env = jupyter_env(base / "jupyter", base / "home")
        with lab_server(base / "root", env) as lab, sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
            page.set_default_timeout(60_000)
            console = watch_console(page)
            comms = CommCounter(page)
            name = write_notebook(lab.root, "bench.ipynb", [DEFINE, "JobsPanel()"])
            open_and_run(page, lab, name)
            page.locator(".ipyjobs-panel .ipyjobs-empty").wait_for()
            first_render = dispatch_and_time(page, JOBS)
            page.wait_for_timeout(1000)
            clicks = [page.evaluate(CLICK_AND_WAIT, "job 0003") for _ in range(CLICKS)]
            rate = comms.rate(5.0)
            kernel_print(page, "for h in hs: h.cancel()")
            browser.close()
    figures = {
        "jobs": JOBS,
        "first_render_s": round(first_render, 3),
        "click_to_state_s": round(statistics.median(clicks), 3),
        "msgs_per_s": round(rate, 1),
        "lost_models": len(lost_models(console)),
    }
    print(f"{JOBS} jobs shown {first_render:.2f} s after their cell was sent")
    print("click to state, s: " + ", ".join(f"{c:.3f}" for c in clicks))
    print(f"{rate:.1f} comm messages/s in steady state; lost models: {figures['lost_models']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
