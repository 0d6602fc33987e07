"""Page items of the OCR job: every page of a multi-page document (a PDF, a multi-page TIFF)
is one piece of work.

A page's results go into the document's hidden work folder beside its outputs
(``.ipyjobs-<key>.pages/``), followed by a small JSON record: that record is the page's
checkpoint. A job that stops (pause, kernel restart, SIGKILL) finds those records next time and
does only the pages without one; :mod:`.documents` puts the outputs together from them.

Everything here is plain data and plain functions, so an executor may run them in another
process.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from . import pdf, tesseract
from .causes import FileFailed, describe
from .outputs import FileOutcome, Staging, process_file, staging_path

NOT_AN_IMAGE = (
    "not an image file: no PNG, JPEG, TIFF, BMP, GIF, WebP, JPEG 2000 or PNM header "
    "(tesseract would read it as a list of image paths)"
)


@dataclass(frozen=True)
class FileTask:
    """One single-page image's work, as plain data (so an executor may run it in another
    process). Multi-page documents are done page by page instead (:mod:`.pages`)."""

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
    rotate_pages: bool = False


def ocr_file(task: FileTask, wait: bool = False) -> FileOutcome:
    """OCR one image (in a worker thread): tesseract writes into the file's staging folder
    beside the outputs, which are then committed with the done-marker (:mod:`.outputs`).

    A failure returns tesseract's meaningful line and leaves no output. On cancel
    (``Cancelled`` from the running process) the staging folder is removed as well.
    ``wait``: wait for another job's claim on the file rather than return ``busy``.
    """
    return process_file(task.image, task.stem, task.fingerprint, task.formats,
                        partial(_ocr_into, task), wait)  # fmt: skip


def _ocr_into(task: FileTask, staging: Staging) -> dict[str, Any]:
    if not tesseract.is_image(task.image):
        raise FileFailed(NOT_AN_IMAGE)
    image = task.image
    started = time.monotonic()
    if task.rotate_pages:
        degrees = tesseract.orientation(image, task.tessdata)
        if degrees:
            image = turn(pdf.Picture(image, 0), degrees, staging.folder).path
    args = tesseract.command(
        image,
        staging.base,
        tessdata=task.tessdata,
        languages=task.languages,
        formats=task.formats,
        psm=task.psm,
        oem=task.oem,
    )
    outputs = [staging.output(fmt) for fmt in task.formats]
    tesseract.run_checked(args, outputs, staging.folder, task.image.name)
    seconds = time.monotonic() - started
    return {"image": str(task.image), "pages": task.pages, "seconds": round(seconds, 3)}


#: ``mode``: what to do with PDF pages that already have text (OCRmyPDF's names).
MODES = ("skip", "redo", "force")
_TURN = {90: 4, 180: 3, 270: 2}  # clockwise degrees -> PIL's Transpose (ROTATE_270/180/90)


@dataclass(frozen=True)
class Settings:
    """The job's OCR options, as plain data."""

    tessdata: Path
    languages: str
    formats: tuple[str, ...]
    psm: int | None = None
    oem: int | None = None
    dpi: int = 300
    mode: str = "skip"
    rotate_pages: bool = False


@dataclass(frozen=True)
class Document:
    """One input file: an image, a multi-page TIFF or a PDF, with ``pages`` pages."""

    path: Path
    stem: Path
    """Outputs are ``<stem>.<format>`` (a PDF's searchable copy: ``<stem>.ocr.pdf``)."""
    kind: str
    """``image``, ``tiff`` or ``pdf``."""
    pages: int
    fingerprint: str
    error: str | None = None
    """Why the file cannot be read at all (an encrypted PDF...): one item error, no pages."""

    @property
    def work(self) -> Path:
        """The hidden folder of the pages' results (short: only outputs need a long name)."""
        return staging_path(self.stem).with_suffix(".pages")

    def output_names(self, formats: tuple[str, ...]) -> tuple[str, ...]:
        """The outputs' suffixes: a PDF's searchable copy is ``ocr.pdf``, never the input."""
        return tuple("ocr.pdf" if f == "pdf" and self.kind == "pdf" else f for f in formats)

    def item(self, index: int) -> str:
        """How a page is named in progress and errors."""
        return str(self.path) if self.pages == 1 else f"{self.path} (page {index + 1})"

    def page_file(self, index: int, suffix: str) -> Path:
        return self.work / f"p{index + 1:05d}.{suffix}"

    def done_pages(self) -> dict[int, dict]:
        """The pages whose checkpoint record has this document's fingerprint."""
        records = {}
        for index in range(self.pages):
            try:
                record = json.loads(self.page_file(index, "json").read_text())
            except (OSError, ValueError):
                continue
            if record.get("fingerprint") == self.fingerprint:
                records[index] = record
        return records


@dataclass(frozen=True)
class PageTask:
    document: Document
    index: int
    settings: Settings


@dataclass(frozen=True)
class PageResult:
    error: str | None = None
    ocr: bool = True
    """False: the page's own text was kept (``mode="skip"``)."""
    log: str | None = None
    """The full text behind ``error`` (tesseract's stderr), for the job's log."""


