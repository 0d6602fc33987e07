"""With the kernel's work on a Dask cluster, the forms offer to run a job on the kernel's own
threads instead (a real LocalCluster of 2 processes on 127.0.0.1); without one they do not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ipyjobs import JobManager
from ipyjobs.widgets import OcrForm, TranscribeForm
from tests.engine.test_states import wait_until
from tests.support import pages
from tests.support.http_server import LoopbackServer
from tests.widgets.test_app import upload

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def shown(form: OcrForm | TranscribeForm) -> bool:
    return form.run_on.layout.display != "none"


async def test_the_forms_offer_the_kernel_or_the_cluster_while_a_cluster_is_set(
    manager: JobManager, mirror: LoopbackServer, client, tmp_path: Path
) -> None:
    ocr, speech = OcrForm(manager), TranscribeForm(manager)
    assert not shown(ocr) and not shown(speech)
    assert speech.build(str(tmp_path), str(tmp_path / "out")).executor is None

    manager.use_dask(client)
    await wait_until(lambda: shown(ocr) and shown(speech))  # the forms follow the kernel
    here = f"this kernel ({os.cpu_count()} threads)"
    there = f"Dask cluster {client.scheduler.address}"
    assert [label for label, _ in ocr.run_on.options] == [here, there]
    assert ocr.run_on.label == speech.run_on.label == there  # the default: as any job
    speech.run_on.label = here
    assert speech.build(str(tmp_path), str(tmp_path / "out")).executor is speech.run_on.local

    [image] = pages.save(pages.pages(1, sentences=1), tmp_path / "scans")
    runs = {}
    for choice in (here, there):
        ocr.run_on.label = choice
        ocr.inputs.upload.value = (upload(image.name, image.read_bytes()),)
        ocr.start.click()
        assert ocr.last_job is not None, ocr.feedback.value
        runs[choice] = ocr.last_job
        assert (await ocr.last_job)["done"] == 1
    assert runs[here].where == "this kernel's threads"
    assert runs[there].where.startswith(f"{there}: 2 workers")
    assert "executor" not in manager.record(runs[here].id).params  # stored jobs stay portable

    manager.use_local()
    await wait_until(lambda: not shown(ocr) and not shown(speech))
    assert ocr.run_on.value is None and speech.run_on.value is None
