"""The speech-to-text job on real openai-whisper (the reference engine), a real tiny.en model
and espeak-ng speech."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

from ipyjobs import JobManager, JobState
from ipyjobs.media import whisper_runtime
from ipyjobs.media.speech import FfmpegMissing, TranscribeJob
from tests.engine.test_states import wait_until
from tests.media.conftest import SENTENCES
from tests.support.http_server import LoopbackServer
from tests.support.whisper_model import speak, word_error_rate

pytestmark = pytest.mark.anyio

#: Measured here: 0.086 over the five clips (wav, mp3, ogg); the bound leaves room for noise.
WER_BOUND = 0.25
#: These tests run the reference engine; tests/media/test_speech_faster.py runs faster-whisper.
OPENAI = {"model": "tiny.en-test", "backend": "openai-whisper"}


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """About two minutes of speech: four 30-second windows to act between."""
    folder = tmp_path_factory.mktemp("long")
    return speak(" ".join(SENTENCES * 7), folder / "lecture.wav")


def cue_times(text: str) -> list[float]:
    """Every timestamp of an SRT (hh:mm:ss,mmm) or VTT ([hh:]mm:ss.mmm) file, in order."""
    times = []
    for h, m, s, ms in re.findall(r"(?:(\d+):)?(\d\d):(\d\d)[.,](\d\d\d)", text):
        times.append(int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000)
    return times


async def test_a_folder_is_transcribed_after_a_nested_model_download(
    manager: JobManager, mirror: LoopbackServer, clips: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    job = TranscribeJob(
        str(clips), **OPENAI, formats=["txt", "srt", "vtt", "json"],
        output_dir=str(out), language="en",
    )  # fmt: skip
    handle = manager.dispatch(job)
    summary = await handle
    [download] = handle.children
    assert download.kind == "models.download" and download.state is JobState.COMPLETED
    assert summary["done"] == 5 and summary["failed"] == 0 and summary["skipped"] == 0
    assert summary["audio_seconds"] > 5 and summary["real_time_factor"] > 0
    assert len(summary["outputs"]) == 20
    hypothesis = " ".join((out / f"clip-{i}.txt").read_text() for i in range(5))
    wer = word_error_rate(" ".join(SENTENCES), hypothesis)
    print(f"WER {wer:.3f}: {hypothesis!r}")
    assert wer <= WER_BOUND
    srt = (out / "clip-0.srt").read_text()
    vtt = (out / "clip-0.vtt").read_text()
    assert srt.startswith("1\n") and vtt.startswith("WEBVTT")
    for times in (cue_times(srt), cue_times(vtt)):
        assert times and times == sorted(times) and times[-1] > times[0]
    assert not list(out.glob(".*.tmp"))


async def test_bad_files_fail_alone(
    manager: JobManager, mirror: LoopbackServer, clips: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for clip in sorted(clips.iterdir())[:2]:
        (folder / clip.name).write_bytes(clip.read_bytes())
    (folder / "corrupt.mp3").write_bytes(b"\xff\xfb" + bytes(range(256)) * 40)
    (folder / "notes.wav").write_text("not audio, just some notes\n")
    handle = manager.dispatch(TranscribeJob(str(folder), **OPENAI, language="en"))
    summary = await handle
    assert handle.state is JobState.COMPLETED
    assert (summary["done"], summary["failed"]) == (2, 2)
    failed = {e.item: e.error for e in handle.item_errors}
    assert set(failed) == {str(folder / "corrupt.mp3"), str(folder / "notes.wav")}
    assert all("Failed to load audio" in text for text in failed.values())  # ffmpeg's words
    assert not (folder / "notes.txt").exists()


class ForwardPasses:
    """Counts whisper's forward passes in this test and, at pass ``n``, runs ``action`` on the
    event loop before the pass checks the job's token as always. Progress comes once per
    30-second window, too coarse to aim at "inside a file" from outside on a slow machine."""

    def __init__(self) -> None:
        self.count = 0
        self.trigger: tuple[int, Callable[[], object]] | None = None
        self._loop = anyio.lowlevel.current_token()
        self._check_token = whisper_runtime._check_token

    def at(self, n: int, action: Callable[[], object]) -> None:
        self.trigger = (n, action)

    def __call__(self, module: object, args: object) -> None:
        self.count += 1
        if self.trigger is not None and self.count == self.trigger[0]:
            anyio.from_thread.run_sync(self.trigger[1], token=self._loop)
        self._check_token(module, args)


@pytest.fixture
async def forward_passes(monkeypatch: pytest.MonkeyPatch) -> ForwardPasses:
    passes = ForwardPasses()
    monkeypatch.setattr(whisper_runtime, "_check_token", passes)  # before the model is loaded
    return passes


async def test_cancel_inside_a_file_stops_within_two_seconds_without_output(
    manager: JobManager, mirror: LoopbackServer, long_clip: Path, forward_passes: ForwardPasses
) -> None:
    handle = manager.dispatch(TranscribeJob(str(long_clip), **OPENAI))
    asked: list[float] = []
    forward_passes.at(20, lambda: (asked.append(time.monotonic()), handle.cancel()))
    assert await handle.join() is JobState.CANCELLED
    assert asked and time.monotonic() - asked[0] < 2
    assert forward_passes.count == 20  # the pass that saw the cancel was the last
    assert sorted(p.name for p in long_clip.parent.iterdir()) == ["lecture.wav"]


async def test_pause_and_resume_inside_a_file(
    manager: JobManager,
    mirror: LoopbackServer,
    long_clip: Path,
    tmp_path: Path,
    forward_passes: ForwardPasses,
) -> None:
    handle = manager.dispatch(
        TranscribeJob(str(long_clip), **OPENAI, output_dir=str(tmp_path), formats=["txt"])
    )
    forward_passes.at(20, handle.pause)
    await wait_until(lambda: handle.state is JobState.PAUSED, timeout=120)
    await anyio.sleep(1.5)
    assert forward_passes.count == 20  # really waiting, inside the file
    assert handle.tracker.done < 1
    handle.resume()
    summary = await handle
    assert summary["done"] == 1 and forward_passes.count > 20
    assert "library" in (tmp_path / "lecture.txt").read_text().lower()


async def test_an_interrupted_job_resumes_with_the_files_left(
    ipyjobs_home: Path, mirror: LoopbackServer, clips: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    job = TranscribeJob(str(clips), **OPENAI, output_dir=str(out), formats=["txt"])
    async with JobManager(ipyjobs_home, tick=0.02) as manager:
        handle = manager.dispatch(job)
        await wait_until(lambda: len(list(out.glob("*.txt"))) >= 2, timeout=120)
    assert handle.state is JobState.INTERRUPTED
    first_run = {p.name: p.stat().st_mtime_ns for p in out.glob("*.txt")}
    assert 2 <= len(first_run) < 5
    async with JobManager(ipyjobs_home, tick=0.02) as manager:
        summary = await manager.resume(handle.id)
    assert summary["skipped"] == len(first_run)
    assert summary["done"] == 5 - len(first_run)
    assert all(
        (out / name).stat().st_mtime_ns == mtime for name, mtime in first_run.items()
    )  # not transcribed again


async def test_no_ffmpeg_fails_before_any_work(
    manager: JobManager, mirror: LoopbackServer, clips: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    handle = manager.dispatch(TranscribeJob(str(clips), **OPENAI))
    with pytest.raises(FfmpegMissing, match="apt-get install ffmpeg"):
        await handle
    assert handle.children == []  # not even the model download started


def test_bad_options_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'docx': valid formats are txt, srt, vtt, tsv, json"):
        TranscribeJob("x", formats=["docx"])
