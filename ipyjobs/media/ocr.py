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
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import Job, JobContext, current_token
from ..engine.job import UNSTORED
from ..models import ModelStore, ensure_tessdata
from . import pdf, tesseract
from .batch import as_inputs, as_names, find_inputs, fingerprint, output_stems
from .executor import Executor
from .ocr_batch import run_batch
from .outputs import already_done
from .pages import MODES, Document, Settings

#: File types searched for in folders (files named explicitly are always taken).
EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "pdf")
VARIANTS = ("fast", "best")


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

    Each file's outputs are committed with its done-marker, or none is left (:mod:`.outputs`);
    any error of one file (a full disk, a name too long, ...) fails that file only, with its
    cause in one line. An image another kernel is working on is left to it (per-file claim) and
    looked at again at the end. Inputs, formats and languages are checked before any download.

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
    executor: Executor | None = field(default=None, kw_only=True, repr=False, metadata=UNSTORED)
    """Where the per-page work runs; ``None``: the kernel's executor (``jobs.use_dask``...).
    Not stored: a job resumed after a restart runs on its new kernel's executor."""

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
        found = await find_inputs(ctx, self._paths, self.extensions, "image or PDF")
        files = await ctx.run_sync(self._without_own_files, found)
        store = ModelStore.at(ctx.manager.home)
        self._check_languages(store)
        codes = self.languages.split("+") + (["osd"] if self.rotate_pages else [])
        folder = await ensure_tessdata(ctx, codes, self.variant)
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
            result = await run_batch(ctx, settings, self.executor, self.workers, todo, skipped)
        result.update(files=len(files), seconds=round(time.monotonic() - started, 3))
        result["tessdata"] = str(folder)
        ctx.log(
            f"OCR of {len(files)} files: {result['done']} done, {result['failed']} failed, "
            f"{result['skipped']} skipped, {result['pages']} pages read in "
            f"{result['seconds']:.1f} s"
        )
        return result

    def _without_own_files(self, files: list[Path]) -> list[Path]:
        """The files found, without what this job writes into the input folders: hidden files
        and folders (work and staging folders) and its outputs (a searchable ``x.ocr.pdf``, an
        image's ``x.pdf``), which its markers list. Files named explicitly are kept."""
        named = {Path(p).expanduser() for p in self._paths}
        folders = [root for root in named if root.is_dir()]
        files = [f for f in files if f in named or not any(_hidden(f, r) for r in folders)]
        outputs: set[Path] = set()
        for folder in {f.parent for f in files if f not in named}:
            for marker in folder.glob("*.ipyjobs.json"):
                try:
                    outputs.update(Path(p) for p in json.loads(marker.read_text())["outputs"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
        return [f for f in files if f in named or f not in outputs]

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
        self, files: list[Path], settings: dict[str, Any]
    ) -> tuple[list[Document], list[Document]]:
        """Split the files into documents to do and those done before with the same settings."""
        token = current_token()
        output_dir = None if self.output_dir is None else Path(self.output_dir).expanduser()
        todo: list[Document] = []
        skipped: list[Document] = []
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
            done = error is None and already_done(stem, document.fingerprint)
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
    except OSError:  # unreadable: its work reports why, as for any file
        return "image", 1, None
    if is_pdf or path.suffix.lower() == ".pdf":
        try:
            return "pdf", pdf.page_count(path), None
        except pdf.PdfInputError as exc:
            return "pdf", 1, str(exc)
    pages = tesseract.page_count(path)
    return ("tiff" if pages > 1 else "image"), pages, None
