"""The app's forms and results with real jobs: uploads (files and zips), a folder picked under
the notebook root, the model default, outputs as checkboxes, results in the page as one zip."""

from __future__ import annotations

import base64
import io
import re
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ipyjobs import JobManager, JobState
from ipyjobs.models import DownloadModel, ModelStore
from ipyjobs.widgets import JobsPanel, OcrForm, ResultsView, TranscribeForm, app
from ipyjobs.widgets.forms import default_model
from tests.engine.test_states import wait_until
from tests.support.http_server import LoopbackServer
from tests.support.model_fixtures import TEST_WHISPER

pytestmark = pytest.mark.anyio


def upload(name: str, data: bytes) -> dict:
    """A FileUpload value entry, as the browser sends it."""
    return {"name": name, "type": "", "size": len(data), "content": memoryview(data),
            "last_modified": datetime.now(timezone.utc)}  # fmt: skip


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def test_the_model_default_is_the_best_on_disk_else_the_smallest_that_fits(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore
) -> None:
    assert default_model(store) == "tiny" and default_model(store, "en") == "tiny.en"
    form = TranscribeForm(manager)
    assert form.model.value == "tiny" and form.language.value == "detect"
    form.language.value = "en"
    assert form.model.value == "tiny.en"  # follows the language until the user picks one
    assert await manager.dispatch(DownloadModel(TEST_WHISPER))
    assert default_model(store, "en") == "tiny.en-test"  # on disk beats the catalog
    assert default_model(store, "de") == "tiny"  # an English-only model does not fit German
    assert TranscribeForm(manager).model.value == "tiny"  # detect: multilingual
    form.model.value = "base"
    form.language.value = "de"
    assert form.model.value == "base"  # picked by the user: kept


async def test_bad_inputs_say_what_to_do_and_start_nothing(
    manager: JobManager, tmp_path: Path
) -> None:
    form = TranscribeForm(manager)
    form.start.click()
    assert "No files uploaded" in form.feedback.value and form.last_job is None
    form.inputs.upload.value = (upload("evil.zip", zipped({"../../escape.wav": b"x"})),)
    form.start.click()
    assert "points outside the zip" in form.feedback.value and form.last_job is None
    assert not list(manager.home.rglob("escape.wav"))
    form.inputs.upload.value = (upload("broken.zip", b"not a zip"),)
    form.start.click()
    assert "not a readable zip file" in form.feedback.value
    for box in form.formats.boxes.values():
        box.value = False
    form.start.click()
    assert "No output chosen" in form.feedback.value
    ocr = OcrForm(manager)
    ocr.languages.value = "klingon"
    ocr.start.click()
    assert ocr.last_job is None and "klingon" in ocr.feedback.value


async def test_a_folder_under_the_root_starts_a_job_the_panel_shows(
    manager: JobManager, mirror: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "root" / "recordings" / "day 1").mkdir(parents=True)
    (tmp_path / "root" / ".hidden").mkdir()
    monkeypatch.setenv("IPYJOBS_APP_ROOT", str(tmp_path / "root"))
    panel = JobsPanel(manager)
    form = TranscribeForm(manager)
    assert form.inputs.folder.options == (".", "recordings", "recordings/day 1")
    form.inputs.source.value = "Folder"
    form.inputs.folder.value = "recordings/day 1"
    form.model.value = "tiny.en-test"
    form.start.click()
    job = form.last_job
    assert job is not None and "Started Transcribe" in form.feedback.value
    assert job.job.inputs == str(tmp_path / "root" / "recordings" / "day 1")
    assert await job.join() is JobState.FAILED  # an empty folder, said before any download
    assert "no audio or video files in" in (job.error_text or "") and job.children == []
    await wait_until(lambda: panel.in_sync)
    assert job.id in panel._feed._rows
    panel.close()


async def test_uploaded_images_and_a_zip_give_texts_in_the_page_and_one_zip(
    manager: JobManager, mirror: LoopbackServer, tmp_path: Path
) -> None:
    from tests.support import pages

    written = pages.save(pages.pages(3, sentences=1), tmp_path / "scans")
    files = sorted(written)
    form = OcrForm(manager)
    form.inputs.upload.value = (
        upload(files[0].name, files[0].read_bytes()),
        upload("more.zip", zipped({f"inner/{f.name}": f.read_bytes() for f in files[1:]})),
    )
    form.start.click()
    job = form.last_job
    assert job is not None, form.feedback.value
    assert form.inputs.upload.value == ()  # ready for the next upload
    result = await job
    assert result["done"] == 3
    results = ResultsView(manager)
    assert [job_id for _, job_id in results.job.options] == [job.id]
    results.show_results()
    body = results.body.value
    for file, text in written.items():
        assert f"<b>{file.stem}</b>" in body
        assert text.split()[0] in body
    encoded = re.search(r'href="data:application/zip;base64,([^"]+)"', body)
    assert encoded is not None
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(encoded.group(1))))
    names = sorted(archive.namelist())
    assert names == sorted(
        [f"{files[0].stem}.txt", *(f"more/inner/{f.stem}.txt" for f in files[1:])]
    ), names
    results.close()


async def test_the_app_puts_forms_results_models_and_jobs_on_one_page(
    manager: JobManager, store: ModelStore
) -> None:
    page = app(manager)
    tabs, panel = page.children
    assert tabs.titles == ("Transcribe", "OCR", "Results", "Models")
    assert isinstance(panel, JobsPanel)
    panel.close()
