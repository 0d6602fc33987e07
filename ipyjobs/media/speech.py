"""The speech-to-text job: openai-whisper over a file, a list or a folder.

Phases: find the files and check the language (a typo never costs a download), make sure the
model is on disk (``ensure_model``; a download shows nested under the job), then transcribe the
files one at a time in a worker thread, with progress and interrupt checks at every 30-second
window. Each file's outputs are written with whisper's own writers and committed with its
done-marker (:mod:`.outputs`): a file whose outputs exist for the same model and options is
skipped, so an interrupted job resumes where it stopped, and a file another kernel is working on
is left to it. Any error of one file fails that file only.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from ..engine import Job, JobContext
from ..models import ModelStore, ensure_model
from .audio import SAMPLE_RATE, load_audio
from .batch import as_inputs, as_names, find_inputs, fingerprint, output_stems, run_file
from .executor import Executor
from .outputs import Staging, already_done, process_file
from .whisper_runtime import default_device, language_code, load_model, reporting_frames

log = logging.getLogger(__name__)

AUDIO_VIDEO_EXTENSIONS = (
    "wav mp3 m4a aac flac ogg oga opus wma aiff aif amr mp4 m4v mov mkv webm avi wmv mpg mpeg 3gp"
).split()
FORMATS = ("txt", "srt", "vtt", "tsv", "json")


class FfmpegMissing(RuntimeError):
    """openai-whisper decodes audio with the ffmpeg binary, which is not installed."""


def require_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None:
        raise FfmpegMissing(
            "ffmpeg is not installed, and openai-whisper needs it to read audio and video. "
            "Install it (Debian/Ubuntu: sudo apt-get install ffmpeg; macOS: brew install ffmpeg; "
            "conda: conda install -c conda-forge ffmpeg) and run the job again."
        )


@dataclass
class TranscribeJob(Job, kind="media.transcribe"):
    """Transcribe (or translate to English) audio and video files with openai-whisper."""

    resumable = True
    group = "transcribe"
    #: Where per-file work runs; ``None``: the kernel's executor (``ctx.manager.executor``).
    executor: ClassVar[Executor | None] = None

    inputs: str | list[str]
    model: str = "base"
    language: str | None = None
    """``None`` detects the language of each file."""
    task: str = "transcribe"
    formats: list[str] = field(default_factory=lambda: ["txt", "srt", "vtt"])
    output_dir: str | None = None
    """``None`` writes next to each file."""
    extensions: list[str] = field(default_factory=lambda: list(AUDIO_VIDEO_EXTENSIONS))
    beam_size: int | None = None
    temperature: float | None = None
    """``None`` keeps whisper's fallback schedule (0.0 to 1.0 when decoding fails)."""
    word_timestamps: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        self.inputs = as_inputs(self.inputs)
        self.output_dir = None if self.output_dir is None else os.fspath(self.output_dir)
        self.formats = list(as_names(self.formats, "formats", FORMATS))
        self.extensions = list(as_names(self.extensions, "extensions"))
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")

    @property
    def title(self) -> str:
        inputs = [self.inputs] if isinstance(self.inputs, str) else self.inputs
        shown = inputs[0] if len(inputs) == 1 else f"{len(inputs)} inputs"
        return f"Transcribe {shown}"

    def _decode_options(self, device: str, language: str | None) -> dict[str, Any]:
        options: dict[str, Any] = {
            "language": language,
            "task": self.task,
            "fp16": device == "cuda",  # CPUs compute in float32 anyway, with a warning
            "word_timestamps": self.word_timestamps,
            "verbose": False,  # shows whisper's progress bar, which reports to the job
        }
        if self.beam_size is not None:
            options["beam_size"] = self.beam_size
        if self.temperature is not None:
            options["temperature"] = self.temperature
        return options

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        require_ffmpeg()
        started = time.monotonic()
        # Everything a typo could break is checked before a model download is spent on it.
        files = await find_inputs(ctx, self.inputs, self.extensions, "audio or video")
        language = await ctx.run_sync(language_code, self.language)
        model_path = await ensure_model(ctx, self.model)
        entry = ModelStore.at(ctx.manager.home).entry(self.model)
        output_dir = Path(self.output_dir) if self.output_dir else None
        device = default_device() if self.device == "auto" else self.device
        options = self._decode_options(device, language)
        settings = {"model": entry.id, "sha256": entry.sha256, "formats": self.formats, **options}
        await ctx.run_sync(load_model, model_path, device, entry.name)  # fails the job, not a file
        ctx.log(f"{len(files)} file(s) to transcribe with {entry.label} on {device}")
        summary: dict[str, Any] = {"done": 0, "failed": 0, "skipped": 0, "audio_seconds": 0.0}
        outputs: list[str] = []
        stems = output_stems(files, output_dir, self.inputs)
        busy: list[int] = []
        stamp = fingerprint(settings)

        async def one(index: int, wait: bool) -> None:
            file, stem = files[index], stems[index]
            ctx.progress(index, len(files), item=file.name, unit="files")

            def on_frames(done: int, total: int) -> None:
                ctx.progress(index + (done / total if total else 0), len(files))

            work = partial(_transcribe_file, model_path, device, entry.name, file,
                           self.formats, options, on_frames)  # fmt: skip
            outcome = await run_file(ctx, self.executor or ctx.manager.executor, file, process_file,
                                     file, stem, stamp, self.formats, work, wait)  # fmt: skip
            if outcome.status == "busy":
                busy.append(index)
                return
            if outcome.status == "done":
                outputs.extend(outcome.outputs)
                summary["audio_seconds"] += outcome.details["audio_seconds"]
            summary[outcome.status] += 1
            ctx.progress(index + 1, len(files))

        for index, stem in enumerate(stems):
            await ctx.checkpoint()
            if await ctx.run_sync(already_done, stem, stamp):
                summary["skipped"] += 1
                ctx.progress(index + 1, len(files), item=files[index].name, unit="files")
                continue
            await one(index, wait=False)
        for index in list(busy):  # held by another job: wait for its claim, then see
            await ctx.checkpoint()
            await one(index, wait=True)
        processing = time.monotonic() - started
        audio = summary["audio_seconds"]
        return {
            **summary,
            "processing_seconds": round(processing, 2),
            "real_time_factor": round(processing / audio, 3) if audio else None,
            "outputs": outputs,
            "model": str(model_path),
        }


def _transcribe_file(
    model_path: Path,
    device: str,
    model_name: str,
    file: Path,
    formats: list[str],
    options: dict[str, Any],
    on_frames: Any,
    staging: Staging,
) -> dict[str, Any]:
    """One file, in a worker thread: decode, transcribe, write each format into ``staging``
    (committed with the done-marker by :func:`.outputs.process_file`)."""
    from whisper.utils import get_writer

    audio = load_audio(file)  # FileFailed with ffmpeg's reason if unreadable
    model = load_model(model_path, device, model_name)
    with reporting_frames(on_frames):
        result = model.transcribe(audio, **options)
    writer_options = {"highlight_words": False, "max_line_width": None,
                      "max_line_count": None, "max_words_per_line": None}  # fmt: skip
    for fmt in formats:
        writer = get_writer(fmt, str(staging.folder))
        with open(staging.output(fmt), "w", encoding="utf-8") as out:
            writer.write_result(result, file=out, options=writer_options)
    return {"file": str(file), "audio_seconds": len(audio) / SAMPLE_RATE}
