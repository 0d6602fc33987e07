"""The widgets know the speech engine: the transcription form offers it (with VAD and batch
size), and the model manager shows a converted faster-whisper model as such and converts it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipyjobs import JobManager
from ipyjobs.models import ModelStore
from ipyjobs.widgets import ModelManager, TranscribeForm
from tests.engine.test_states import wait_until
from tests.support.http_server import LoopbackServer

pytestmark = pytest.mark.anyio
CONVERTED = "faster-whisper/tiny.en-test"


async def test_the_form_builds_the_engine_options(
    manager: JobManager, mirror: LoopbackServer, tmp_path: Path
) -> None:
    form = TranscribeForm(manager)
    form.model.value = "tiny.en-test"
    assert form.backend.options == ("auto", "faster-whisper", "openai-whisper")
    form.backend.value, form.vad.value, form.batch_size.value = "faster-whisper", True, 8
    job = form.build(str(tmp_path), str(tmp_path / "out"))
    assert (job.backend, job.vad, job.batch_size) == ("faster-whisper", True, 8)
    form.batch_size.value = 0
    assert form.build(str(tmp_path), str(tmp_path / "out")).batch_size is None
    form.backend.value = "openai-whisper"
    with pytest.raises(ValueError, match=r"need\(s\) faster-whisper"):
        form.build(str(tmp_path), str(tmp_path / "out"))


async def test_the_model_manager_converts_and_shows_a_converted_model(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore
) -> None:
    models = ModelManager(manager, store)
    models.filter.value = "faster-whisper tiny.en-test"
    row = models.row(CONVERTED)
    assert "converted from whisper/tiny.en-test" in row.label.value
    row.download.click()
    [convert] = [h for h in manager.handles if h.kind == "models.convert"]
    assert await convert == str(store.target(store.entry(CONVERTED)))
    await wait_until(lambda: store.info(CONVERTED).status == "ready", timeout=30)
    models.refresh()
    assert "ready" in row.label.value and row.buttons.children == (row.verify, row.delete)
    models.filter.value = ""
    assert CONVERTED in models._rows  # shown by default once it is on disk
