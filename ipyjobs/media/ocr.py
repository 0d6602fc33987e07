"""OCR of image files and folders with Tesseract, as a resumable engine job.

::

    handle = ipyjobs.jobs().dispatch(OcrJob("scans/", languages="eng+deu", formats=["txt", "pdf"]))

Each image gets ``<name>.<format>`` next to it (or below ``output_dir``) and a small
``<name>.ipyjobs.json`` marker; running the job again skips the files whose outputs exist with
the same settings, so an interrupted or cancelled job continues where it stopped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import anyio

from ..engine import Job, JobCancelled, JobContext, current_token
from ..engine.handle import error_text
from ..models import ModelStore, ensure_tessdata
from . import tesseract
from .batch import DoneMarker, discover, fingerprint, output_stems
from .executor import Executor

#: Image types searched for in folders (files named explicitly are always taken).
EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp")
VARIANTS = ("fast", "best")
NOT_AN_IMAGE = (
    "not an image file: no PNG, JPEG, TIFF, BMP, GIF, WebP, JPEG 2000 or PNM header "
    "(tesseract would read it as a list of image paths)"
)


@dataclass(frozen=True)
class FileTask:
    """One image's work, as plain data (so an executor may run it in another process)."""

    image: Path
    stem: Path
    """Outputs are ``<stem>.<format>``."""
    fingerprint: str
    pages: int
    tessdata: Path
    languages: str
    formats: tuple[str, ...]
    psm: int | None
    oem: int | None


@dataclass(frozen=True)
class FileResult:
    outputs: list[str]
    error: str | None = None


def output_file(stem: Path, fmt: str) -> Path:
    return stem.with_name(f"{stem.name}.{fmt}")


def ocr_file(task: FileTask) -> FileResult:
    """OCR one image: tesseract writes into a hidden temporary folder beside the outputs; on
    success each output is moved into place (``os.replace``), then the done-marker is written.

    A failure returns tesseract's message and leaves no output. On cancel (``JobCancelled``
    from the running process) the temporary folder is removed as well.
    """
    try:
        if not tesseract.is_image(task.image):
            return FileResult([], NOT_AN_IMAGE)
        task.stem.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{task.stem.name}.", suffix=".ocr", dir=task.stem.parent)
    except OSError as exc:  # unreadable image, output folder not writable...
        return FileResult([], error_text(exc))
    try:
        base = Path(tmp) / "out"
        args = tesseract.command(
            task.image,
            base,
            tessdata=task.tessdata,
            languages=task.languages,
            formats=task.formats,
            psm=task.psm,
            oem=task.oem,
        )
        started = time.monotonic()
        process = tesseract.run(args)
        seconds = time.monotonic() - started
        written = {fmt: output_file(base, fmt) for fmt in task.formats}
        missing = [fmt for fmt, path in written.items() if not path.is_file()]
        if process.returncode or missing:
            message = tesseract.error_message(process.stderr)
            if not process.returncode:
                message = f"tesseract wrote no {', '.join(missing)} output: {message}"
            return FileResult([], message)
        outputs = []
        for fmt, path in written.items():
            target = output_file(task.stem, fmt)
            os.replace(path, target)
            outputs.append(target)
        details = {"image": str(task.image), "pages": task.pages, "seconds": round(seconds, 3)}
        DoneMarker(task.stem, task.fingerprint).write(outputs, details)
        return FileResult([str(p) for p in outputs])
    except OSError as exc:
        return FileResult([], error_text(exc))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _as_names(value: str | Iterable[str], what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(str(v).strip().lower().lstrip(".") for v in items))
    if not names or "" in names:
        raise ValueError(f"{what} must name at least one value, got {value!r}")
    return names


