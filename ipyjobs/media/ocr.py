"""OCR of images, multi-page TIFFs and PDFs with Tesseract, as a resumable engine job.

::

    handle = ipyjobs.jobs().dispatch(OcrJob("scans/", languages="eng+deu", formats=["txt", "pdf"]))

Every page is an item: pages of one document and of several run side by side (one
single-threaded tesseract per worker), progress counts pages over the whole batch, a page that
fails is reported and its document goes on. Each input gets ``<name>.<format>`` next to it (or
below ``output_dir``; a PDF's searchable copy is ``<name>.ocr.pdf``) and a small
``<name>.ipyjobs.json`` marker; running the job again skips the documents done with the same
settings, and continues a document from the pages it had finished (see :mod:`.pages`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import anyio

from ..engine import Intent, Job, JobCancelled, JobContext, current_token
from ..engine.handle import error_text
from ..models import ModelStore, ensure_tessdata
from . import pdf, tesseract
from .batch import DoneMarker, discover, fingerprint, output_stems
from .executor import Executor, LocalExecutor
from .pages import MODES, Document, FileResult, PageResult, PageTask, Settings, assemble, ocr_page

#: File types searched for in folders (files named explicitly are always taken).
EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "pdf")
VARIANTS = ("fast", "best")


def _as_names(value: str | Iterable[str], what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(str(v).strip().lower().lstrip(".") for v in items))
    if not names or "" in names:
        raise ValueError(f"{what} must name at least one value, got {value!r}")
    return names


@dataclass
class OcrJob(Job, kind="media.ocr"):
    """Recognise the text of images, multi-page TIFFs and PDFs (and folders of them, searched
    recursively), page by page.

    Tesseract runs as one single-threaded process per worker, ``workers`` pages at a time. The
    language data comes from :func:`~ipyjobs.models.ensure_tessdata` (with ``osd`` when
    ``rotate_pages``): missing data is downloaded as shared child jobs. A page tesseract cannot
    read, or a file that cannot be opened (an encrypted PDF...), is reported with
    ``ctx.item_failed`` and the job goes on (it completes with ``error_count > 0``).

    A PDF page that is one scanned image is read at that image's own resolution, any other page
    is rendered at ``dpi``. The searchable PDF keeps the original pages as they are and lays
    tesseract's invisible text over them.

    Cancel: running tesseract processes are killed and reaped within about 50 ms; documents not
    finished leave nothing behind (no output, no page results); documents finished before keep
    their outputs. Pause: no new page is started, the running ones finish, then the job waits.
    Running the job again, or ``manager.resume(job_id)`` after an interruption, skips the
    finished documents and the finished pages of the others.

    The output is a dict: ``files``, ``done``, ``failed``, ``skipped`` (documents), ``pages``
    (pages read by this run), ``seconds``, ``outputs`` (paths written by this run) and
    ``tessdata``.
    """

    resumable = True
    group = "ocr"
    #: Where per-page work runs; ``None``: a :class:`LocalExecutor` with ``workers`` threads.
    #: A class attribute, not a parameter, so the job's parameters stay plain data.
    executor: ClassVar[Executor | None] = None

    inputs: str | list[str]
    """An image or PDF file or a folder, or a list of them."""
    languages: str = "eng"
    """Tesseract language codes joined by ``+``: ``"eng+deu"``."""
    variant: str = "fast"
    """``fast`` or ``best`` language data."""
    output_dir: str | None = None
    """Where outputs go, keeping the layout below each input folder; ``None``: next to each
    input."""
    formats: tuple[str, ...] | list[str] = ("txt",)
    """Any of ``txt`` (a form feed ends each page), ``hocr``, ``tsv`` (one file per document,
    a section per page), ``pdf`` (a searchable PDF)."""
    psm: int | None = None
    """Tesseract's page segmentation mode (0-13); ``None``: its default."""
    oem: int | None = None
    """Tesseract's engine mode (0-3); ``None``: its default."""
    extensions: tuple[str, ...] | list[str] = EXTENSIONS
    workers: int | None = None
    """Pages processed at once; ``None``: the executor's size (``os.cpu_count()`` locally)."""
    dpi: int = 300
    """Resolution PDF pages are rendered at when they are not one scanned image."""
    mode: str = "skip"
    """PDF pages that already have text: ``skip`` keeps them as they are and uses their text;
    ``redo`` replaces an earlier OCR layer (invisible text) and keeps pages with visible text;
    ``force`` OCRs every page, turning pages with visible text into pictures (OCRmyPDF's
    ``--skip-text``, ``--redo-ocr``, ``--force-ocr``)."""
    rotate_pages: bool = False
    """Turn pages whose text is sideways or upside down upright (tesseract's orientation
    detection; the ``osd`` data is fetched like a language)."""

    def __post_init__(self) -> None:
        if isinstance(self.inputs, (str, os.PathLike)):
            self.inputs = os.fspath(self.inputs)
        else:
            self.inputs = [os.fspath(p) for p in self.inputs]
            if not self.inputs:
                raise ValueError("inputs is empty: give an image or PDF file or a folder")
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
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not isinstance(self.dpi, int) or not 50 <= self.dpi <= 1200:
            raise ValueError(f"dpi must be an integer from 50 to 1200, got {self.dpi!r}")

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
        files = await ctx.run_sync(self._discover)
        codes = self.languages.split("+") + (["osd"] if self.rotate_pages else [])
        folder = await ensure_tessdata(ctx, codes, self.variant)
        store = ModelStore.at(ctx.manager.home)
        with ExitStack() as using:  # the language data cannot be deleted meanwhile
            for code in codes:
                using.enter_context(store.using(store.catalog.tessdata(code, self.variant)))
            settings = Settings(
                folder,
                self.languages,
                tuple(self.formats),
                self.psm,
                self.oem,
                self.dpi,
                self.mode,
                self.rotate_pages,
            )
            stamp = {
                "tesseract": version,
                "languages": self.languages,
                "variant": self.variant,
                "psm": self.psm,
                "oem": self.oem,
                "formats": sorted(self.formats),
                "dpi": self.dpi,
                "mode": self.mode,
                "rotate_pages": self.rotate_pages,
            }
            todo, skipped = await ctx.run_sync(self._plan, files, stamp)
            result = await _Batch(ctx, settings, self.executor, self.workers).run(todo, skipped)
        result.update(files=len(files), seconds=round(time.monotonic() - started, 3))
        result["tessdata"] = str(folder)
        ctx.log(
            f"OCR of {len(files)} files: {result['done']} done, {result['failed']} failed, "
            f"{result['skipped']} skipped, {result['pages']} pages read in "
            f"{result['seconds']:.1f} s"
        )
        return result

    def _discover(self) -> list[Path]:
        """The input files, without what this job writes into the input folders: hidden
        files and folders (its work folders) and its outputs (a searchable ``x.ocr.pdf``, an
        image's ``x.pdf``), which its markers list."""
        named = {Path(p).expanduser() for p in self._paths}
        files = [
            f
            for f in discover(self._paths, self.extensions)
            if f in named or not any(_hidden(f, root) for root in named if root.is_dir())
        ]
        outputs: set[Path] = set()
        for folder in {f.parent for f in files if f not in named}:
            for marker in folder.glob("*.ipyjobs.json"):
                try:
                    outputs.update(Path(p) for p in json.loads(marker.read_text())["outputs"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
        return [f for f in files if f in named or f not in outputs]

    def _plan(
        self, files: list[Path], settings: dict[str, Any]
    ) -> tuple[list[Document], list[Document]]:
        """Split the files into documents to do and those done before with the same settings."""
        token = current_token()
        output_dir = None if self.output_dir is None else Path(self.output_dir).expanduser()
        todo, skipped = [], []
        for path, stem in zip(files, output_stems(files, output_dir, self._paths), strict=True):
            if token is not None:
                token.check()
            try:
                stat = path.stat()
                stamp = {"image": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            except OSError:  # gone meanwhile: its work reports why
                stamp = {"image": path.name}
            kind, pages, error = _look_at(path)
            document = Document(path, stem, kind, pages, fingerprint({**settings, **stamp}), error)
            done = error is None and DoneMarker(stem, document.fingerprint).is_done()
            (skipped if done else todo).append(document)
        return todo, skipped


def _hidden(path: Path, root: Path) -> bool:
    return path.is_relative_to(root) and any(
        part.startswith(".") for part in path.relative_to(root).parts
    )


def _look_at(path: Path) -> tuple[str, int, str | None]:
    """The kind of document, its page count, and why it cannot be read (or ``None``)."""
    try:
        with open(path, "rb") as file:
            is_pdf = file.read(1024).lstrip().startswith(b"%PDF")
    except OSError as exc:
        return "image", 1, error_text(exc)
    if is_pdf or path.suffix.lower() == ".pdf":
        try:
            return "pdf", pdf.page_count(path), None
        except pdf.PdfInputError as exc:
            return "pdf", 1, str(exc)
    pages = tesseract.page_count(path)
    return ("tiff" if pages > 1 else "image"), pages, None


class _Batch:
    """One run over the pages of the documents to do: a page per free worker, a document's
    outputs put together by the worker that finished its last page."""

    def __init__(
        self, ctx: JobContext, settings: Settings, executor: Executor | None, workers: int | None
    ) -> None:
        self.ctx = ctx
        self.settings = settings
        self.executor = executor or LocalExecutor(workers)
        self.size = workers or self.executor.workers
        self.counts = {"done": 0, "failed": 0, "skipped": 0, "pages": 0}
        self.outputs: list[str] = []
        self.left: dict[Path, int] = {}
        self.failed_pages: dict[Path, int] = {}
        self.progressed = 0
        self.total = 0

    async def run(self, todo: list[Document], skipped: list[Document]) -> dict[str, Any]:
        ctx = self.ctx
        self.counts["skipped"] = len(skipped)
        self.total = sum(d.pages for d in todo) + sum(d.pages for d in skipped)
        self.progressed = sum(d.pages for d in skipped)
        if skipped:
            ctx.log(f"{len(skipped)} files already done with these settings: skipped")
        work: list[tuple[Document, int | None]] = []  # (document, page), page None: assemble
        for document in todo:
            if document.error is not None:
                ctx.item_failed(document.path, document.error)
                self.counts["failed"] += 1
                self.progressed += 1
                continue
            done = await ctx.run_sync(document.done_pages)
            if not done:
                await ctx.run_sync(shutil.rmtree, document.work, True)  # other settings' pages
            self.progressed += len(done)
            self.left[document.path] = document.pages - len(done)
            self.failed_pages[document.path] = 0
            pending = [i for i in range(document.pages) if i not in done]
            work += [(document, i) for i in pending] or [(document, None)]
        ctx.progress(self.progressed, self.total, unit="pages")
        slots = anyio.Semaphore(self.size)
        finished: set[Path] = set()
        try:
            async with anyio.create_task_group() as tg:
                for document, index in work:
                    await _take_slot(ctx, slots, self.size)
                    ctx.progress(item=document.item(index or 0))
                    tg.start_soon(self._one, slots, document, index, finished)
            await ctx.checkpoint()
        finally:
            if ctx.handle.intent is Intent.CANCELLING:  # cancelled, not interrupted: no debris
                for document in todo:
                    if document.path not in finished:
                        shutil.rmtree(document.work, ignore_errors=True)
        return {**self.counts, "outputs": self.outputs}

    async def _one(
        self, slots: anyio.Semaphore, document: Document, index: int | None, finished: set[Path]
    ) -> None:
        try:
            if index is not None:
                result = await self._call(ocr_page, PageTask(document, index, self.settings))
                if result is None:
                    return
                self._page_done(document, index, result)
                if self.left[document.path]:
                    return
            assembled = await self._call(assemble, document, self.settings)
            if assembled is not None:
                finished.add(document.path)
                self._document_done(document, assembled)
        finally:
            slots.release()

    async def _call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` through the executor; ``None`` if the job is being cancelled (the
        next checkpoint raises it once)."""
        try:
            return await self.executor.run(self.ctx, fn, *args)
        except JobCancelled:
            return None
        except Exception as exc:  # the executor's own failure: this item is not done
            return (PageResult if fn is ocr_page else FileResult)(error=error_text(exc))

    def _page_done(self, document: Document, index: int, result: PageResult) -> None:
        self.left[document.path] -= 1
        if result.error is None:
            self.counts["pages"] += 1
        else:
            self.failed_pages[document.path] += 1
            self.ctx.item_failed(document.item(index), result.error)
        self.progressed += 1
        self.ctx.progress(self.progressed, self.total)

    def _document_done(self, document: Document, result: FileResult) -> None:
        self.outputs.extend(result.outputs)
        if result.error is not None:
            self.ctx.item_failed(document.path, result.error)
        if result.error is not None or self.failed_pages[document.path]:
            self.counts["failed"] += 1
        else:
            self.counts["done"] += 1


async def _take_slot(ctx: JobContext, slots: anyio.Semaphore, size: int) -> None:
    """Wait for a free worker, then honour cancel and pause. While paused, first let every
    running page finish, so that a paused job has no tesseract running."""
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
