"""The speech-to-text job: openai-whisper over a file, a list or a folder.

Phases: make sure the model is on disk (``ensure_model``; a download shows nested under the
job), find the files, then transcribe them one at a time in a worker thread, with progress and
interrupt checks at every 30-second window. Outputs are written with whisper's own writers,
atomically; a file whose outputs exist for the same model and options is skipped, so an
interrupted job resumes where it stopped.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..engine import Job, JobContext
from ..engine.handle import error_text
from ..models import ModelStore, ensure_model
from .batch import DoneMarker, atomic_path, discover, fingerprint, output_stems
from .executor import Executor
from .whisper_runtime import default_device, load_model, reporting_frames

log = logging.getLogger(__name__)

AUDIO_VIDEO_EXTENSIONS = (
    "wav mp3 m4a aac flac ogg oga opus wma aiff aif amr mp4 m4v mov mkv webm avi wmv mpg mpeg 3gp"
).split()
FORMATS = ("txt", "srt", "vtt", "tsv", "json")
SAMPLE_RATE = 16_000


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
        unknown = sorted(set(self.formats) - set(FORMATS))
        if unknown:
            raise ValueError(f"unknown output format(s) {unknown}: choose from {list(FORMATS)}")
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")

    @property
    def title(self) -> str:
        inputs = [self.inputs] if isinstance(self.inputs, str) else self.inputs
        shown = inputs[0] if len(inputs) == 1 else f"{len(inputs)} inputs"
        return f"Transcribe {shown}"

    def _decode_options(self, device: str) -> dict[str, Any]:
        options: dict[str, Any] = {
            "language": self.language,
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
        model_path = await ensure_model(ctx, self.model)
        entry = ModelStore.at(ctx.manager.home).entry(self.model)
        files = discover(self.inputs, self.extensions)
        output_dir = Path(self.output_dir) if self.output_dir else None
        # ``default_device`` imports torch: seconds on a first import, so not on the loop.
        device = await ctx.run_sync(default_device) if self.device == "auto" else self.device
        options = self._decode_options(device)
        settings = {"model": entry.id, "sha256": entry.sha256, "formats": self.formats, **options}
        ctx.log(f"{len(files)} file(s) to transcribe with {entry.label} on {device}")
        summary: dict[str, Any] = {"done": 0, "failed": 0, "skipped": 0, "audio_seconds": 0.0}
        outputs: list[str] = []
        stems = output_stems(files, output_dir, self.inputs)
        for index, (file, stem) in enumerate(zip(files, stems, strict=True)):
            await ctx.checkpoint()
            marker = DoneMarker(stem, fingerprint(settings))
            if marker.is_done():
                summary["skipped"] += 1
                ctx.progress(index + 1, len(files), item=file.name, unit="files")
                continue
            ctx.progress(index, len(files), item=file.name, unit="files")

            def on_frames(done: int, total: int, index: int = index) -> None:
                ctx.progress(index + (done / total if total else 0), len(files))

            try:
                written, seconds = await (self.executor or ctx.manager.executor).run(
                    ctx, _transcribe_file, model_path, device, entry.name, file, stem,
                    self.formats, options, on_frames,
                )  # fmt: skip
            except RuntimeError as exc:  # whisper reports ffmpeg's error text this way
                ctx.item_failed(file, error_text(exc))
                summary["failed"] += 1
                continue
            marker.write(written, {"file": str(file), "audio_seconds": seconds})
            outputs.extend(str(p) for p in written)
            summary["done"] += 1
            summary["audio_seconds"] += seconds
            ctx.progress(index + 1, len(files))
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
    stem: Path,
    formats: list[str],
    options: dict[str, Any],
    on_frames: Any,
) -> tuple[list[Path], float]:
    """One file, in a worker thread: decode, transcribe, write each format atomically."""
    import whisper
    from whisper.utils import get_writer

    audio = whisper.load_audio(str(file))  # RuntimeError with ffmpeg's stderr if unreadable
    model = load_model(model_path, device, model_name)
    with reporting_frames(on_frames):
        result = model.transcribe(audio, **options)
    written = []
    writer_options = {"highlight_words": False, "max_line_width": None,
                      "max_line_count": None, "max_words_per_line": None}  # fmt: skip
    for fmt in formats:
        target = stem.with_name(f"{stem.name}.{fmt}")
        writer = get_writer(fmt, str(target.parent))
        with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as out:
            writer.write_result(result, file=out, options=writer_options)
        written.append(target)
    return written, len(audio) / SAMPLE_RATE
