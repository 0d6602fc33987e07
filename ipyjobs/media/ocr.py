"""OCR of image files and folders with Tesseract, as a resumable engine job.

::

    handle = ipyjobs.jobs().dispatch(OcrJob("scans/", languages="eng+deu", formats=["txt", "pdf"]))

Each image gets ``<name>.<format>`` next to it (or below ``output_dir``) and a small
``<name>.ipyjobs.json`` marker; running the job again skips the files whose outputs exist with
the same settings, so an interrupted or cancelled job continues where it stopped.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import anyio

from ..engine import Job, JobCancelled, JobContext, current_token
from ..models import ModelStore, ensure_tessdata
from . import tesseract
from .batch import as_inputs, as_names, find_inputs, fingerprint, output_stems, run_file
from .causes import FileFailed, check_space, tesseract_cause
from .executor import Executor, LocalExecutor
from .outputs import FileOutcome, Staging, already_done, process_file

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


def ocr_file(task: FileTask, wait: bool = False) -> FileOutcome:
    """OCR one image (in a worker thread): tesseract writes into the file's staging folder
    beside the outputs, which are then committed with the done-marker (:mod:`.outputs`).

    A failure returns tesseract's meaningful line and leaves no output. On cancel
    (``JobCancelled`` from the running process) the staging folder is removed as well.
    ``wait``: wait for another job's claim on the file rather than return ``busy``.
    """
    return process_file(task.image, task.stem, task.fingerprint, task.formats,
                        partial(_ocr_into, task), wait)  # fmt: skip


def _ocr_into(task: FileTask, staging: Staging) -> dict[str, Any]:
    if not tesseract.is_image(task.image):
        raise FileFailed(NOT_AN_IMAGE)
    args = tesseract.command(
        task.image,
        staging.base,
        tessdata=task.tessdata,
        languages=task.languages,
        formats=task.formats,
        psm=task.psm,
        oem=task.oem,
    )
    started = time.monotonic()
    process = tesseract.run(args)
    seconds = time.monotonic() - started
    missing = [fmt for fmt in task.formats if not staging.output(fmt).is_file()]
    if process.returncode or missing:
        cause = tesseract_cause(process.stderr)
        if cause is None:  # only chatter: a full disk says nothing else
            check_space(staging.folder, f"outputs of {task.image.name}")
            cause = f"tesseract failed (exit status {process.returncode}) without a reason"
        if not process.returncode:
            cause = f"tesseract wrote no {', '.join(missing)} output: {cause}"
        raise FileFailed(cause, process.stderr)
    return {"image": str(task.image), "pages": task.pages, "seconds": round(seconds, 3)}


@dataclass
class OcrJob(Job, kind="media.ocr"):
    """Recognise the text of image files (and folders of them, searched recursively).

    Tesseract runs as one single-threaded process per worker, ``workers`` files at a time. The
    language data comes from :func:`~ipyjobs.models.ensure_tessdata`: missing languages are
    downloaded as shared child jobs. A file tesseract cannot read is reported with
    ``ctx.item_failed`` and the job goes on (it completes with ``error_count > 0``).

    Each file's outputs are committed with its done-marker, or none is left (:mod:`.outputs`);
    any error of one file (a full disk, a name too long, ...) fails that file only, with its
    cause in one line. A file another kernel is working on is left to it (per-file claim) and
    looked at again at the end. Inputs, formats and languages are checked before any download.

    Cancel: running tesseract processes are killed and reaped within about 50 ms, their
    temporary outputs removed; files finished before keep their outputs. A killed kernel takes
    its tesseract processes with it; the next run removes what it left. Pause: no new file is
    started, the running ones finish, then the job waits. Running the job again, or
    ``manager.resume(job_id)`` after an interruption, skips the finished files.

    The output is a dict: ``files``, ``done``, ``failed``, ``skipped``, ``pages`` (pages of the
    files done), ``seconds``, ``outputs`` (paths written by this run) and ``tessdata``.
    """

    resumable = True
    group = "ocr"
    #: Where per-file work runs; ``None``: a :class:`LocalExecutor` with ``workers`` threads.
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
        self.inputs = as_inputs(self.inputs)
        self.output_dir = None if self.output_dir is None else os.fspath(self.output_dir)
        self.formats = as_names(self.formats, "formats", tesseract.FORMATS)
        self.extensions = as_names(self.extensions, "extensions")
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
        files = await find_inputs(ctx, self._paths, self.extensions, "image")
        store = ModelStore.at(ctx.manager.home)
        self._check_languages(store)
        folder = await ensure_tessdata(ctx, self.languages, self.variant)
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

    def _check_languages(self, store: ModelStore) -> None:
        """Unknown language codes are refused with the valid ones, before any download."""
        prefix = f"tessdata_{self.variant}/"
        known = sorted(n[len(prefix) :] for n in store.catalog.names() if n.startswith(prefix))
        unknown = [code for code in self.languages.split("+") if code not in known]
        if unknown:
            raise ValueError(
                f"unknown Tesseract language {', '.join(map(repr, unknown))}: valid codes "
                f"({self.variant}) are {', '.join(known)}"
            )

    def _plan(
        self, files: list[Path], folder: Path, settings: dict[str, Any]
    ) -> tuple[list[FileTask], list[FileTask]]:
        """Split the files into those to do and those done before with the same settings."""
        token = current_token()
        output_dir = None if self.output_dir is None else Path(self.output_dir).expanduser()
        todo, skipped = [], []
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
            done = already_done(stem, task.fingerprint)
            (skipped if done else todo).append(task)
        return todo, skipped

    async def _run_files(
        self, ctx: JobContext, todo: list[FileTask], skipped: list[FileTask]
    ) -> dict[str, Any]:
        executor = self.executor or LocalExecutor(self.workers)
        size = self.workers or executor.workers
        total = sum(t.pages for t in todo) + sum(t.pages for t in skipped)
        counts = {"done": 0, "failed": 0, "skipped": len(skipped), "pages": 0}
        progressed = sum(t.pages for t in skipped)
        outputs: list[str] = []
        ctx.progress(progressed, total, unit="pages")
        if skipped:
            ctx.log(f"{len(skipped)} files already done with these settings: skipped")

        busy: list[FileTask] = []

        async def one(task: FileTask, wait: bool) -> None:
            nonlocal progressed
            try:
                outcome = await run_file(ctx, executor, task.image, ocr_file, task, wait)
            except JobCancelled:
                return  # the job is being cancelled; the checkpoint below raises it once
            finally:
                slots.release()
            if outcome.status == "busy":
                busy.append(task)
                return
            counts[outcome.status] += 1
            if outcome.status == "done":
                counts["pages"] += task.pages
                outputs.extend(outcome.outputs)
            progressed += task.pages
            ctx.progress(progressed, total)

        slots = anyio.Semaphore(size)
        # Then the files another job held: wait for each, and do it if it is still not done.
        for batch, wait in ((todo, False), (busy, True)):
            async with anyio.create_task_group() as tg:
                for task in list(batch):
                    await _take_slot(ctx, slots, size)
                    ctx.progress(item=task.image.name)
                    tg.start_soon(one, task, wait)
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
