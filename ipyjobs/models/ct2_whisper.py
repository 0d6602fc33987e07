"""openai-whisper checkpoint -> CTranslate2 model folder, with CTranslate2's own model specs.

No transformers and no network: the weights come from the ``.pt`` file the catalog verified,
the tokenizer and vocabulary from openai-whisper's ``tiktoken`` assets
(:mod:`.whisper_tokenizer`). The weights are written twice:

- ``model.bin``: quantized to int8 here, every weight matrix including the encoder's two
  convolutions, as ``ct2-transformers-converter --quantization int8`` does. This is what an int8
  ``compute_type`` (the CPU default) loads. CTranslate2 quantizing float weights *at load* keeps
  the convolutions in float and, measured on the 10 speech clips of ``bench/speech.py`` with a
  beam of 5, gave WER 0.314 against 0.214 for this file (openai-whisper: 0.257); over 40 clips
  in 4 voices 0.246 against 0.225 (openai-whisper 0.307).
- ``model.float.bin``: the checkpoint's own float weights (float16 for openai's files, which is
  lossless), for the float compute types: float32 gives openai-whisper's transcripts exactly.
  :func:`ipyjobs.media.faster_runtime.load_model` picks the file.

Folder contents (``catalog.CONVERTED_FILES``): the two model files, ``config.json`` and
``vocabulary.json`` (CTranslate2's, the same for both), ``tokenizer.json``, and
``preprocessor_config.json`` (what faster-whisper's feature extractor reads).
"""

from __future__ import annotations

import base64
import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .catalog import CONVERTED_FILES
from .whisper_tokenizer import build_tokenizer_json, vocabulary

#: Reported to ``check`` between conversion steps (so cancel and pause act there).
STEPS = ("reading the checkpoint", "writing the float weights", "writing the int8 weights",
         "writing the tokenizer")  # fmt: skip
#: The float weights' file name inside the folder (``model.bin`` holds the int8 ones).
FLOAT_MODEL = "model.float.bin"


def _multilingual(dims: dict[str, int]) -> tuple[bool, int]:
    """Whether the model is multilingual, and its number of languages (whisper's own rule)."""
    multilingual = dims["n_vocab"] >= 51865
    return multilingual, dims["n_vocab"] - 51765 - int(multilingual)


