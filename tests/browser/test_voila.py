"""Voila in a real Chromium: the jobs panel cancels a job; the app (``notebooks/app.ipynb``)
takes uploaded audio and an image, runs both forms, shows a result in the page and gives it
as a zip; a page reloaded mid-job offers "Resume 1 interrupted job", and the resumed job
does only the rest.

Voila only renders what the notebook displayed while it executed; everything after that
arrives as widget updates, which is what these tests watch. Kernel-side facts are read from
the data folder's job store, which the kernel writes.
"""

from __future__ import annotations

import io
import re
import shutil
import sqlite3
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import (
    ARTIFACTS,
    DOCS_IMAGES,
    REPO,
    ServerProcess,
    free_port,
    missing_requirements,
    run_server,
    save_screenshot,
    wait_for,
)

if (reason := missing_requirements()) is not None:
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Locator, Page, expect

from tests.browser.lab import job_row, write_notebook
from tests.browser.panel_page import DEFINE

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PANEL = "panel.ipynb"


@pytest.fixture(scope="module")
def voila(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[ServerProcess]:
    """Voila serving a folder with the app and a panel notebook (the folder is also the
    app's folder picker root)."""
    root = tmp_path_factory.mktemp("voila-root")
    shutil.copy(REPO / "notebooks" / "app.ipynb", root / "app.ipynb")
    write_notebook(
        root,
        PANEL,
        [DEFINE, "JobsPanel()", '[jobs.dispatch(Wait(f"voila job {i}")) for i in range(3)];'],
    )
    port = free_port()
    # Without the xsrf check, as the JupyterLab fixture: Voila's page then shuts its kernel
    # down when it is closed or reloaded (its beacon carries no xsrf token), which is what
    # the reload test needs to reproduce.
    argv = [sys.executable, "-m", "voila", str(root), "--no-browser", f"--port={port}",
            "--Voila.ip=127.0.0.1", "--Voila.tornado_settings=disable_check_xsrf=True"]  # fmt: skip
    log = root.parent / "voila.log"
    # No HTTP probe: a GET of a notebook would execute it in a new kernel.
    with run_server("Voila", argv, server_env, root, log, port, None) as server:
        yield server


def stored_state(home: Path, title: str) -> str | None:
    """The state the kernel wrote for the newest job with this title."""
    with sqlite3.connect(home / "jobs" / "jobs.sqlite") as db:
        row = db.execute(
            "SELECT state FROM jobs WHERE title = ? ORDER BY created_at DESC LIMIT 1", (title,)
        ).fetchone()
    return None if row is None else row[0]


def test_the_panel_in_voila_cancels_a_job(
    page: Page, voila: ServerProcess, browser_home: Path
) -> None:
    page.goto(f"{voila.url}/voila/render/{PANEL}")
    row = job_row(page, "voila job 1")
    expect(row.locator(".ipyjobs-status")).to_have_text("running", timeout=90_000)
    row.locator("button.ipyjobs-cancel").click()
    expect(row.locator(".ipyjobs-status")).to_have_text("cancelled")
    wait_for(lambda: stored_state(browser_home, "voila job 1") == "cancelled", 15, "the store")
    assert stored_state(browser_home, "voila job 0") == "running"


# -- the app ------------------------------------------------------------------------------------


def form(page: Page, tab: str, heading: str) -> Locator:
    page.locator(".lm-TabBar-tab", has_text=tab).click()
    found = page.locator(".ipyjobs-form").filter(has_text=heading)
    expect(found).to_be_visible()
    return found


def upload(page: Page, where: Locator, files: list[Path]) -> None:
    with where.page.expect_file_chooser() as chooser:
        where.locator(".widget-upload").click()
    chooser.value.set_files([str(f) for f in files])
    expect(where.locator(".widget-upload")).to_contain_text(f"({len(files)})")


def start(where: Locator) -> str:
    """Press Start; return the title of the job it started."""
    before = where.inner_text()
    where.locator("button.widget-button", has_text="Start").click()
    wait_for(lambda: where.inner_text() != before, 30, "the form to say what it started")
    found = re.search(r"Started (.+?) \(", where.inner_text())
    assert found is not None, where.inner_text()
    return found.group(1)


def choose(where: Locator, label: str, value: str) -> None:
    dropdown = where.locator(".widget-dropdown").filter(
        has=where.page.locator("label", has_text=re.compile(f"^{label}$"))
    )
    dropdown.locator("select").select_option(label=value)


@pytest.fixture
def media(tmp_path: Path) -> dict[str, list[Path]]:
    """Two spoken English clips, one page image, and 16 page images for a longer job."""
    from tests.support import pages
    from tests.support.whisper_model import SENTENCES, speak

    audio = [speak(SENTENCES[i], tmp_path / f"speech{i + 1}.wav") for i in range(2)]
    [image] = pages.save(pages.pages(1, sentences=2), tmp_path / "one")
    many = sorted(pages.save(pages.pages(16, sentences=3, seed=3), tmp_path / "many"))
    return {"audio": audio, "image": [image], "many": many}


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_the_app_uploads_runs_shows_zips_and_resumes_after_a_reload(
    page: Page, voila: ServerProcess, browser_home: Path, media: dict[str, list[Path]]
) -> None:
    from tests.support.whisper_model import SENTENCES

    page.goto(f"{voila.url}/voila/render/app.ipynb")
    expect(page.locator(".ipyjobs-panel")).to_be_visible(timeout=90_000)

    speech = form(page, "Transcribe", "Transcribe audio or video")
    expect(speech.locator("select").first).to_have_value(re.compile(".+"))  # a model chosen
    choose(speech, "Language", "English")
    choose(speech, "Model", "tiny.en-test")
    upload(page, speech, media["audio"])
    titles = [start(speech)]
    ocr = form(page, "OCR", "Recognise text in images")
    upload(page, ocr, media["image"])
    titles.append(start(ocr))
    for title in titles:
        status = job_row(page, title).locator(".ipyjobs-status")
        expect(status).to_have_text("completed", timeout=120_000)

    # the transcript beside its file, in the page, and all of it as one zip
    page.locator(".lm-TabBar-tab", has_text="Results").click()
    results = page.locator(".ipyjobs-results")
    select = results.locator("select")
    wait_for(lambda: select.locator("option").count() == 2, 15, "both jobs in Results")
    [transcribe] = [t for t in select.locator("option").all_inner_texts() if "Transcribe" in t]
    select.select_option(label=transcribe)
    results.locator("button", has_text="Show").click()
    expect(results.locator("pre.ipyjobs-result")).to_have_count(2, timeout=15_000)
    shown = results.inner_text()
    assert "speech1" in shown and "speech2" in shown
    # both transcripts are in the page, every word (the default engine, faster-whisper int8
    # with a beam of 5, hears these two clips right)
    assert all(words(SENTENCES[i]) <= words(shown) for i in (0, 1)), shown
    save_screenshot(page, DOCS_IMAGES / "app.png")
    with page.expect_download() as download:
        results.locator("a.ipyjobs-download").click()
    archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert sorted(archive.namelist()) == [
        f"speech{n}.{fmt}" for n in (1, 2) for fmt in ("srt", "txt", "vtt")
    ]
    assert words(SENTENCES[1]) == words(archive.read("speech2.txt").decode())

    # a longer OCR job; the page is reloaded while it runs (Voila ends the kernel)
    ocr = form(page, "OCR", "Recognise text in images")
    upload(page, ocr, media["many"])
    earlier = set(browser_home.joinpath("results").glob("image-*"))
    title = start(ocr)
    folders = set(browser_home.joinpath("results").glob("image-*")) - earlier
    assert len(folders) == 1
    done_markers = lambda: [p for f in folders for p in f.glob("*.ipyjobs.json")]  # noqa: E731
    wait_for(lambda: len(done_markers()) >= 3, 60, "some pages done")
    page.reload()
    before = {p.with_name(p.name.replace(".ipyjobs.json", ".txt")) for p in done_markers()}
    stamps = {p: p.stat().st_mtime_ns for p in before}
    assert 3 <= len(before) < 16, "the job ended before the reload: make it longer"

    resume = page.locator(".ipyjobs-resume-all")
    expect(resume).to_have_text("Resume 1 interrupted job", timeout=90_000)
    resume.click()
    expect(page.locator(".ipyjobs-notice")).to_have_text("Resumed 1 interrupted job.")
    expect(resume).to_be_hidden(timeout=15_000)
    row = job_row(page, title)
    expect(row.locator(".ipyjobs-status")).to_have_text("completed", timeout=120_000)
    texts = [p for f in folders for p in f.glob("*.txt")]
    assert len(texts) == 16
    assert {p: p.stat().st_mtime_ns for p in before} == stamps  # done pages were not redone
    page.screenshot(path=str(ARTIFACTS / "voila-app.png"))
