"""faster-whisper (CTranslate2) inside a job: cached models, interrupts and progress within a
file, and openai-whisper's result dict so whisper's own writers make the output files.

faster-whisper returns its segments lazily: each one is decoded when asked for. The job's token
is checked between segments, and also before every call into the CTranslate2 model (encode,
generate, language detection, word alignment): that is between 30-second windows, VAD chunks
and batches, so cancel and pause act within one decoding call. In-file progress is the end time
of the last segment over the file's duration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engine import current_token
from ..models.catalog import CONVERTED_FILES
from ..models.ct2_whisper import FLOAT_MODEL
from .audio import SAMPLE_RATE
from .whisper_runtime import _models

#: Calls into the CTranslate2 model that are checked first (each can take a while).
CHECKED_CALLS = frozenset({"encode", "generate", "detect_language", "align"})
#: The window the batched pipeline cuts a file into when VAD is off.
CHUNK_SECONDS = 30


def _check_token(call: str) -> None:
    """Before a CTranslate2 call (looked up at call time, so tests can observe the calls)."""
    token = current_token()
    if token is not None:
        token.check()  # raises Cancelled, or waits here while paused


class _CheckedModel:
    """The ``ctranslate2.models.Whisper`` of a loaded model, with the token checked before each
    of :data:`CHECKED_CALLS`; everything else passes through."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._model, name)
        if name not in CHECKED_CALLS:
            return value

        def checked(*args: Any, **kwargs: Any) -> Any:
            _check_token(name)
            return value(*args, **kwargs)

        return checked


def default_compute_type(device: str) -> str:
    """int8 on CPU (fastest there, WER within a hair of float32), float16 on a GPU."""
    return "float16" if device == "cuda" else "int8"


def default_device() -> str:
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def cpu_threads() -> int:
    """The cores this process may run on. faster-whisper's default is 4 threads whatever the
    machine: on 2 cores that oversubscribes them (the encoder took 0.26 s a window against
    0.22 s with 2 threads)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_model(folder: Path, device: str, compute_type: str, lanes: int = 1) -> Any:
    """A ``faster_whisper.WhisperModel`` for a converted folder, loaded once per process.

    int8 compute types load the folder's int8 ``model.bin``; the others its float weights
    (``model.float.bin``, handed to CTranslate2 in place of ``model.bin``). ``lanes``: files
    transcribed at once from as many threads; on CPU they share the cores, and CTranslate2
    runs that many calls in parallel on one copy of the weights."""

    def load() -> Any:
        from faster_whisper import WhisperModel

        threads = max(1, cpu_threads() // lanes) if device == "cpu" else 0
        with contextlib.ExitStack() as stack:
            files: dict[str, Any] | None = None
            if not compute_type.startswith("int8"):
                files = {n: (folder / n).read_bytes() for n in CONVERTED_FILES
                         if n not in ("model.bin", FLOAT_MODEL)}  # fmt: skip
                files["model.bin"] = stack.enter_context(open(folder / FLOAT_MODEL, "rb"))
            model = WhisperModel(str(folder), device, compute_type=compute_type,
                                 cpu_threads=threads, num_workers=lanes, files=files)  # fmt: skip
        model.model = _CheckedModel(model.model)
        return model

    return _models.get(("faster-whisper", str(folder), device, compute_type, str(lanes)), load)


def _result(segments: list[Any], language: str) -> dict[str, Any]:
    """openai-whisper's result dict from faster-whisper segments (what whisper's writers read)."""
    rows = []
    for segment in segments:
        row = dataclasses.asdict(segment)
        if row["words"] is None:
            del row["words"]
        rows.append(row)
    return {"text": "".join(s.text for s in segments), "segments": rows, "language": language}


def transcribe(
    folder: Path, device: str, compute_type: str, audio: Any, options: dict[str, Any],
    on_progress: Callable[[float, float], None], lanes: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """One file's samples through faster-whisper (in a worker thread): whisper's result dict.

    ``options`` are ``WhisperModel.transcribe`` keywords plus ``batch_size`` (``None``: the
    sequential decoder; a number: the batched pipeline, over VAD chunks when ``vad_filter``,
    else over 30-second windows). ``lanes``: see :func:`load_model`.
    """
    from faster_whisper import BatchedInferencePipeline

    model = load_model(folder, device, compute_type, lanes)
    options = dict(options)
    batch_size = options.pop("batch_size", None)
    if batch_size is None:
        segments, info = model.transcribe(audio, **options)
    else:
        if not options.get("vad_filter"):  # the pipeline then needs the windows, in seconds
            seconds = len(audio) / SAMPLE_RATE
            options["clip_timestamps"] = [
                {"start": start, "end": min(start + CHUNK_SECONDS, seconds)}
                for start in range(0, math.ceil(seconds), CHUNK_SECONDS)
            ]
        pipeline = BatchedInferencePipeline(model)
        segments, info = pipeline.transcribe(audio, batch_size=batch_size, **options)
    done = []
    for segment in segments:  # each one is decoded here, on demand
        done.append(segment)
        on_progress(min(segment.end, info.duration), info.duration)
        _check_token("segment")
    return _result(done, info.language)
