"""A multi-page document's outputs, put together from its pages' results (:mod:`.pages`).

When every page of a document has its record (or failed), :func:`assemble` writes each output
into the document's staging folder and commits them with the done-marker through
:func:`.outputs.process_file` (claimed, all or nothing), then removes the work folder. The
searchable PDF of a PDF is the original file with each page's invisible text grafted on.
"""

from __future__ import annotations

import html
import re
import shutil
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

from . import pdf
from .outputs import FileOutcome, Staging, process_file
from .pages import Document, Settings


def assemble(document: Document, settings: Settings, wait: bool = True) -> FileOutcome:
    """Write and commit the document's outputs from its pages' results.

    With failed pages the outputs still come (failed pages without text) but the marker's
    fingerprint says "incomplete": the next run does those pages again (the work folder stays),
    and the marker still names the outputs, so a search of the folder never takes them for
    inputs. With no page done at all, nothing is written (``failed`` without an error: the
    pages' errors say why). ``wait``: wait for another job's claim on the document.
    """
    records = document.done_pages()
    if not records:
        shutil.rmtree(document.work, ignore_errors=True)
        return FileOutcome("failed")
    complete = len(records) == document.pages
    mark = document.fingerprint if complete else f"{document.fingerprint}-incomplete"
    names = document.output_names(settings.formats)
    work = partial(_write_all, document, settings, records, complete)
    outcome = process_file(document.path, document.stem, mark, names, work, wait)
    if complete and outcome.status == "done":
        shutil.rmtree(document.work, ignore_errors=True)
    return outcome


def _write_all(
    document: Document,
    settings: Settings,
    records: dict[int, dict],
    complete: bool,
    staging: Staging,
) -> dict[str, Any]:
    for fmt, name in zip(settings.formats, document.output_names(settings.formats), strict=True):
        _WRITERS[fmt](document, records, staging.output(name))
    return {"image": str(document.path), "pages": document.pages, "complete": complete}


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
