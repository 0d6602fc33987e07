"""openai-whisper inside a job: cached models, and progress and interrupts from within a file.

``whisper.transcribe`` reports through ``tqdm.tqdm(total=<mel frames>)`` in its own module,
calling ``update()`` after each 30-second window. A stand-in for that ``tqdm`` forwards those
updates to the running job (found through context variables, so it is thread-safe and inert
outside jobs) and checks the job's token there. A window can take long (temperature fallback
decodes it up to six times), so the token is also checked before every forward pass of the
encoder and decoder: cancel and pause act within one decoding step.
"""

from __future__ import annotations

import contextvars
import importlib
import threading
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tqdm as real_tqdm

from ..engine import current_token

#: How many loaded models stay in memory, most recently used first.
MODEL_CACHE_SIZE = 2

_on_frames: contextvars.ContextVar[Callable[[float, float], None] | None] = contextvars.ContextVar(
    "ipyjobs_whisper_frames", default=None
)


class _JobProgressBar:
    """Just enough of ``tqdm.tqdm`` for whisper.transcribe, reporting to the running job."""

    def __init__(self, *args: Any, total: int = 0, **kwargs: Any) -> None:
        self.total = total
        self.n = 0
        self._report = _on_frames.get()
        self._fallback = None if self._report else real_tqdm.tqdm(*args, total=total, **kwargs)

    def update(self, n: int = 1) -> None:
        if self._fallback is not None:
            self._fallback.update(n)
            return
        self.n += n
        assert self._report is not None  # no fallback bar: a job receives the frames
        self._report(self.n, self.total)
        token = current_token()
        if token is not None:
            token.check()  # raises JobCancelled, or waits here while paused

    def __enter__(self) -> _JobProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fallback is not None:
            self._fallback.close()


def _install() -> None:
    # ``whisper.transcribe`` is also the name of a function the package exports: go by module.
    module = importlib.import_module("whisper.transcribe")
    if not getattr(module.tqdm, "_ipyjobs", False):
        module.tqdm = types.SimpleNamespace(tqdm=_JobProgressBar, _ipyjobs=True)  # type: ignore[attr-defined]


@contextmanager
def reporting_frames(on_frames: Callable[[float, float], None]) -> Iterator[None]:
    """Within the block (in this thread), whisper's frame progress goes to ``on_frames``."""
    _install()
    reset = _on_frames.set(on_frames)
    try:
        yield
    finally:
        _on_frames.reset(reset)


def _check_token(module: Any, args: Any) -> None:
    token = current_token()
    if token is not None:
        token.check()


class ModelCache:
    """Loaded models of this process, most recently used last, at most ``MODEL_CACHE_SIZE``:
    the next job in the kernel starts at once. Shared by both engines (memory is shared too)."""

    def __init__(self) -> None:
        self._models: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...], load: Callable[[], Any]) -> Any:
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = self._models[key] = load()
                while len(self._models) > MODEL_CACHE_SIZE:
                    self._models.popitem(last=False)
            self._models.move_to_end(key)
            return model

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


_models = ModelCache()


def load_model(path: Path, device: str, alignment_name: str | None) -> Any:
    """Load a checkpoint once per process (see :class:`ModelCache`). Loaded by path, whisper
    knows no alignment heads: set the official ones for catalog models, which word timestamps
    need."""

    def load() -> Any:
        import whisper

        model = whisper.load_model(str(path), device=device)
        model.encoder.register_forward_pre_hook(_check_token)
        model.decoder.register_forward_pre_hook(_check_token)
        if alignment_name in whisper._ALIGNMENT_HEADS:
            model.set_alignment_heads(whisper._ALIGNMENT_HEADS[alignment_name])
        return model

    return _models.get(("openai-whisper", str(path), device), load)


def transcribe(
    path: Path, device: str, alignment_name: str | None, audio: Any, options: dict[str, Any],
    on_progress: Callable[[float, float], None],
) -> dict[str, Any]:  # fmt: skip
    """One file's samples through openai-whisper (in a worker thread): whisper's result dict.
    ``on_progress(done, total)`` after each 30-second window; cancel and pause act within one
    decoding step (the token is checked before every forward pass)."""
    model = load_model(path, device, alignment_name)
    with reporting_frames(on_progress):
        return model.transcribe(audio, **options)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def language_code(language: str | None) -> str | None:
    """Whisper's code for ``language`` (a code such as ``"de"`` or a name such as
    ``"German"``), or ``ValueError`` listing the valid codes. ``None`` (detect) stays ``None``."""
    if language is None:
        return None
    from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    wanted = language.strip().lower()
    if wanted in LANGUAGES:
        return wanted
    if wanted in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[wanted]
    raise ValueError(
        f"unknown language {language!r}: valid codes are {', '.join(sorted(LANGUAGES))} "
        "(or their English names, such as 'german'; None detects the language of each file)"
    )
