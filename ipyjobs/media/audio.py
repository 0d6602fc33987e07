"""Decoding audio: with the ffmpeg program, as openai-whisper does, but as a job's child; or in
this process with PyAV, for faster-whisper.

``whisper.load_audio`` runs ffmpeg with ``subprocess.run``: a cancel cannot stop it, it
survives a killed kernel, and a failure raises ~2,000 characters of ffmpeg's banner and stream
list before the reason. :func:`load_audio` runs the same decoding through
:func:`.children.run` (killed on cancel, dies with the kernel) and fails with
:class:`.causes.FileFailed`: ffmpeg's meaningful line, the whole stderr for the log.

:func:`decode_audio` decodes in this process with PyAV (the FFmpeg libraries faster-whisper
itself decodes with): starting ffmpeg took ~0.1 s a file, a fifth of a short clip's
transcription with faster-whisper. The job's token is checked every :data:`CHECK_EVERY` frames,
so a cancel or pause acts while a long file decodes. A file PyAV cannot read goes to
:func:`load_audio`, which decodes it or fails with ffmpeg's own reason.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import current_token
from . import children
from .causes import FileFailed, ffmpeg_cause

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
#: Decoded frames between two checks of the job's token (a few seconds of audio at most).
CHECK_EVERY = 200


def load_audio(file: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples in [-1, 1) at ``sample_rate`` (whisper's own conversion)."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-threads", "0", "-i", str(file), "-f", "s16le",
            "-ac", "1", "-acodec", "pcm_s16le", "-ar", str(sample_rate), "-"]  # fmt: skip
    process = children.run(args)
    if process.returncode:
        stderr = process.stderr.decode("utf-8", "replace")
        raise FileFailed(f"Failed to load audio: {ffmpeg_cause(stderr, file)}", stderr)
    return np.frombuffer(process.stdout, np.int16).flatten().astype(np.float32) / 32768.0


def decode_audio(file: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """What :func:`load_audio` returns, decoded in this process; ffmpeg's program only for a
    file PyAV cannot read (for its error, or its wider reach)."""
    import av

    try:
        return _pyav_samples(av, file, sample_rate)
    except (av.FFmpegError, _NoAudio) as exc:
        log.info("PyAV cannot decode %s (%s): using the ffmpeg program", file, exc)
        return load_audio(file, sample_rate)


class _NoAudio(Exception):
    pass


def _pyav_samples(av: Any, file: Path, sample_rate: int) -> np.ndarray:
    token = current_token()
    pieces: list[np.ndarray] = []
    with av.open(str(file), metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise _NoAudio("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        for count, frame in enumerate(container.decode(stream)):
            if token is not None and count % CHECK_EVERY == 0:
                token.check()  # raises Cancelled, or waits here while paused
            pieces.extend(piece.to_ndarray() for piece in resampler.resample(frame))
        pieces.extend(piece.to_ndarray() for piece in resampler.resample(None))
    if not pieces:
        raise _NoAudio("no audio samples")
    return np.concatenate(pieces, axis=None).astype(np.float32) / 32768.0
