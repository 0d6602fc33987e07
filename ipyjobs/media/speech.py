"""The speech-to-text job: openai-whisper or faster-whisper over a file, a list or a folder.

Phases: find the files and check the language (a typo never costs a download), make sure the
model is on disk (``ensure_model``; a download shows nested under the job; for faster-whisper
``ensure_converted``, a conversion of the same checkpoint nested the same way), then transcribe
the files in worker threads (faster-whisper on CPU: one file per core at once), with progress
and interrupt checks inside each file (:mod:`.whisper_runtime`, :mod:`.faster_runtime`). Each
file's outputs are written with whisper's own writers and committed with its done-marker
(:mod:`.outputs`): a file whose outputs exist for the same model, engine and options is skipped,
so an interrupted job resumes where it stopped, and a file another kernel is working on is left
to it. Any error of one file fails that file only.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from ..engine import Job, JobContext
from ..engine.job import UNSTORED
from ..models import ModelStore, ensure_converted, ensure_model
from . import faster_runtime, whisper_runtime
from .audio import SAMPLE_RATE, load_audio
from .batch import (
    FilesProgress,
    as_inputs,
    as_names,
    find_inputs,
    fingerprint,
    output_stems,
    run_file,
    take_slot,
)
from .executor import Executor, LocalExecutor, failing_with_the_loss, workers_of
from .outputs import FileOutcome, Staging, already_done, process_file
from .whisper_runtime import language_code

log = logging.getLogger(__name__)

AUDIO_VIDEO_EXTENSIONS = (
    "wav mp3 m4a aac flac ogg oga opus wma aiff aif amr mp4 m4v mov mkv webm avi wmv mpg mpeg 3gp"
).split()
FORMATS = ("txt", "srt", "vtt", "tsv", "json")
BACKENDS = ("auto", "faster-whisper", "openai-whisper")
#: faster-whisper's own default beam, used unless the job says ``beam_size``.
FASTER_BEAM_SIZE = 5
COMPUTE_TYPES = ("auto", "int8", "int8_float32", "int8_float16", "int16", "float16", "bfloat16",
                 "float32")  # fmt: skip


class FfmpegMissing(RuntimeError):
    """openai-whisper decodes audio with the ffmpeg binary, which is not installed."""


def faster_whisper_installed() -> bool:
    return importlib.util.find_spec("faster_whisper") is not None


def require_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None:
        raise FfmpegMissing(
            "ffmpeg is not installed, and openai-whisper needs it to read audio and video. "
            "Install it (Debian/Ubuntu: sudo apt-get install ffmpeg; macOS: brew install ffmpeg; "
            "conda: conda install -c conda-forge ffmpeg) and run the job again."
        )


@dataclass
class TranscribeJob(Job, kind="media.transcribe"):
    """Transcribe (or translate to English) audio and video files with Whisper.

    ``backend="auto"`` runs faster-whisper when it is installed (2-3 times faster on a CPU),
    else openai-whisper; both use the same verified checkpoint (faster-whisper's copy is
    converted from it on first use) and write the same files.
    """

    resumable = True
    group = "transcribe"

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
    """``None``: each engine's own default, greedy for openai-whisper's ``transcribe``, a beam
    of 5 for faster-whisper (:data:`FASTER_BEAM_SIZE`)."""
    temperature: float | None = None
    """``None`` keeps whisper's fallback schedule (0.0 to 1.0 when decoding fails)."""
    word_timestamps: bool = False
    device: str = "auto"
    backend: str = "auto"
    """``"faster-whisper"``, ``"openai-whisper"``, or ``"auto"``: faster-whisper if installed."""
    compute_type: str = "auto"
    """faster-whisper only: ``"auto"`` is int8 on a CPU, float16 on a GPU; float32 gives
    openai-whisper's transcripts exactly."""
    vad: bool = False
    """faster-whisper only: skip silence with the Silero VAD shipped inside faster-whisper."""
    batch_size: int | None = None
    """faster-whisper only: decode this many chunks at once (the batched pipeline, for long
    files); ``None`` decodes one 30-second window after the other, as openai-whisper does."""
    executor: Executor | None = field(default=None, kw_only=True, repr=False, metadata=UNSTORED)
    """Where the per-file work runs; ``None``: the kernel's executor (``jobs.use_dask``...).
    Not stored: a job resumed after a restart runs on its new kernel's executor."""

    def __post_init__(self) -> None:
        self.inputs = as_inputs(self.inputs)
        self.output_dir = None if self.output_dir is None else os.fspath(self.output_dir)
        self.formats = list(as_names(self.formats, "formats", FORMATS))
        self.extensions = list(as_names(self.extensions, "extensions"))
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if self.compute_type not in COMPUTE_TYPES:
            raise ValueError(
                f"compute_type must be one of {list(COMPUTE_TYPES)}, got {self.compute_type!r}"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive number, got {self.batch_size!r}")
        faster_only = [name for name, value, default in (
            ("compute_type", self.compute_type, "auto"), ("vad", self.vad, False),
            ("batch_size", self.batch_size, None)) if value != default]  # fmt: skip
        if faster_only and self.engine == "openai-whisper":
            why = "backend='openai-whisper'" if self.backend != "auto" else "it is not installed"
            raise ValueError(
                f"{', '.join(faster_only)} need(s) faster-whisper, but {why}: use "
                "backend='faster-whisper' (pip install faster-whisper) or drop the option"
            )

    @property
    def engine(self) -> str:
        """The backend that runs: ``"auto"`` resolved on this machine."""
        if self.backend != "auto":
            return self.backend
        return "faster-whisper" if faster_whisper_installed() else "openai-whisper"

    @property
    def title(self) -> str:
        inputs = [self.inputs] if isinstance(self.inputs, str) else self.inputs
        shown = inputs[0] if len(inputs) == 1 else f"{len(inputs)} inputs"
        return f"Transcribe {shown}"

    def _decode_options(self, engine: str, device: str, language: str | None) -> dict[str, Any]:
        """The engine's ``transcribe`` keywords, each engine's own decoding defaults unless
        ``beam_size`` is given: greedy for openai-whisper (exactly its transcripts), a beam of
        5 for faster-whisper (with int8 weights its greedy transcripts are worse than
        openai-whisper's: WER 0.300 against 0.257 on the bench's clips, 0.214 with the beam)."""
        options: dict[str, Any] = {
            "language": language,
            "task": self.task,
            "word_timestamps": self.word_timestamps,
        }
        if engine == "faster-whisper":
            beam = FASTER_BEAM_SIZE if self.beam_size is None else self.beam_size
            options.update(beam_size=beam, vad_filter=self.vad,
                           batch_size=self.batch_size)  # fmt: skip
        else:
            # fp16 only on a GPU (CPUs compute in float32 anyway); verbose=False shows whisper's
            # progress bar, which reports to the job
            options.update(fp16=device == "cuda", verbose=False)
            if self.beam_size is not None:
                options["beam_size"] = self.beam_size
        if self.temperature is not None:
            options["temperature"] = self.temperature
        return options

    async def _device(self, ctx: JobContext, runtime: Any) -> str:
        if self.device != "auto":
            return self.device
        device: str = await ctx.run_sync(runtime.default_device)
        return device

    async def _engine_model(self, ctx: JobContext, engine: str) -> tuple[Path, str, Any]:
        """The model path for ``engine``, the device, and what the runtime loads it with."""
        if engine == "openai-whisper":
            # ``default_device`` imports torch: seconds on a first import, so not on the loop.
            device = await self._device(ctx, whisper_runtime)
            path = await ensure_model(ctx, self.model)
            return path, device, ModelStore.at(ctx.manager.home).entry(self.model).name
        device = await self._device(ctx, faster_runtime)
        path = await ensure_converted(ctx, self.model)
        compute = self.compute_type
        if compute == "auto":
            compute = faster_runtime.default_compute_type(device)
        return path, device, compute

    @staticmethod
    async def _lanes(engine: str, device: str, executor: Executor, files: int) -> tuple[int, int]:
        """How many files are transcribed at once, and how many of them share one process.

        faster-whisper on CPU: one file per core, each on one thread of one loaded model (a
        30-s window keeps one core busier than two: 10 short clips took 0.56-0.48 of openai-
        whisper's time so, against 0.76-0.65 one at a time on both cores). A single file gets
        every core. openai-whisper (torch uses every core) and GPUs: one file at a time. On a
        cluster: one file per worker thread, each worker process using its own cores."""
        if not isinstance(executor, LocalExecutor):
            return await workers_of(executor), 1
        if engine != "faster-whisper" or device != "cpu":
            return 1, 1
        lanes = max(1, min(faster_runtime.cpu_threads(), files))
        return lanes, lanes

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        require_ffmpeg()
        started = time.monotonic()
        # Everything a typo could break is checked before a model download is spent on it.
        files = await find_inputs(ctx, self.inputs, self.extensions, "audio or video")
        language = await ctx.run_sync(language_code, self.language)
        engine = self.engine
        model_path, device, load_with = await self._engine_model(ctx, engine)
        entry = ModelStore.at(ctx.manager.home).entry(self.model)
        output_dir = Path(self.output_dir) if self.output_dir else None
        options = self._decode_options(engine, device, language)
        compute = {"compute_type": load_with} if engine == "faster-whisper" else {}
        settings = {"model": entry.id, "sha256": entry.sha256, "formats": self.formats,
                    "backend": engine, **compute, **options}  # fmt: skip
        summary: dict[str, Any] = {"done": 0, "failed": 0, "skipped": 0, "audio_seconds": 0.0,
                                   "backend": engine, **compute}  # fmt: skip
        outputs: list[str] = []
        stems = output_stems(files, output_dir, self.inputs)
        busy: list[int] = []
        stamp = fingerprint(settings)
        progress = FilesProgress(ctx, len(files))
        todo = []
        for index, stem in enumerate(stems):
            await ctx.checkpoint()
            if await ctx.run_sync(already_done, stem, stamp):
                summary["skipped"] += 1
                progress.finished(name=files[index].name)
            else:
                todo.append(index)
        executor = self.executor or ctx.manager.executor
        lanes, lanes_here = await self._lanes(engine, device, executor, len(todo))
        # a model that cannot load fails the job, not each file
        load = partial(faster_runtime.load_model, lanes=lanes_here) if compute else (
            whisper_runtime.load_model)  # fmt: skip
        await ctx.run_sync(load, model_path, device, load_with)
        how = f"{engine}, {load_with}" if compute else engine
        ctx.log(f"{len(todo)} of {len(files)} file(s) to transcribe with {entry.label} on "
                f"{device} ({how}), {lanes} at a time")  # fmt: skip

        async def one(index: int, wait: bool) -> None:
            file = files[index]
            progress.started(index, file.name)
            task = FileTask(engine, model_path, device, load_with, file, stems[index], stamp,
                            self.formats, options, lanes_here)  # fmt: skip
            on_progress = partial(_advanced, progress, index)
            outcome = await run_file(ctx, executor, file, transcribe_file, task, on_progress, wait)
            if outcome.status == "busy":
                busy.append(index)
                return
            if outcome.status == "done":
                outputs.extend(outcome.outputs)
                summary["audio_seconds"] += outcome.details["audio_seconds"]
            summary[outcome.status] += 1
            progress.finished(index)

        async def in_slot(index: int) -> None:
            try:
                await one(index, wait=False)
            finally:
                slots.release()

        slots = anyio.Semaphore(lanes)
        with failing_with_the_loss():
            async with anyio.create_task_group() as tg:
                for index in todo:
                    await take_slot(ctx, slots, lanes)
                    tg.start_soon(in_slot, index)
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


@dataclass(frozen=True)
class FileTask:
    """One file's work, as plain data (an executor may run it in another process)."""

    engine: str
    model_path: Path
    device: str
    load_with: str
    file: Path
    stem: Path
    fingerprint: str
    formats: list[str]
    options: dict[str, Any]
    lanes: int = 1
    """Files transcribed at once in the process that runs this one (they share its cores)."""


def _advanced(progress: FilesProgress, index: int, done: float, total: float) -> None:
    """A file's own progress (a module-level function: a cluster calls it back by reference)."""
    progress.advanced(index, done / total if total else 0.0)


def transcribe_file(task: FileTask, on_progress: Any, wait: bool = False) -> FileOutcome:
    """Transcribe one file (in a worker thread, here or on a cluster worker), its outputs
    committed with the done-marker by :func:`.outputs.process_file`.

    ``on_progress(done, total)`` is the only callable passed: an executor on a cluster calls
    it back in the kernel. ``wait``: wait for another job's claim on the file."""
    work = partial(_transcribe_file, task, on_progress)
    return process_file(task.file, task.stem, task.fingerprint, task.formats, work, wait)


def _transcribe_file(task: FileTask, on_progress: Any, staging: Staging) -> dict[str, Any]:
    """One file, in a worker thread: decode, transcribe, write each format into ``staging``
    (committed with the done-marker by :func:`.outputs.process_file`).

    ``task.load_with`` is the alignment-heads name for openai-whisper, the compute type for
    faster-whisper. On cancel nothing is committed (the runtimes raise before the writers)."""
    from whisper.utils import get_writer

    file = task.file
    audio = load_audio(file)  # FileFailed with ffmpeg's reason if unreadable
    if task.engine == "faster-whisper":
        result = faster_runtime.transcribe(task.model_path, task.device, task.load_with, audio,
                                           task.options, on_progress, lanes=task.lanes)  # fmt: skip
    else:
        result = whisper_runtime.transcribe(task.model_path, task.device, task.load_with, audio,
                                            task.options, on_progress)  # fmt: skip
    writer_options = {"highlight_words": False, "max_line_width": None,
                      "max_line_count": None, "max_words_per_line": None}  # fmt: skip
    for fmt in task.formats:
        writer = get_writer(fmt, str(staging.folder))
        with open(staging.output(fmt), "w", encoding="utf-8") as out:
            writer.write_result(result, file=out, options=writer_options)
    return {"file": str(file), "audio_seconds": len(audio) / SAMPLE_RATE}