@dataclass
class OcrJob(Job, kind="media.ocr"):
    """Recognise the text of image files (and folders of them, searched recursively).

    Tesseract runs as one single-threaded process per worker, ``workers`` files at a time. The
    language data comes from :func:`~ipyjobs.models.ensure_tessdata`: missing languages are
    downloaded as shared child jobs. A file tesseract cannot read is reported with
    ``ctx.item_failed`` and the job goes on (it completes with ``error_count > 0``).

    Cancel: running tesseract processes are killed and reaped within about 50 ms, their
    temporary outputs removed; files finished before keep their outputs. Pause: no new file is
    started, the running ones finish, then the job waits. Running the job again, or
    ``manager.resume(job_id)`` after an interruption, skips the finished files.

    The output is a dict: ``files``, ``done``, ``failed``, ``skipped``, ``pages`` (pages of the
    files done), ``seconds``, ``outputs`` (paths written by this run) and ``tessdata``.
    """

    resumable = True
    group = "ocr"
    #: Where per-file work runs; ``None``: the kernel's executor (``ctx.manager.executor``).
    #: A class attribute, not a parameter, so the job's parameters stay plain data.
    executor: ClassVar[Executor | None] = None

    inputs: str | list[str]
    """An image file or folder, or a list of them."""
    languages: str = "eng"
    """Tesseract language codes joined by ``+``: ``"eng+deu"``."""
    variant: str = "fast"
    """``fast`` or ``best`` language data."""
    output_dir: str | None = None
    """Where outputs go, keeping the layout below each input folder; ``None``: next to each
    image."""
    formats: tuple[str, ...] | list[str] = ("txt",)
    """Any of ``txt``, ``hocr``, ``tsv``, ``pdf`` (a searchable PDF)."""
    psm: int | None = None
    """Tesseract's page segmentation mode (0-13); ``None``: its default."""
    oem: int | None = None
    """Tesseract's engine mode (0-3); ``None``: its default."""
    extensions: tuple[str, ...] | list[str] = EXTENSIONS
    workers: int | None = None
    """Files processed at once; ``None``: the executor's size (``os.cpu_count()`` locally)."""

    def __post_init__(self) -> None:
        if isinstance(self.inputs, (str, os.PathLike)):
            self.inputs = os.fspath(self.inputs)
        else:
            self.inputs = [os.fspath(p) for p in self.inputs]
            if not self.inputs:
                raise ValueError("inputs is empty: give an image file or folder")
        self.output_dir = None if self.output_dir is None else os.fspath(self.output_dir)
        self.formats = _as_names(self.formats, "formats")
        unknown = [f for f in self.formats if f not in tesseract.FORMATS]
        if unknown:
            raise ValueError(
                f"unknown OCR output format(s) {', '.join(map(repr, unknown))}: valid formats "
                f"are {', '.join(tesseract.FORMATS)}"
            )
        self.extensions = _as_names(self.extensions, "extensions")
        codes = [code.strip() for code in self.languages.split("+")]
        if not all(codes):
            raise ValueError(f"languages must be codes joined by '+', got {self.languages!r}")
        self.languages = "+".join(codes)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be 'fast' or 'best', got {self.variant!r}")
        for name, highest in (("psm", 13), ("oem", 3)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or not 0 <= value <= highest):
                raise ValueError(f"{name} must be an integer from 0 to {highest}, got {value!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers!r}")

    @property
    def _paths(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)

    @property
    def title(self) -> str:
        first, *rest = self._paths
        name = Path(first).expanduser().absolute().name or first
        return f"OCR {name}" + (f" (+{len(rest)} more)" if rest else "")

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        started = time.monotonic()
        version = await ctx.run_sync(tesseract.tesseract_version)  # fails first if it is missing
        files = await ctx.run_sync(discover, self._paths, self.extensions)
        folder = await ensure_tessdata(ctx, self.languages, self.variant)
        store = ModelStore.at(ctx.manager.home)
        with ExitStack() as using:  # the language data cannot be deleted meanwhile
            for code in self.languages.split("+"):
                using.enter_context(store.using(store.catalog.tessdata(code, self.variant)))
            settings = {
                "tesseract": version,
                "languages": self.languages,
                "variant": self.variant,
                "psm": self.psm,
                "oem": self.oem,
                "formats": sorted(self.formats),
            }
            todo, skipped = await ctx.run_sync(self._plan, files, folder, settings)
            result = await self._run_files(ctx, todo, skipped)
        result.update(files=len(files), seconds=round(time.monotonic() - started, 3))
        result["tessdata"] = str(folder)
        ctx.log(
            f"OCR of {len(files)} files: {result['done']} done, {result['failed']} failed, "
            f"{result['skipped']} skipped, in {result['seconds']:.1f} s"
        )
        return result

    def _plan(
        self, files: list[Path], folder: Path, settings: dict[str, Any]
    ) -> tuple[list[FileTask], list[FileTask]]:
        """Split the files into those to do and those done before with the same settings."""
        token = current_token()
        output_dir = None if self.output_dir is None else Path(self.output_dir).expanduser()
        todo: list[FileTask] = []
        skipped: list[FileTask] = []
        for image, stem in zip(files, output_stems(files, output_dir, self._paths), strict=True):
            if token is not None:
                token.check()
            try:
                stat = image.stat()
                stamp = {"image": image.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            except OSError:  # gone meanwhile: its work reports why
                stamp = {"image": image.name}
            task = FileTask(
                image,
                stem,
                fingerprint({**settings, **stamp}),
                tesseract.page_count(image),
                folder,
                self.languages,
                tuple(self.formats),
                self.psm,
                self.oem,
            )
            done = DoneMarker(stem, task.fingerprint).is_done()
            (skipped if done else todo).append(task)
        return todo, skipped

    async def _run_files(
        self, ctx: JobContext, todo: list[FileTask], skipped: list[FileTask]
    ) -> dict[str, Any]:
        executor = self.executor or ctx.manager.executor
        size = self.workers or executor.workers
        total = sum(t.pages for t in todo) + sum(t.pages for t in skipped)
        counts = {"done": 0, "failed": 0, "skipped": len(skipped), "pages": 0}
        progressed = sum(t.pages for t in skipped)
        outputs: list[str] = []
        ctx.progress(progressed, total, unit="pages")
        if skipped:
            ctx.log(f"{len(skipped)} files already done with these settings: skipped")

        async def one(task: FileTask) -> None:
            nonlocal progressed
            try:
                result = await executor.run(ctx, ocr_file, task)
            except JobCancelled:
                return  # the job is being cancelled; the checkpoint below raises it once
            except Exception as exc:  # the executor's own failure: this file is not done
                result = FileResult([], error_text(exc))
            finally:
                slots.release()
            if result.error is None:
                counts["done"] += 1
                counts["pages"] += task.pages
                outputs.extend(result.outputs)
            else:
                counts["failed"] += 1
                ctx.item_failed(task.image, result.error)
            progressed += task.pages
            ctx.progress(progressed, total)

        slots = anyio.Semaphore(size)
        async with anyio.create_task_group() as tg:
            for task in todo:
                await _take_slot(ctx, slots, size)
                ctx.progress(item=task.image.name)
                tg.start_soon(one, task)
        await ctx.checkpoint()
        return {**counts, "outputs": outputs}


async def _take_slot(ctx: JobContext, slots: anyio.Semaphore, size: int) -> None:
    """Wait for a free worker, then honour cancel and pause. While paused, first let every
    running file finish, so that a paused job has no tesseract running."""
    await slots.acquire()
    while ctx.token.paused and not ctx.token.cancelled:
        held = 1
        try:
            while held < size:
                await slots.acquire()
                held += 1
            await ctx.checkpoint()
        finally:
            for _ in range(held - 1):
                slots.release()
    await ctx.checkpoint()
