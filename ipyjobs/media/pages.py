"""Page items of the OCR job: every page of every input (an image, a page of a multi-page TIFF,
a page of a PDF) is one piece of work, and a document's outputs are put together from its pages.

A page's results go into a hidden work folder beside the document's outputs
(``.<name>.ocr-pages/``), followed by a small JSON record: that record is the page's checkpoint.
A job that stops (pause, kernel restart, SIGKILL) finds those records next time and does only the
pages without one. When every page of a document has its record, :func:`assemble` writes the
outputs atomically, then the done-marker, then removes the work folder.

Everything here is plain data and plain functions, so an executor may run them in another
process.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.handle import error_text
from . import pdf, tesseract
from .batch import DoneMarker, atomic_path

NOT_AN_IMAGE = (
    "not an image file: no PNG, JPEG, TIFF, BMP, GIF, WebP, JPEG 2000 or PNM header "
    "(tesseract would read it as a list of image paths)"
)
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
        return self.stem.with_name(f".{self.stem.name}.ocr-pages")

    def output(self, fmt: str) -> Path:
        suffix = "ocr.pdf" if fmt == "pdf" and self.kind == "pdf" else fmt
        return self.stem.with_name(f"{self.stem.name}.{suffix}")

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


@dataclass(frozen=True)
class FileResult:
    outputs: list[str] = field(default_factory=list)
    error: str | None = None


def ocr_page(task: PageTask) -> PageResult:
    """OCR one page into the document's work folder, then write the page's record.

    A failure returns the reason and leaves no record (the page is done again next time). On
    cancel (``JobCancelled`` from a running tesseract) the page's scratch folder is removed.
    """
    document = task.document
    try:
        document.work.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".p{task.index + 1}.", dir=document.work))
    except OSError as exc:
        return PageResult(error_text(exc))
    try:
        record: dict = {"fingerprint": document.fingerprint, "rotation": 0}
        if document.kind == "pdf":
            picture = _pdf_picture(task, scratch, record)
        elif document.kind == "tiff":
            picture = _tiff_frame(document.path, task.index, scratch), 0
        elif tesseract.is_image(document.path):
            picture = pdf.Picture(document.path, 0), 0
        else:
            return PageResult(NOT_AN_IMAGE)
        if picture is None:  # the page keeps its own text
            text = pdf.page_text(document.path, task.index)
            document.page_file(task.index, "txt").write_text(text.rstrip() + "\n")
        else:
            error = _recognise(task, *picture, scratch, record)
            if error is not None:
                return PageResult(error)
        with atomic_path(document.page_file(task.index, "json")) as tmp:
            tmp.write_text(json.dumps({**record, "ocr": picture is not None}))
        return PageResult(ocr=picture is not None)
    except (OSError, pdf.PdfInputError) as exc:
        return PageResult(error_text(exc))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
) -> str | None:
    """Turn the picture upright (``rotate_pages``), run tesseract, move its outputs into the
    work folder. Returns tesseract's complaint, or ``None``."""
    document, settings = task.document, task.settings
    dpi = picture.dpi or None
    wanted = record["rotation"]
    if settings.rotate_pages:
        wanted = (turned + tesseract.orientation(picture.path, settings.tessdata, dpi)) % 360
    if (wanted - turned) % 360:
        picture = _turn(picture, (wanted - turned) % 360, scratch)
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
    process = tesseract.run(args)
    written = {fmt: base.with_name(f"out.{fmt}") for fmt in settings.formats}
    missing = [fmt for fmt, path in written.items() if not path.is_file()]
    if process.returncode or missing:
        message = tesseract.error_message(process.stderr)
        if not process.returncode:
            message = f"tesseract wrote no {', '.join(missing)} output: {message}"
        return message
    for fmt, path in written.items():
        os.replace(path, document.page_file(task.index, fmt))
    return None


def _turn(picture: pdf.Picture, degrees: int, scratch: Path) -> pdf.Picture:
    from PIL import Image

    with Image.open(picture.path) as image:
        turned = image.transpose(Image.Transpose(_TURN[degrees]))
    return pdf.Picture(
        pdf.save_tiff(turned, scratch / "turned.tif", picture.dpi or 300), picture.dpi
    )


