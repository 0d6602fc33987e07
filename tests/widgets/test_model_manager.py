"""The model manager widget, with real jobs and the loopback mirror."""

from __future__ import annotations

import pytest

from ipyjobs import JobManager
from ipyjobs.models import ModelStore
from ipyjobs.widgets import ModelManager
from tests.engine.test_states import wait_until
from tests.support.http_server import LoopbackServer
from tests.support.model_fixtures import TEST_WHISPER

pytestmark = pytest.mark.anyio


async def test_download_verify_and_delete_from_the_widget(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore
) -> None:
    models = ModelManager(manager, store)
    row = models.row("tiny.en-test")
    assert "missing" in row.label.value and row.buttons.children == (row.download,)
    row.download.click()
    await wait_until(lambda: store.info(TEST_WHISPER).status == "ready", timeout=30)
    models.refresh()
    assert "ready" in row.label.value and row.bar.value == 1.0
    assert row.buttons.children == (row.verify, row.delete)
    assert "MB on disk" in models.usage.value

    row.verify.click()
    [verify] = [h for h in manager.handles if h.kind == "models.verify"]
    assert await verify is True

    row.delete.click()
    models.refresh()
    assert row.buttons.children == (row.confirm, row.keep)  # asks first
    row.keep.click()
    models.refresh()
    assert store.info(TEST_WHISPER).status == "ready"
    row.delete.click()
    row.confirm.click()
    assert store.info(TEST_WHISPER).status == "missing"
    assert "Deleted whisper model tiny.en-test" in models.message
    models.refresh()
    assert "missing" in row.label.value


async def test_the_widget_reflects_downloads_that_jobs_started(
    manager: JobManager, mirror: LoopbackServer, store: ModelStore
) -> None:
    from tests.models.jobs import NeedsModel
    from tests.support.http_server import Fault

    mirror.add_fault("/whisper/tiny.en-test.pt", Fault("stall", after_bytes=5_000_000, seconds=1))
    models = ModelManager(manager, store)
    job = manager.dispatch(NeedsModel("tiny.en-test"))
    await wait_until(lambda: "downloading" in models.row("tiny.en-test").label.value)
    row = models.row("tiny.en-test")
    assert row.buttons.children == (row.cancel,)
    await job
    await wait_until(lambda: "ready" in models.row("tiny.en-test").label.value)


async def test_the_filter_selects_rows(manager: JobManager, store: ModelStore) -> None:
    models = ModelManager(manager, store)
    shown = set(models._rows)
    assert "whisper/large-v3" in shown and "tessdata_fast/eng" in shown
    assert "tessdata_fast/deu" not in shown
    models.filter.value = "deu"
    assert set(models._rows) == {"tessdata_fast/deu", "tessdata_best/deu"}
    assert "tessdata_best/deu: missing" in repr(models)
