"""``TranscribeJob(backend="faster-whisper")`` on real faster-whisper, with the model converted by
the product from the real tiny.en test checkpoint, and espeak-ng speech."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

from ipyjobs import JobManager, JobState
from ipyjobs.media import faster_runtime
from ipyjobs.media.speech import FORMATS, TranscribeJob
from ipyjobs.models import ModelStore
from ipyjobs.models.ct2_whisper import FLOAT_MODEL
from tests.engine.test_states import wait_until
from tests.media.conftest import SENTENCES
from tests.media.test_speech import WER_BOUND, cue_times, long_clip
from tests.support.http_server import LoopbackServer
from tests.support.whisper_model import sha256_of, word_error_rate

pytestmark = pytest.mark.anyio

__all__ = ["long_clip"]  # a module fixture shared with the openai-whisper tests
FASTER = {"model": "tiny.en-test", "backend": "faster-whisper"}


def kinds(handle) -> list[str]:
    return [child.kind for child in handle.children]


async def test_a_folder_in_five_formats_after_a_nested_conversion_reused_next_time(
    manager: JobManager, mirror: LoopbackServer, clips: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    job = TranscribeJob(str(clips), **FASTER, formats=list(FORMATS), output_dir=str(out))
    handle = manager.dispatch(job)
    summary = await handle
    [convert] = handle.children
    assert convert.kind == "models.convert" and convert.state is JobState.COMPLETED
    assert kinds(convert) == ["models.download"]  # the checkpoint, verified, then converted
    assert summary["backend"] == "faster-whisper" and summary["compute_type"] == "int8"
    assert any("(faster-whisper, int8)" in line for line in handle.log_tail)
    assert (summary["done"], summary["failed"]) == (5, 0)
    assert len(summary["outputs"]) == 25
    hypothesis = " ".join((out / f"clip-{i}.txt").read_text() for i in range(5))
    assert word_error_rate(" ".join(SENTENCES), hypothesis) <= WER_BOUND
    srt = (out / "clip-0.srt").read_text()
    assert srt.startswith("1\n") and (out / "clip-0.vtt").read_text().startswith("WEBVTT")
    times = cue_times(srt)
    assert times and times == sorted(times) and times[-1] > times[0]
    result = json.loads((out / "clip-0.json").read_text())
    assert result["language"] == "en" and result["segments"][0]["end"] > 0
    assert (out / "clip-0.tsv").read_text().startswith("start\tend\ttext")
    store = ModelStore.at(manager.home)
    info = store.info("faster-whisper/tiny.en-test")
    assert info.status == "ready" and info.source == "converted"

    again = manager.dispatch(TranscribeJob(str(clips), **FASTER, output_dir=str(tmp_path / "b")))
    assert (await again)["done"] == 5
    assert again.children == []  # the converted model is reused


@pytest.mark.skipif(faster_runtime.cpu_threads() < 2, reason="one core: one file at a time")
async def test_files_are_transcribed_one_per_core_at_once_with_the_same_transcripts(
    manager: JobManager, mirror: LoopbackServer, clips: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    cores = faster_runtime.cpu_threads()
    running, most, lanes_seen = [0], [0], set()
    transcribe = faster_runtime.transcribe

    def counted(*args, lanes: int = 1, **kwargs):
        running[0] += 1
        most[0] = max(most[0], running[0])
        lanes_seen.add(lanes)
        try:
            return transcribe(*args, lanes=lanes, **kwargs)
        finally:
            running[0] -= 1

    monkeypatch.setattr(faster_runtime, "transcribe", counted)
    at_once = manager.dispatch(TranscribeJob(str(clips), **FASTER, output_dir=str(tmp_path / "a")))
    summary = await at_once
    assert (summary["done"], summary["failed"]) == (5, 0)
    assert most[0] == min(cores, 5) and lanes_seen == {min(cores, 5)}
    assert any(f"{min(cores, 5)} at a time" in line for line in at_once.log_tail)
    assert at_once.progress.done == 5

    monkeypatch.setattr(faster_runtime, "cpu_threads", lambda: 1)
    most[0] = 0
    alone = manager.dispatch(TranscribeJob(str(clips), **FASTER, output_dir=str(tmp_path / "b")))
    assert (await alone)["done"] == 5 and most[0] == 1
    for i in range(5):  # each file's own transcript, whatever ran beside it
        name = f"clip-{i}.txt"
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


async def test_a_folder_an_older_version_converted_is_converted_again(
    manager: JobManager, mirror: LoopbackServer, clips: Path, tmp_path: Path
) -> None:
    """Older versions kept the float weights alone, as ``model.bin``, which an int8 compute
    type then quantized at load (worse transcripts). Such a folder's record lists other files:
    it is not ready, and the next job converts again."""
    clip = sorted(clips.iterdir())[0]
    first = manager.dispatch(TranscribeJob(str(clip), **FASTER, output_dir=str(tmp_path / "a")))
    await first
    store = ModelStore.at(manager.home)
    entry = store.entry("faster-whisper/tiny.en-test")
    folder = store.ready_path(entry)
    assert folder is not None
    (folder / FLOAT_MODEL).replace(folder / "model.bin")
    old = dataclasses.replace(entry, files=tuple(f for f in entry.files if f != FLOAT_MODEL))
    hashes = {name: sha256_of(folder / name) for name in old.files}
    store.record_verified_folder(old, folder, hashes, "converted")
    assert store.ready_path(entry) is None

    again = manager.dispatch(TranscribeJob(str(clip), **FASTER, output_dir=str(tmp_path / "b")))
    assert (await again)["done"] == 1
    assert kinds(again) == ["models.convert"]
    assert store.ready_path(entry) == folder
    assert (folder / "model.bin").stat().st_size < (folder / FLOAT_MODEL).stat().st_size / 1.5


async def test_two_jobs_share_one_conversion(
    manager: JobManager, mirror: LoopbackServer, clips: Path, tmp_path: Path
) -> None:
    a, b = sorted(clips.iterdir())[:2]
    first = manager.dispatch(TranscribeJob(str(a), **FASTER, output_dir=str(tmp_path / "a")))
    second = manager.dispatch(TranscribeJob(str(b), **FASTER, output_dir=str(tmp_path / "b")))
    await first
    await second
    [convert] = first.children
    assert second.children == [convert]
    assert [h for h in manager.handles if h.kind == "models.convert"] == [convert]


class ModelCalls:
    """Counts the checked calls into CTranslate2 (and segment boundaries) in this test and, at
    call ``n``, runs ``action`` on the event loop before the call checks the token as always."""

    def __init__(self) -> None:
        self.count = 0
        self.trigger: tuple[int, Callable[[], object]] | None = None
        self._loop = anyio.lowlevel.current_token()
        self._check_token = faster_runtime._check_token

    def at(self, n: int, action: Callable[[], object]) -> None:
        self.trigger = (n, action)

    def __call__(self, call: str) -> None:
        self.count += 1
        if self.trigger is not None and self.count == self.trigger[0]:
            anyio.from_thread.run_sync(self.trigger[1], token=self._loop)
        self._check_token(call)


@pytest.fixture
async def model_calls(monkeypatch: pytest.MonkeyPatch) -> ModelCalls:
    calls = ModelCalls()
    monkeypatch.setattr(faster_runtime, "_check_token", calls)
    return calls


@pytest.mark.parametrize("batch_size", [None, 4])
async def test_cancel_inside_a_long_file_within_two_seconds_without_output(
    manager: JobManager,
    mirror: LoopbackServer,
    long_clip: Path,
    model_calls: ModelCalls,
    batch_size: int | None,
) -> None:
    handle = manager.dispatch(TranscribeJob(str(long_clip), **FASTER, batch_size=batch_size))
    asked: list[float] = []
    model_calls.at(3, lambda: (asked.append(time.monotonic()), handle.cancel()))
    assert await handle.join() is JobState.CANCELLED
    assert asked and time.monotonic() - asked[0] < 2
    assert model_calls.count == 3  # the call that saw the cancel was the last
    assert sorted(p.name for p in long_clip.parent.iterdir()) == ["lecture.wav"]


async def test_pause_and_resume_inside_a_long_file(
    manager: JobManager,
    mirror: LoopbackServer,
    long_clip: Path,
    tmp_path: Path,
    model_calls: ModelCalls,
) -> None:
    job = TranscribeJob(str(long_clip), **FASTER, output_dir=str(tmp_path), formats=["txt"])
    handle = manager.dispatch(job)
    model_calls.at(4, handle.pause)
    await wait_until(lambda: handle.state is JobState.PAUSED, timeout=120)
    await anyio.sleep(1.5)
    assert model_calls.count == 4  # really waiting, inside the file
    assert handle.tracker.done < 1
    handle.resume()
    summary = await handle
    assert summary["done"] == 1 and model_calls.count > 4
    assert "library" in (tmp_path / "lecture.txt").read_text().lower()


async def test_progress_inside_a_file_follows_segment_end_times(
    manager: JobManager, mirror: LoopbackServer, long_clip: Path, tmp_path: Path
) -> None:
    seen: list[float] = []
    job = TranscribeJob(str(long_clip), **FASTER, output_dir=str(tmp_path), formats=["txt"])
    handle = manager.dispatch(job)

    async def watch() -> None:
        while not handle.done:
            seen.append(handle.tracker.done)
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await handle
    assert seen == sorted(seen)
    # The clip has three 30-second windows; each window's segments come at once.
    assert len({d for d in seen if 0 < d < 1}) >= 2, seen


async def test_an_interrupted_job_resumes_with_the_files_left_and_bad_files_fail_alone(
    ipyjobs_home: Path, mirror: LoopbackServer, clips: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for clip in sorted(clips.iterdir()):
        (folder / clip.name).write_bytes(clip.read_bytes())
    (folder / "corrupt.mp3").write_bytes(b"\xff\xfb" + bytes(range(256)) * 40)
    out = tmp_path / "out"
    job = TranscribeJob(str(folder), **FASTER, output_dir=str(out), formats=["txt"])
    async with JobManager(ipyjobs_home, tick=0.02) as manager:
        handle = manager.dispatch(job)
        await wait_until(lambda: len(list(out.glob("*.txt"))) >= 2, timeout=120)
    assert handle.state is JobState.INTERRUPTED
    first_run = {p.name: p.stat().st_mtime_ns for p in out.glob("*.txt")}
    assert 2 <= len(first_run) < 5
    async with JobManager(ipyjobs_home, tick=0.02) as manager:
        resumed = manager.dispatch(job)
        summary = await resumed
    assert summary["skipped"] == len(first_run)
    assert (summary["done"], summary["failed"]) == (5 - len(first_run), 1)
    [error] = resumed.item_errors
    assert error.item == str(folder / "corrupt.mp3") and "Failed to load audio" in error.error
    assert all((out / n).stat().st_mtime_ns == t for n, t in first_run.items())


async def test_outputs_of_another_engine_or_option_are_not_taken_as_done(
    manager: JobManager, mirror: LoopbackServer, clips: Path, tmp_path: Path
) -> None:
    one = str(clips / "clip-0.wav")
    out = str(tmp_path)
    assert (await manager.dispatch(TranscribeJob(one, **FASTER, output_dir=out)))["done"] == 1
    assert (await manager.dispatch(TranscribeJob(one, **FASTER, output_dir=out)))["skipped"] == 1
    vad = await manager.dispatch(TranscribeJob(one, **FASTER, output_dir=out, vad=True))
    assert vad["done"] == 1
    plain = await manager.dispatch(
        TranscribeJob(one, model="tiny.en-test", backend="openai-whisper", output_dir=out)
    )
    assert plain["done"] == 1 and plain["backend"] == "openai-whisper"


async def test_offline_mode_converts_from_the_checkpoint_without_network(
    manager: JobManager, mirror: LoopbackServer, clips: Path, tmp_path: Path, whisper_checkpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    cache = Path(tmp_path / "xdg-cache" / "whisper")  # the no_foreign_models fixture's cache
    cache.mkdir(parents=True)
    (cache / "tiny.en-test.pt").write_bytes(whisper_checkpoint.read_bytes())
    monkeypatch.setenv("IPYJOBS_OFFLINE", "1")
    handle = manager.dispatch(TranscribeJob(str(clips / "clip-0.wav"), **FASTER,
                                            output_dir=str(tmp_path / "out")))  # fmt: skip
    assert (await handle)["done"] == 1
    [convert] = handle.children
    assert convert.state is JobState.COMPLETED
    assert mirror.requests("/whisper/tiny.en-test.pt") == []  # reused from whisper's cache


def test_faster_only_options_are_refused_for_openai_whisper() -> None:
    with pytest.raises(ValueError, match=r"vad, batch_size need\(s\) faster-whisper"):
        TranscribeJob("x", backend="openai-whisper", vad=True, batch_size=8)
    with pytest.raises(ValueError, match="backend must be one of"):
        TranscribeJob("x", backend="whisper.cpp")
    with pytest.raises(ValueError, match="compute_type must be one of"):
        TranscribeJob("x", backend="faster-whisper", compute_type="int4")
