"""The model store's own files when they are damaged: a corrupt ``manifest.json`` is set aside
and the models on disk are verified again (hashed, not downloaded); a corrupt ``custom.json``
(the user's entries, which nothing can rebuild) is an error naming the file and the fix."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipyjobs import JobManager
from ipyjobs.models import CorruptStoreFile, ModelEntry, ModelStore
from tests.models.jobs import NeedsModel
from tests.support.http_server import LoopbackServer

pytestmark = pytest.mark.anyio

MODEL = os.urandom(200_000)


@pytest.fixture
def model_url(server: LoopbackServer, tmp_path: Path) -> str:
    source = tmp_path / "model.pt"
    source.write_bytes(MODEL)
    return server.add_file("/mine.pt", source)


@pytest.mark.parametrize(
    "text", ['{"whisper/mine": {"path": "/x", "sha', "[1, 2]", '{"whisper/mine": {}}', "\xff"]
)
async def test_a_corrupt_manifest_is_set_aside_and_models_are_verified_not_downloaded(
    manager: JobManager,
    server: LoopbackServer,
    store: ModelStore,
    model_url: str,
    text: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sha256 = hashlib.sha256(MODEL).hexdigest()
    store.register(ModelEntry("whisper", "mine", "mine.pt", model_url, sha256))
    await manager.dispatch(NeedsModel("whisper/mine"))
    manifest = store.folder / "manifest.json"
    manifest.write_bytes(text.encode("latin-1"))  # a crash or a hand edit
    server.reset_counters()
    with caplog.at_level(logging.WARNING):
        assert store.info("whisper/mine").status == "missing"  # nothing unverified is ready
    assert str(manifest) in caplog.text and "manifest.json.corrupt" in caplog.text
    assert (store.folder / "manifest.json.corrupt").read_bytes() == text.encode("latin-1")
    path = Path(await manager.dispatch(NeedsModel("whisper/mine")))
    assert path.read_bytes() == MODEL and store.info("whisper/mine").status == "ready"
    assert server.requests("/mine.pt") == []  # hashed where it was, not downloaded again


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ('[{"family": "whisper", "name": "mine"', "line 1 column"),
        ('{"family": "whisper"}', "not a JSON list"),
        ('[{"family": "whisper", "name": "mine"}]', "missing 2 required positional arguments"),
        (
            '[{"family": "whisper", "name": "mine", "file": "mine.pt", "url": "http://h/m",'
            ' "sha256": "ABC"}]',
            "sha256 must be 64 lowercase hex digits",
        ),
    ],
)
def test_a_corrupt_custom_json_names_the_file_and_the_fix(
    ipyjobs_home: Path, text: str, fault: str
) -> None:
    custom = ipyjobs_home / "models" / "custom.json"
    custom.parent.mkdir(parents=True)
    custom.write_text(text)
    with pytest.raises(CorruptStoreFile) as error:
        ModelStore(ipyjobs_home)
    message = str(error.value)
    assert f"your own model entries in {custom} cannot be read" in message and fault in message
    assert "Fix the file" in message and "move it away" in message
    custom.unlink()
    assert ModelStore(ipyjobs_home).entry("tiny.en").name == "tiny.en"


async def test_offline_a_file_copied_into_the_store_is_verified_and_used(
    manager: JobManager, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the offline error tells the user to do.
    sha256 = hashlib.sha256(MODEL).hexdigest()
    entry = store.register(ModelEntry("whisper", "mine", "mine.pt", "http://nowhere/m", sha256))
    monkeypatch.setenv("IPYJOBS_OFFLINE", "1")
    store.target(entry).write_bytes(MODEL)
    path = Path(await manager.dispatch(NeedsModel("whisper/mine")))
    assert path == store.target(entry) and store.info(entry).status == "ready"


def test_two_writers_of_one_json_file_never_trip_over_each_other(tmp_path: Path) -> None:
    """Two worker processes (or threads) recording models in one store write manifest.json at
    once: each through its own temporary file, so neither finds its file renamed away."""
    import threading

    from ipyjobs.models.diskio import replace_text

    target = tmp_path / "manifest.json"
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(300):
                replace_text(target, f'{{"writer": {n}, "i": {i}}}')
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert errors == []
    assert target.read_text().startswith('{"writer": ')
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


REUSE_AT_ONCE = """
import sys, time, anyio
from ipyjobs import JobManager
from ipyjobs.models import DownloadModel

home, start = sys.argv[1], float(sys.argv[2])

async def main():
    async with JobManager(home, persist=False) as manager:
        print(await manager.dispatch(DownloadModel("tessdata_fast/eng", home)))

while time.time() < start:
    pass
anyio.run(main)
"""


@pytest.mark.skipif(not Path("/usr/share/tesseract-ocr").exists(), reason="no system tessdata")
def test_processes_taking_the_system_tessdata_at_once_all_get_it(tmp_path: Path) -> None:
    """Dask workers sharing a data folder copy the system's language data in at the same
    moment: each one gets the model, and no temporary copy is left (a fixed temporary name
    made all but one fail with FileNotFoundError)."""
    for round_ in range(5):
        home = tmp_path / f"home-{round_}"
        start = time.time() + 1.5  # after every interpreter has started
        command = [sys.executable, "-c", REUSE_AT_ONCE, str(home), str(start)]
        runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(4)]  # fmt: skip
        outputs = [run.communicate(timeout=60) for run in runs]
        assert [run.returncode for run in runs] == [0] * 4, [err for _, err in outputs]
        folder = home / "models" / "tessdata_fast"
        assert {out.strip() for out, _ in outputs} == {str(folder / "eng.traineddata")}
        assert not list(folder.glob("*.tmp")) and not list(folder.glob("*.copy"))
