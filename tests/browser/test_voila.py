"""The Voila app (``notebooks/app.ipynb``) in a real Chromium: fill in the OCR form, press
Start, and watch the job run to the end in the jobs panel.

Voila only renders what the notebook displayed while it executed; everything after that (the
job's row, its progress, its end) arrives as widget updates, which is what this test watches.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import (
    ARTIFACTS,
    REPO,
    ServerProcess,
    free_port,
    missing_requirements,
    row,
    run_server,
)

if (reason := missing_requirements()) is not None:
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

APP = REPO / "notebooks" / "app.ipynb"


@pytest.fixture(scope="module")
def voila(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[ServerProcess]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "voila",
        str(APP),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
    ]
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    # No HTTP probe: every GET / would execute the notebook in a new kernel.
    with run_server("Voila", argv, server_env, REPO, log, port, None) as server:
        yield server


@pytest.fixture
def scans(tmp_path: Path) -> tuple[Path, str]:
    """A folder with one PNG page of known text."""
    try:
        from tests.support import pages
    except ImportError:  # pragma: no cover - pages.py is the shared renderer
        pytest.skip("tests/support/pages.py is missing")
    folder = tmp_path / "scans"
    [(image, text)] = pages.save(pages.pages(1, sentences=2), folder).items()
    assert image.suffix == ".png"
    return folder, text


def test_ocr_from_the_app(page: Page, voila: ServerProcess, scans: tuple[Path, str]) -> None:
    folder, text = scans
    page.goto(voila.url + "/")
    panel = page.locator(".ipyjobs-panel")
    expect(panel).to_be_visible(timeout=90_000)
    expect(panel).to_contain_text("No jobs yet")
    expect(page.locator(".lm-TabBar-tab", has_text="Transcribe")).to_be_visible()

    page.locator(".lm-TabBar-tab", has_text="OCR").click()
    form = page.locator(".widget-vbox").filter(has_text="Recognise text in images").last
    expect(form).to_be_visible()
    path = (
        form.locator(".widget-text")
        .filter(has=page.locator("label", has_text=re.compile(r"^Path$")))
        .locator("input")
    )
    path.fill(str(folder))
    path.press("Enter")
    form.locator("button.widget-button", has_text="Start").click()
    expect(form).to_contain_text("Started OCR scans")

    job = row(page, "OCR scans")
    expect(job).to_have_count(1, timeout=15_000)
    expect(job.locator(".widget-hprogress")).to_be_visible()
    expect(job).to_contain_text("completed", timeout=90_000)
    expect(job).to_contain_text("1 pages / 1 pages")

    outputs = list(folder.glob("*.txt"))
    assert len(outputs) == 1, f"expected one text output in {folder}, found {outputs}"
    recognised = " ".join(outputs[0].read_text().split())
    assert text.split()[0] in recognised and text.split()[-1].rstrip(".") in recognised
    page.screenshot(path=str(ARTIFACTS / "voila-app.png"))