def ocr_page(task: PageTask) -> PageResult:
    """OCR one page into the document's work folder, then write the page's record.

    A failure returns the reason and leaves no record (the page is done again next time). On
    cancel (``Cancelled`` from a running tesseract) the page's scratch folder is removed.
    """
    document = task.document
    try:
        document.work.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"p{task.index + 1}.", dir=document.work))
        try:
            record: dict = {"fingerprint": document.fingerprint, "rotation": 0}
            if document.kind == "pdf":
                picture = _pdf_picture(task, scratch, record)
            else:
                picture = _tiff_frame(document.path, task.index, scratch), 0
            if picture is None:  # the page keeps its own text
                text = pdf.page_text(document.path, task.index)
                document.page_file(task.index, "txt").write_text(text.rstrip() + "\n")
            else:
                _recognise(task, *picture, scratch, record)
            record["ocr"] = picture is not None
            staged = scratch / "record.json"
            staged.write_text(json.dumps(record))
            os.replace(staged, document.page_file(task.index, "json"))
            return PageResult(ocr=picture is not None)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except pdf.PdfInputError as exc:
        return PageResult(str(exc))
    except Exception as exc:  # this page's failure; a cancel (BaseException) passes
        error, log = describe(exc, document.work, f"page {task.index + 1} of {document.path}")
        return PageResult(error, log=log)


def _pdf_picture(task: PageTask, scratch: Path, record: dict) -> tuple[pdf.Picture, int] | None:
    """The page's picture and the clockwise turn already in it (0: as stored, unturned), or
    ``None`` when the page keeps its text. Sets ``record``'s ``rotation``, ``strip``, ``raster``."""
    mode = task.settings.mode
    with pdf.open_pdf(task.document.path) as opened:
        page = opened.pages[task.index]
        used = pdf.text_use(page)
        record["rotation"] = int(page.obj.get("/Rotate", 0)) % 360
        if used and (mode == "skip" or (mode == "redo" and "visible" in used)):
            return None
        record["strip"] = "invisible" in used
        record["raster"] = "visible" in used  # force: the page becomes its picture
        found = None if record["raster"] else pdf.scanned_image(page)
        if found is not None:
            image, dpi = found
            path = pdf.extract(image, scratch, round(dpi))
            if path is not None:
                return pdf.Picture(path, round(dpi)), 0
    dpi = task.settings.dpi
    path = pdf.render(task.document.path, task.index, dpi, 0, scratch, colour=record["raster"])
    return pdf.Picture(path, dpi), record["rotation"]


def _tiff_frame(path: Path, index: int, scratch: Path) -> pdf.Picture:
    """Frame ``index`` of a multi-page TIFF as an uncompressed single-page TIFF."""
    from PIL import Image

    with Image.open(path) as image:
        image.seek(index)
        dpi = round(image.info.get("dpi", (0, 0))[0])
        frame = image.copy() if image.mode in ("1", "L", "RGB") else image.convert("RGB")
    return pdf.Picture(pdf.save_tiff(frame, scratch / "page.tif", dpi or 300), dpi)


def _recognise(
    task: PageTask, picture: pdf.Picture, turned: int, scratch: Path, record: dict
) -> None:
    """Turn the picture upright (``rotate_pages``), run tesseract, move its outputs into the
    work folder; :class:`~.causes.FileFailed` with tesseract's reason if it fails."""
    document, settings = task.document, task.settings
    dpi = picture.dpi or None
    wanted = record["rotation"]
    if settings.rotate_pages:
        wanted = (turned + tesseract.orientation(picture.path, settings.tessdata, dpi)) % 360
    if (wanted - turned) % 360:
        picture = turn(picture, (wanted - turned) % 360, scratch)
    record["rotation"] = wanted
    if record.get("raster") and "pdf" in settings.formats:
        from PIL import Image

        with Image.open(picture.path) as shown:
            shown.save(document.page_file(task.index, "raster.jpg"), quality=90)
    base = scratch / "out"
    args = tesseract.command(
        picture.path,
        base,
        tessdata=settings.tessdata,
        languages=settings.languages,
        formats=settings.formats,
        psm=settings.psm,
        oem=settings.oem,
        dpi=dpi,
        text_only_pdf=document.kind == "pdf",
    )
    written = {fmt: base.with_name(f"out.{fmt}") for fmt in settings.formats}
    tesseract.run_checked(args, list(written.values()), scratch, document.item(task.index))
    for fmt, path in written.items():
        os.replace(path, document.page_file(task.index, fmt))


def turn(picture: pdf.Picture, degrees: int, scratch: Path) -> pdf.Picture:
    """The picture turned ``degrees`` clockwise, as an uncompressed TIFF in ``scratch``."""
    from PIL import Image

    with Image.open(picture.path) as image:
        turned = image.transpose(Image.Transpose(_TURN[degrees]))
    return pdf.Picture(
        pdf.save_tiff(turned, scratch / "turned.tif", picture.dpi or 300), picture.dpi
    )
