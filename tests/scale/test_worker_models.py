"""Models on workers: transcription on a LocalCluster whose workers have their own, empty data
folder. They fetch the model from the same loopback mirror, verified, once for the machine, and
produce the same transcripts as the kernel's threads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ipyjobs import JobManager
from ipyjobs.media.speech import TranscribeJob
from ipyjobs.models import ModelStore
from tests.media.conftest import clips  # noqa: F401 (the five espeak clips, a fixture)
from tests.support.clusters import close, start_client
from tests.support.http_server import LoopbackServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]


async def test_workers_with_their_own_home_fetch_the_model_once_and_match_local_outputs(
    manager: JobManager,
    mirror: LoopbackServer,
    clips: Path,  # noqa: F811
    whisper_checkpoint: Path,
    tmp_path: Path,
) -> None:
    def job(out: str) -> TranscribeJob:
        return TranscribeJob(
            str(clips), model="tiny.en-test", formats=["txt"], output_dir=str(tmp_path / out),
            language="en",
        )  # fmt: skip

    local = await manager.dispatch(job("local"))
    mirror.reset_counters()
    worker_home = tmp_path / "worker-home"
    client = start_client(worker_home, XDG_CACHE_HOME=str(tmp_path / "worker-cache"))
    try:
        manager.use_dask(client)
        handle = manager.dispatch(job("cluster"))
        remote = await handle
    finally:
        close(client)

    assert local["done"] == remote["done"] == 5 and remote["failed"] == 0
    assert handle.where.startswith("Dask cluster")
    for text in sorted((tmp_path / "local").glob("*.txt")):
        assert (tmp_path / "cluster" / text.name).read_text() == text.read_text()
    size = whisper_checkpoint.stat().st_size
    assert mirror.bytes_sent("/whisper/tiny.en-test.pt") == size  # once, for both workers
    worker_store = ModelStore(worker_home)
    ready = worker_store.ready_path("whisper/tiny.en-test")
    assert ready is not None and ready.is_relative_to(worker_home)
    assert ready.stat().st_size == size