def _alignment_heads(name: str, dims: dict[str, int]) -> list[tuple[int, int]]:
    """The official cross-attention heads for word timings, else whisper's default (all heads
    of the upper half of the decoder), as ``model.set_alignment_heads`` would set them."""
    import numpy as np
    import whisper

    layers, heads = dims["n_text_layer"], dims["n_text_head"]
    dump = whisper._ALIGNMENT_HEADS.get(name)
    if dump is None:
        return [(layer, head) for layer in range(layers // 2, layers) for head in range(heads)]
    mask = np.frombuffer(gzip.decompress(base64.b85decode(dump)), dtype=bool).reshape(layers, heads)
    return [(int(layer), int(head)) for layer, head in np.argwhere(mask)]


def _spec(state: dict[str, Any], dims: dict[str, int]) -> Any:
    """Fill a ``WhisperSpec`` from openai-whisper's state dict (names as in ``whisper.model``)."""
    import torch
    from ctranslate2.specs import whisper_spec

    spec = whisper_spec.WhisperSpec(
        dims["n_audio_layer"], dims["n_audio_head"], dims["n_text_layer"], dims["n_text_head"]
    )

    def linear(target: Any, prefix: str) -> None:
        target.weight = state[f"{prefix}.weight"]
        if f"{prefix}.bias" in state:
            target.bias = state[f"{prefix}.bias"]

    def fused(target: Any, prefixes: list[str]) -> None:
        """CTranslate2 fuses projections along the output rows; whisper's ``key`` has no bias,
        so it gets zeros (a constant added to every score of a query, which softmax ignores)."""
        weights = [state[f"{p}.weight"] for p in prefixes]
        target.weight = torch.cat(weights)
        target.bias = torch.cat([
            state.get(f"{p}.bias", torch.zeros(w.shape[0], dtype=w.dtype))
            for p, w in zip(prefixes, weights, strict=True)
        ])  # fmt: skip

    def norm(target: Any, prefix: str) -> None:
        target.gamma = state[f"{prefix}.weight"]
        target.beta = state[f"{prefix}.bias"]

    def block(layer: Any, prefix: str, cross: bool) -> None:
        attn = f"{prefix}.attn"
        fused(layer.self_attention.linear[0], [f"{attn}.query", f"{attn}.key", f"{attn}.value"])
        linear(layer.self_attention.linear[1], f"{attn}.out")
        norm(layer.self_attention.layer_norm, f"{prefix}.attn_ln")
        if cross:
            cross_attn = f"{prefix}.cross_attn"
            linear(layer.attention.linear[0], f"{cross_attn}.query")
            fused(layer.attention.linear[1], [f"{cross_attn}.key", f"{cross_attn}.value"])
            linear(layer.attention.linear[2], f"{cross_attn}.out")
            norm(layer.attention.layer_norm, f"{prefix}.cross_attn_ln")
        linear(layer.ffn.linear_0, f"{prefix}.mlp.0")
        linear(layer.ffn.linear_1, f"{prefix}.mlp.2")
        norm(layer.ffn.layer_norm, f"{prefix}.mlp_ln")

    encoder, decoder = spec.encoder, spec.decoder
    linear(encoder.conv1, "encoder.conv1")
    linear(encoder.conv2, "encoder.conv2")
    encoder.position_encodings.encodings = state["encoder.positional_embedding"]
    for i, layer in enumerate(encoder.layer):
        block(layer, f"encoder.blocks.{i}", cross=False)
    norm(encoder.layer_norm, "encoder.ln_post")
    decoder.embeddings.weight = state["decoder.token_embedding.weight"]
    decoder.projection.weight = state["decoder.token_embedding.weight"]  # tied, saved once
    decoder.position_encodings.encodings = state["decoder.positional_embedding"]
    for i, layer in enumerate(decoder.layer):
        block(layer, f"decoder.blocks.{i}", cross=True)
    norm(decoder.layer_norm, "decoder.ln")
    return spec


def _configure(spec: Any, name: str, dims: dict[str, int]) -> None:
    """Decoding settings: what openai-whisper computes from its tokenizer at run time."""
    import whisper.tokenizer

    multilingual, languages = _multilingual(dims)
    tokenizer = whisper.tokenizer.get_tokenizer(multilingual, num_languages=languages)
    config = spec.config
    config.suppress_ids = sorted({
        *tokenizer.non_speech_tokens, tokenizer.transcribe, tokenizer.translate, tokenizer.sot,
        tokenizer.sot_prev, tokenizer.sot_lm, tokenizer.no_speech,
    })  # fmt: skip
    config.suppress_ids_begin = [*tokenizer.encode(" "), tokenizer.eot]
    config.lang_ids = list(tokenizer.all_language_tokens)
    config.alignment_heads = _alignment_heads(name, dims)
    spec.register_vocabulary(vocabulary(multilingual, languages, dims["n_vocab"]))


def convert_checkpoint(
    checkpoint: Path, folder: Path, name: str, check: Callable[[str], None] = lambda step: None
) -> None:
    """Write the CTranslate2 model of ``checkpoint`` into ``folder`` (which must not exist).

    ``name`` is the whisper model name (for the official word-timing heads). ``check(step)``
    runs before each step of :data:`STEPS`: a job passes its token check, so a cancel stops the
    conversion between steps (the caller removes the unfinished folder).
    """
    import ctranslate2.converters
    import torch

    check(STEPS[0])
    loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    dims, state = loaded["dims"], loaded["model_state_dict"]

    def write(into: Path, quantization: str | None) -> None:
        """A fresh spec each time: quantizing replaces the spec's weights in place."""
        spec = _spec(state, dims)
        _configure(spec, name, dims)

        class _Loaded(ctranslate2.converters.Converter):
            def _load(self) -> Any:
                return spec

        _Loaded().convert(str(into), quantization=quantization)  # validates every shape

    check(STEPS[1])
    write(folder, None)  # refuses an existing folder
    (folder / "model.bin").rename(folder / FLOAT_MODEL)
    check(STEPS[2])
    int8 = folder / ".int8"
    write(int8, "int8")
    (int8 / "model.bin").rename(folder / "model.bin")  # config and vocabulary: the same files
    shutil.rmtree(int8)
    check(STEPS[3])
    multilingual, languages = _multilingual(dims)
    build_tokenizer_json(multilingual, languages, folder / "tokenizer.json")
    preprocessor = {
        "feature_size": dims["n_mels"], "sampling_rate": 16000, "hop_length": 160,
        "chunk_length": 30, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000,
    }  # fmt: skip
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=1))
    missing = [f for f in CONVERTED_FILES if not (folder / f).is_file()]
    if missing:
        raise RuntimeError(f"conversion of {checkpoint} did not write {missing} into {folder}")
