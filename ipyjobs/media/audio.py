"""Audio decoding shared by both speech engines: the ffmpeg binary, as openai-whisper does it.

Both engines get the very same samples (so their transcripts can be compared) and an unreadable
file fails the same way, with ffmpeg's own words, whichever engine runs.
"""

from __future__ import annotations

import subprocess

import numpy as np

SAMPLE_RATE = 16_000


def load_audio(file: str) -> np.ndarray:
    """Decode ``file`` to 16 kHz mono float32 samples in [-1, 1].

    Raises ``RuntimeError("Failed to load audio: <ffmpeg's stderr>")`` when ffmpeg cannot read
    it (the message openai-whisper gives). Runs to the end once started: cancel acts after it.
    """
    command = ["ffmpeg", "-nostdin", "-threads", "0", "-i", file, "-f", "s16le", "-ac", "1",
               "-acodec", "pcm_s16le", "-ar", str(SAMPLE_RATE), "-"]  # fmt: skip
    try:
        out = subprocess.run(command, capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"Failed to load audio: {exc.stderr.decode(errors='replace')}") from exc
    return np.frombuffer(out, np.int16).astype(np.float32) / 32768.0
