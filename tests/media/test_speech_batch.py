"""A transcription batch loses nothing: long names, a full disk, unreadable media and a second
kernel on the same folder each stay one file's business, with the real cause in one line; a
typo is refused before the model download. Real openai-whisper, ffmpeg and processes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ipyjobs import JobManager, JobState
from ipyjobs.media import TranscribeJob
from tests.media.conftest import fill
from tests.media.processes import finish, start_job
from tests.support.http_server import LoopbackServer

pytestmark = pytest.mark.anyio

MODEL = "tiny.en-test"


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


async def test_a_long_name_is_transcribed_and_never_redone(
    manager: JobManager, mirror: LoopbackServer, clips: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "long"
    folder.mkdir()
    stem = "interview " * 24 + "x" * 5  # 245 bytes: outputs fit, ".<stem>.txt.XXXXXXXX.tmp" not
    shutil.copy(clips / "clip-0.wav", folder / f"{stem}.wav")
    shutil.copy(clips / "clip-3.wav", folder / "after.wav")
    job = TranscribeJob(folder, model=MODEL, language="en")

    handle = manager.dispatch(job)
    summary = await handle

    assert (summary["done"], summary["failed"]) == (2, 0), handle.item_errors
    assert "warm" in (folder / f"{stem}.txt").read_text().lower()  # both engines hear it
    assert {f"{stem}.srt", f"{stem}.vtt", "after.txt"} <= names(folder)
    assert not [n for n in names(folder) if n.startswith(".")]
    again = await manager.dispatch(job)
    assert (again["done"], again["skipped"]) == (0, 2)


async def test_a_full_disk_fails_each_file_with_no_space_left(
    manager: JobManager, mirror: LoopbackServer, clips: Path, small_disk: Path
) -> None:
    out = small_disk / "out"
    fill(small_disk, leave=0)
    job = TranscribeJob([clips / "clip-0.wav", clips / "clip-1.mp3"], model=MODEL,
                        language="en", output_dir=out)  # fmt: skip

    handle = manager.dispatch(job)
    summary = await handle

    assert handle.state is JobState.COMPLETED
    assert (summary["done"], summary["failed"]) == (0, 2)
    errors = sorted(handle.item_errors, key=lambda e: e.item)  # files run at once: any order
    for error, name in zip(errors, ["clip-0.wav", "clip-1.mp3"], strict=True):
        assert error.error.startswith(f"outputs of {name}: no space left on {small_disk} (")
        assert error.error.endswith("bytes free. Free some space there, or write to another disk.")
    assert not out.exists() or list(out.iterdir()) == []


async def test_unreadable_media_fail_alone_with_ffmpeg_s_reason_in_one_line(
    manager: JobManager, mirror: LoopbackServer, clips: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(clips / "clip-2.ogg", folder / "good.ogg")
    (folder / "notes.wav").write_text("not audio, just some notes\n")
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=64x48",
         str(folder / "silent-film.mp4")],
        check=True,
    )  # fmt: skip

    handle = manager.dispatch(TranscribeJob(folder, model=MODEL, language="en"))
    summary = await handle

    assert (summary["done"], summary["failed"]) == (1, 2)
    errors = {Path(e.item).name: e.error for e in handle.item_errors}
    assert errors == {
        "notes.wav": "Failed to load audio: Invalid data found when processing input",
        "silent-film.mp4": "Failed to load audio: no audio stream "
        "(ffmpeg: Output file #0 does not contain any stream)",
    }
    # ffmpeg's whole report (streams and all) is in the job's log.
    assert any("Stream #0:0" in line and "Video: " in line for line in handle.log_tail)


async def test_two_kernels_on_one_folder_transcribe_each_file_once(
    mirror: LoopbackServer, clips: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    for clip in sorted(clips.iterdir())[:4]:
        shutil.copy(clip, folder / clip.name)
    params = {"inputs": str(folder), "model": MODEL, "language": "en", "formats": ["txt"]}

    kernels = [start_job("media.transcribe", params) for _ in range(2)]
    reports = [finish(kernel) for kernel in kernels]

    results = [report["result"] for report in reports]
    assert [r["failed"] for r in results] == [0, 0], reports
    assert [r["done"] + r["skipped"] for r in results] == [4, 4]
    assert sum(r["done"] for r in results) == 4  # each file once
    assert not set(results[0]["outputs"]) & set(results[1]["outputs"])
    assert len(list(folder.glob("*.txt"))) == 4


async def test_typos_are_refused_before_the_model_download(
    manager: JobManager, mirror: LoopbackServer, clips: Path, tmp_path: Path
) -> None:
    job = TranscribeJob(clips, formats="srt", output_dir=tmp_path / "out")
    assert (job.inputs, job.formats) == (str(clips), ["srt"])
    assert job.output_dir == str(tmp_path / "out")
    assert TranscribeJob.from_params(json.loads(json.dumps(job.params()))) == job

    wrong_language = manager.dispatch(TranscribeJob(clips, model=MODEL, language="xx"))
    with pytest.raises(ValueError, match="unknown language 'xx': valid codes are af, am, ar"):
        await wrong_language
    missing = manager.dispatch(TranscribeJob(clips.parent / "clisp", model=MODEL))
    with pytest.raises(FileNotFoundError, match="clisp"):
        await missing
    assert wrong_language.children == [] and missing.children == []  # nothing downloaded
