"""Decoding audio with the ffmpeg program, as openai-whisper does, but as a job's child.

``whisper.load_audio`` runs ffmpeg with ``subprocess.run``: a cancel cannot stop it, it
survives a killed kernel, and a failure raises ~2,000 characters of ffmpeg's banner and stream
list before the reason. :func:`load_audio` runs the same decoding through
:func:`.children.run` (killed on cancel, dies with the kernel) and fails with
:class:`.causes.FileFailed`: ffmpeg's meaningful line, the whole stderr for the log.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import children
from .causes import FileFailed, ffmpeg_cause

SAMPLE_RATE = 16_000


def load_audio(file: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples in [-1, 1) at ``sample_rate`` (whisper's own conversion)."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-threads", "0", "-i", str(file), "-f", "s16le",
            "-ac", "1", "-acodec", "pcm_s16le", "-ar", str(sample_rate), "-"]  # fmt: skip
    process = children.run(args)
    if process.returncode:
        stderr = process.stderr.decode("utf-8", "replace")
        raise FileFailed(f"Failed to load audio: {ffmpeg_cause(stderr, file)}", stderr)
    return np.frombuffer(process.stdout, np.int16).flatten().astype(np.float32) / 32768.0