def assemble(document: Document, settings: Settings) -> FileResult:
    """Write the document's outputs from its pages' results (each output atomically), then,
    if every page succeeded, the done-marker, and remove the work folder.

    With failed pages the outputs still come (failed pages without text), the work folder stays
    and the marker says "incomplete": the next run does those pages again. With no page done at all,
    nothing is written.
    """
    records = document.done_pages()
    if not records:
        shutil.rmtree(document.work, ignore_errors=True)
        return FileResult()
    try:
        outputs = []
        for fmt in settings.formats:
            target = document.output(fmt)
            if document.pages == 1 and document.kind != "pdf":
                os.replace(document.page_file(0, fmt), target)  # one image: as tesseract wrote it
            else:
                with atomic_path(target) as tmp:
                    _WRITERS[fmt](document, records, tmp)
                    tmp.chmod(0o644)  # as tesseract's own outputs (mkstemp makes 0600)
            outputs.append(target)
        complete = len(records) == document.pages
        details = {"image": str(document.path), "pages": document.pages, "complete": complete}
        # An incomplete document's marker does not match (it is done again), but it names the
        # outputs, so that a later search of the folder does not take them for inputs.
        mark = document.fingerprint if complete else f"{document.fingerprint}-incomplete"
        DoneMarker(document.stem, mark).write(outputs, details)
        if complete:
            shutil.rmtree(document.work, ignore_errors=True)
        return FileResult([str(p) for p in outputs])
    except (OSError, pdf.PdfInputError) as exc:
        return FileResult([], error_text(exc))


def _write_txt(document: Document, records: dict[int, dict], target: Path) -> None:
    """The pages' text with a form feed between pages (a failed page: empty)."""
    with open(target, "w", encoding="utf-8") as out:
        for index in range(document.pages):
            if index:
                out.write("\f")
            if index in records:
                out.write(document.page_file(index, "txt").read_text(encoding="utf-8"))


def _write_tsv(document: Document, records: dict[int, dict], target: Path) -> None:
    """One table: the header once, each page's rows with its page number."""
    header = None
    with open(target, "w", encoding="utf-8") as out:
        for index in sorted(records):
            path = document.page_file(index, "tsv")
            if not path.exists():
                continue  # a page that kept its own text
            first, *rows = path.read_text(encoding="utf-8").splitlines()
            if header is None:
                header = first
                out.write(header + "\n")
            for row in rows:
                cells = row.split("\t")
                if len(cells) > 1:
                    cells[1] = str(index + 1)
                out.write("\t".join(cells) + "\n")


def _write_hocr(document: Document, records: dict[int, dict], target: Path) -> None:
    """One hOCR file with a page ``div`` per page, ids and page numbers as in tesseract's own
    multi-page output (``word_3_17`` is word 17 of page 3)."""
    head = tail = None
    bodies = []
    source = html.escape(str(document.path), quote=True)
    for index in sorted(records):
        path = document.page_file(index, "hocr")
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        start, end = text.index("<div class='ocr_page'"), text.rindex("</body>")
        if head is None:
            head, tail = text[:start], text[end:]
        body = re.sub(r"(id='[a-z]+_)1(?=['_])", rf"\g<1>{index + 1}", text[start:end])
        body = re.sub(r"ppageno \d+", f"ppageno {index}", body)
        bodies.append(re.sub(r'image "[^"]*"', f'image "{source}"', body))
    target.write_text((head or "") + "".join(bodies) + (tail or ""), encoding="utf-8")


def _write_pdf(document: Document, records: dict[int, dict], target: Path) -> None:
    """A PDF: the original with text layers grafted on; images: tesseract's pages together."""
    if document.kind == "pdf":
        layers = []
        for index, record in sorted(records.items()):
            if record.get("ocr"):
                raster = document.page_file(index, "raster.jpg")
                layers.append(
                    pdf.Layer(
                        index,
                        document.page_file(index, "pdf"),
                        record["rotation"],
                        bool(record.get("strip")),
                        raster if record.get("raster") else None,
                    )
                )
        pdf.graft(document.path, layers, target)
        return
    import pikepdf

    with ExitStack() as stack, pikepdf.new() as out:
        for index in sorted(records):
            source = stack.enter_context(pikepdf.open(document.page_file(index, "pdf")))
            out.pages.extend(source.pages)
        out.save(target)


_WRITERS = {"txt": _write_txt, "tsv": _write_tsv, "hocr": _write_hocr, "pdf": _write_pdf}
