"""The OCR job on scanned PDFs: real tesseract, PDFs written by Pillow (one JPEG per page, as a
scanner writes them), the searchable output read back by poppler's pdftotext and pikepdf."""

from __future__ import annotations

import json
import re
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import anyio
import pikepdf
import pypdfium2
import pytest
from PIL import Image, ImageChops

from ipyjobs import JobManager, JobState
from ipyjobs.media import LocalExecutor, OcrJob
from ipyjobs.media.pages import PageTask
from tests.media.processes import tesseract_processes
from tests.media.test_ocr import files_in, wait_for
from tests.support import pages, scanned

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed"),
    pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils"),
    pytest.mark.skipif(len(pages.fonts()) < 3, reason="needs fonts-dejavu-core, fonts-liberation"),
]
OSD = Path("/usr/share/tesseract-ocr/5/tessdata/osd.traineddata")


def images_of(path: Path) -> list[bytes]:
    """Each page's image XObject, as stored (still encoded)."""
    with pikepdf.open(path) as pdf:
        return [
            next(
                o for o in page.obj.Resources.XObject.values() if o.Subtype == "/Image"
            ).read_raw_bytes()
            for page in pdf.pages
        ]


def shown(path: Path, index: int, width: int = 120) -> Image.Image:
    """A page as a viewer shows it (its /Rotate applied), small and grey."""
    document = pypdfium2.PdfDocument(path)
    try:
        image = document[index].render(scale=0.5, grayscale=True).to_pil().convert("L")
    finally:
        document.close()
    return image.resize((width, round(width * image.height / image.width)))


def difference(a: Image.Image, b: Image.Image) -> float:
    if a.size != b.size:
        return 255.0
    histogram = ImageChops.difference(a, b).histogram()
    return sum(i * n for i, n in enumerate(histogram)) / (a.width * a.height)


def layer_words(path: Path, page: int) -> list[tuple[str, tuple[float, ...]]]:
    """The words of a page's text layer with their boxes (points, y from the top)."""
    xhtml = scanned.pdftotext(path, page, "-bbox")
    words = re.findall(
        r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>',
        xhtml,
    )
    return [(w[4], tuple(float(v) for v in w[:4])) for w in words]


def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """The part of the smaller box that the other covers."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return width * height / smaller


async def test_a_scanned_pdf_becomes_searchable_page_by_page(
    manager: JobManager, tmp_path: Path
) -> None:
    if not OSD.exists():
        pytest.skip("needs Debian's tesseract-ocr-osd")
    folder = tmp_path / "archive"
    scans = scanned.scans(6, skewed=(1, 4), noisy=(2, 4), turned=(3, 5), seed=21)
    source = scanned.save_pdf(scans, folder / "report.pdf")
    loose = pages.save(pages.pages(2, sentences=2, seed=4), folder / "loose")
    formats = ["pdf", "txt", "hocr", "tsv"]

    handle = manager.dispatch(OcrJob(str(folder), formats=formats, rotate_pages=True))
    seen = []
    while not handle.done:  # progress comes in pages over the whole batch
        seen.append(handle.progress.done)
        await anyio.sleep(0.05)
    result = await handle

    assert handle.state is JobState.COMPLETED and handle.error_count == 0
    assert (result["files"], result["done"], result["pages"]) == (3, 3, 8)
    assert handle.progress.unit == "pages" and handle.progress.total == 8
    assert len(set(seen)) >= 5  # it moved page by page, not once per file
    target = folder / "report.ocr.pdf"
    assert str(target) in result["outputs"]
    for image in loose:
        assert image.with_suffix(".pdf").is_file() and image.with_suffix(".txt").is_file()

    # The original pages, untouched: the same JPEG bytes, about the same size.
    assert images_of(target) == images_of(source)
    assert target.stat().st_size <= 1.1 * source.stat().st_size

    # The text layer reads back as the pages' text, in order, turned pages included.
    by_page = [scanned.pdftotext(target, i + 1) for i in range(len(scans))]
    rate = pages.cer((s.page.text, text) for s, text in zip(scans, by_page, strict=True))
    print(f"character error rate, pdftotext -raw: {rate:.4f}")
    assert rate <= 0.01
    whole = " ".join(page.extract_text() for page in pikepdf_free_reader(target))
    assert pages.cer([(" ".join(s.page.text for s in scans), whole)]) <= 0.01

    # Turned pages are shown upright: the page as shown is the page as it was written.
    for index, scan in enumerate(scans):
        if not scan.skew:
            upright = shown(target, index)
            written = scan.page.image.resize(upright.size)
            assert difference(upright, written) < 8, index
    with pikepdf.open(target) as pdf:
        assert [int(p.obj.get("/Rotate", 0)) for p in pdf.pages] == [
            90 if s.turned else 0 for s in scans
        ]

    # The words of the layer lie on the drawn words (points = pixels * 72 / 150).
    for index in (0, 2):
        drawn = [(w, tuple(v * 72 / 150 for v in box)) for w, box in scans[index].page.words]
        found = layer_words(target, index + 1)
        assert len(found) >= 0.9 * len(drawn)
        placed = [
            max((overlap(box, d) for t, d in drawn if t == word), default=0) for word, box in found
        ]
        assert sum(p >= 0.5 for p in placed) >= 0.9 * len(found), placed

    # txt: a form feed between pages; hOCR and TSV: a section per page, numbered.
    text = (folder / "report.txt").read_text()
    assert text.count("\f") == 5
    page_texts = text.split("\f")  # each page's text where it belongs
    assert pages.cer((s.page.text, t) for s, t in zip(scans, page_texts, strict=True)) <= 0.01
    root = ET.fromstring((folder / "report.hocr").read_bytes())
    page_divs = [e for e in root.iter() if e.get("class") == "ocr_page"]
    assert [e.get("id") for e in page_divs] == [f"page_{i}" for i in range(1, 7)]
    assert all(f"ppageno {i}" in e.get("title") for i, e in enumerate(page_divs))
    word_ids = [e.get("id") for e in root.iter() if e.get("class") == "ocrx_word"]
    assert len(word_ids) == len(set(word_ids)) and any(w.startswith("word_6_") for w in word_ids)
    rows = (folder / "report.tsv").read_text().splitlines()
    assert rows[0].startswith("level\tpage_num") and sum(r.startswith("level") for r in rows) == 1
    assert {r.split("\t")[1] for r in rows[1:]} == {str(i) for i in range(1, 7)}

    # Nothing else was left: no work folder, no temporary file.
    assert not [n for n in files_in(folder) if n.startswith(".") or "/." in n]
    marker = json.loads((folder / "report.ipyjobs.json").read_text())
    assert marker["pages"] == 6

    # Done: the next run skips it; another dpi or mode is other settings: done again.
    again = await manager.dispatch(OcrJob(str(folder), formats=formats, rotate_pages=True))
    assert (again["skipped"], again["pages"]) == (3, 0)


def pikepdf_free_reader(path: Path) -> list:
    """pypdf's pages (a second, independent text extractor)."""
    import pypdf

    return list(pypdf.PdfReader(path).pages)


def content(page: pikepdf.Page) -> bytes:
    """What a page draws, however its content streams are split."""
    return pikepdf.unparse_content_stream(pikepdf.parse_content_stream(page))


def born_digital_page(pdf: pikepdf.Pdf, text: str) -> pikepdf.Page:
    font = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
        )
    )
    content = f"BT /F1 14 Tf 72 700 Td ({text}) Tj ET".encode()
    page = pikepdf.Page(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Page,
            MediaBox=[0, 0, 612, 792],
            Resources=pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font)),
            Contents=pdf.make_stream(content),
        )
    )
    return page


async def test_skip_keeps_a_born_digital_page_and_uses_its_text(
    manager: JobManager, tmp_path: Path
) -> None:
    scans = scanned.scans(2, sentences=2, seed=8)
    source = scanned.save_pdf(scans, tmp_path / "mixed.pdf")
    typed = "Minutes of the annual meeting, typed and saved as PDF."
    with pikepdf.open(source, allow_overwriting_input=True) as pdf:
        pdf.pages.insert(1, born_digital_page(pdf, typed))
        original = pdf.pages[1].obj.Contents.read_bytes()
        pdf.save(source)

    result = await manager.dispatch(OcrJob(str(source), formats=["pdf", "txt"]))

    assert (result["done"], result["pages"]) == (1, 3)
    target = tmp_path / "mixed.ocr.pdf"
    with pikepdf.open(target) as pdf:
        kept = pdf.pages[1]
        assert kept.obj.Contents.read_bytes() == original  # the same page, no layer added
        assert list(kept.obj.Resources.keys()) == ["/Font"]
    text = (tmp_path / "mixed.txt").read_text().split("\f")
    assert text[1].strip() == typed
    assert pages.cer([(scans[1].page.text, text[2])]) <= 0.01
    assert pages.cer([(typed, scanned.pdftotext(target, 2))]) == 0


class StallingExecutor(LocalExecutor):
    """Counts the pages it is given; page ``stall`` never ends (until the job is stopped)."""

    def __init__(self, stall: int | None = None) -> None:
        super().__init__(1)
        self.stall = stall
        self.pages: list[int] = []

    async def run(self, ctx, fn, /, *args):
        if isinstance(args[0], PageTask):
            self.pages.append(args[0].index)
            if args[0].index == self.stall:
                await anyio.sleep_forever()
        return await super().run(ctx, fn, *args)


async def test_interrupted_after_page_5_of_12_resumes_with_pages_6_to_12(
    ipyjobs_home: Path, tmp_path: Path
) -> None:
    scans = scanned.scans(12, sentences=1, seed=12)
    source = scanned.save_pdf(scans, tmp_path / "thesis.pdf")
    first = StallingExecutor(stall=5)
    job = OcrJob(str(source), formats=["pdf", "txt"], workers=1, executor=first)
    async with JobManager(ipyjobs_home, tick=0.02, store_interval=0.02) as manager:
        handle = manager.dispatch(job)
        await wait_for(lambda: 5 in first.pages, what="page 6", timeout=60)
        assert handle.progress.done == 5 and handle.progress.total == 12
    assert handle.state is JobState.INTERRUPTED  # the manager closed under it (kernel restart)
    assert first.pages == [0, 1, 2, 3, 4, 5]
    assert not (tmp_path / "thesis.ocr.pdf").exists()

    second = StallingExecutor()
    async with JobManager(ipyjobs_home, tick=0.02) as manager:
        manager.executor = second  # the new kernel's: the job's own executor is not stored
        resumed = manager.resume(handle.id)
        result = await resumed
        assert resumed.progress.done == resumed.progress.total == 12
    assert second.pages == list(range(5, 12))  # pages 6 to 12, and only those
    assert (result["done"], result["pages"]) == (1, 7)
    by_page = [scanned.pdftotext(tmp_path / "thesis.ocr.pdf", i + 1) for i in range(12)]
    assert pages.cer((s.page.text, t) for s, t in zip(scans, by_page, strict=True)) <= 0.01
    assert (tmp_path / "thesis.txt").read_text().count("\f") == 11
    assert files_in(tmp_path) >= {"thesis.pdf", "thesis.ocr.pdf", "thesis.txt"}
    assert not [n for n in files_in(tmp_path) if n.startswith(".thesis")]


async def test_cancel_mid_document_leaves_no_output(manager: JobManager, tmp_path: Path) -> None:
    folder = tmp_path / "long"
    dense = [scanned.scan(p) for p in _dense(6)]
    scanned.save_pdf(dense, folder / "book.pdf")
    handle = manager.dispatch(OcrJob(str(folder), formats=["pdf", "txt"], workers=2))
    # Two pages of the one PDF at once: one tesseract per worker.
    await wait_for(lambda: len(tesseract_processes(str(folder))) == 2, what="two tesseracts")
    await wait_for(lambda: handle.progress.done >= 1, what="a page done", timeout=60)
    await wait_for(lambda: len(tesseract_processes(str(folder))) == 2, what="two tesseracts")

    asked = time.monotonic()
    handle.cancel()
    with anyio.fail_after(2):
        state = await handle.join()
    took = time.monotonic() - asked

    assert state is JobState.CANCELLED and took < 2.0
    assert tesseract_processes(str(folder)) == []
    assert files_in(folder) == {"book.pdf"}  # no output, page result or temporary file


def _dense(count: int) -> list[pages.Page]:
    from tests.media.test_ocr import dense_pages

    return dense_pages(count, sentences=48)


async def test_a_page_that_fails_is_reported_and_its_document_goes_on(
    manager: JobManager, tmp_path: Path
) -> None:
    scans = scanned.scans(4, sentences=2, seed=2)
    tmp_path = tmp_path / "inbox"
    source = scanned.save_pdf(scans, tmp_path / "damaged.pdf")
    with pikepdf.open(source, allow_overwriting_input=True) as pdf:
        image = next(iter(pdf.pages[2].obj.Resources.XObject.values()))
        image.write(b"\xff\xd8\xff\xe0 not really a JPEG", filter=pikepdf.Name.DCTDecode)
        pdf.save(source)

    handle = manager.dispatch(OcrJob(str(source), formats=["pdf", "txt"]))
    result = await handle

    assert (result["done"], result["failed"], result["pages"]) == (0, 1, 3)
    assert [e.item for e in handle.item_errors] == [f"{source} (page 3)"]
    assert "jpeg" in handle.item_errors[0].error.lower(), handle.item_errors[0].error
    text = (tmp_path / "damaged.txt").read_text().split("\f")
    assert [pages.cer([(scans[i].page.text, text[i])]) <= 0.01 for i in (0, 1, 3)] == [True] * 3
    assert text[2] == ""
    with pikepdf.open(tmp_path / "damaged.ocr.pdf") as pdf:
        assert len(pdf.pages) == 4
    # Not done: the next run does the failed page only (and takes no output for an input).
    assert json.loads((tmp_path / "damaged.ipyjobs.json").read_text())["complete"] is False
    again = manager.dispatch(OcrJob(str(tmp_path), formats=["pdf", "txt"]))
    result = await again
    assert (result["files"], result["pages"], again.error_count) == (1, 0, 1), files_in(tmp_path)


async def test_unreadable_pdfs_fail_alone_with_the_reason(
    manager: JobManager, tmp_path: Path
) -> None:
    folder = tmp_path / "inbox"
    good = scanned.save_pdf(scanned.scans(2, sentences=1, seed=3), folder / "good.pdf")
    with pikepdf.open(good) as pdf:
        pdf.save(folder / "encrypted.pdf", encryption=pikepdf.Encryption(owner="o", user=""))
        pdf.save(folder / "locked.pdf", encryption=pikepdf.Encryption(owner="o", user="secret"))
    data = good.read_bytes()
    (folder / "truncated.pdf").write_bytes(data[: len(data) // 2])
    with pikepdf.new() as empty:
        empty.save(folder / "empty.pdf")
    pages.save(pages.pages(1, sentences=1), folder)

    handle = manager.dispatch(OcrJob(str(folder), formats=["pdf", "txt"]))
    result = await handle

    assert (result["files"], result["done"], result["failed"]) == (6, 2, 4)
    errors = {Path(e.item).name: e.error for e in handle.item_errors}
    assert set(errors) == {"encrypted.pdf", "locked.pdf", "truncated.pdf", "empty.pdf"}
    assert "encrypted" in errors["encrypted.pdf"] and "qpdf --decrypt" in errors["encrypted.pdf"]
    assert "password-protected" in errors["locked.pdf"]
    assert "damaged or truncated" in errors["truncated.pdf"]
    assert "has no pages" in errors["empty.pdf"]
    assert handle.progress.done == handle.progress.total == 2 + 1 + 4
    assert (folder / "good.ocr.pdf").is_file() and (folder / "page01.txt").is_file()
    assert not [
        n
        for n in files_in(folder)
        if n.startswith(("encrypted.", "locked.", "trunc")) and n.endswith((".txt", ".ocr.pdf"))
    ]


def test_bad_pdf_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be one of skip, redo, force"):
        OcrJob(str(tmp_path), mode="always")
    with pytest.raises(ValueError, match="dpi must be an integer from 50 to 1200"):
        OcrJob(str(tmp_path), dpi=20)


async def test_rotate_pages_fetches_the_osd_data_like_a_language(
    manager: JobManager, mirror, tmp_path: Path
) -> None:
    scans = scanned.scans(1, sentences=3, seed=9, turned=(0,))
    source = scanned.save_pdf(scans, tmp_path / "sideways.pdf")

    handle = manager.dispatch(OcrJob(str(source), formats=["pdf"], rotate_pages=True))
    result = await handle

    assert result["done"] == 1
    assert [c.kind for c in handle.children] == ["models.download", "models.download"]
    assert Path(result["tessdata"], "osd.traineddata").is_file()  # from the loopback mirror
    with pikepdf.open(tmp_path / "sideways.ocr.pdf") as pdf:
        assert pdf.pages[0].obj.Rotate == 90
    assert (
        pages.cer([(scans[0].page.text, scanned.pdftotext(tmp_path / "sideways.ocr.pdf"))]) <= 0.01
    )


async def test_redo_replaces_an_earlier_ocr_layer_and_force_rasterises_text_pages(
    manager: JobManager, tmp_path: Path
) -> None:
    scans = scanned.scans(2, sentences=2, seed=30)
    first = scanned.save_pdf(scans, tmp_path / "first" / "old.pdf")
    await manager.dispatch(OcrJob(str(first), formats=["pdf"]))
    searchable = tmp_path / "first" / "old.ocr.pdf"
    typed = "Board minutes typed into a word processor."
    for mode in ("skip", "redo", "force"):
        folder = tmp_path / mode
        folder.mkdir()
        with pikepdf.open(searchable) as pdf:
            pdf.pages.append(born_digital_page(pdf, typed))
            pdf.save(folder / "doc.pdf")
    expected = [s.page.text for s in scans] + [typed]

    for mode in ("skip", "redo", "force"):
        folder = tmp_path / mode
        result = await manager.dispatch(OcrJob(str(folder), formats=["pdf", "txt"], mode=mode))
        assert result["done"] == 1, mode
        target = folder / "doc.ocr.pdf"
        read = [scanned.pdftotext(target, i + 1) for i in range(3)]
        # One copy of each page's text whatever the mode (an old layer is never doubled).
        assert pages.cer(zip(expected, read, strict=True)) <= 0.01, (mode, read)
        txt = (folder / "doc.txt").read_text().split("\f")
        assert pages.cer(zip(expected, txt, strict=True)) <= 0.01, (mode, txt)
        with pikepdf.open(folder / "doc.pdf") as before, pikepdf.open(target) as after:
            kept = [
                content(b) == content(a) for b, a in zip(before.pages, after.pages, strict=True)
            ]
            typed_page = {
                op
                for _, op in (
                    (i.operands, str(i.operator))
                    for i in pikepdf.parse_content_stream(after.pages[2])
                )
            }
        # skip: every page already had text, nothing changes; redo: scanned pages get a new
        # layer, the typed page stays; force: the typed page becomes its picture.
        assert (
            kept == {"skip": [True] * 3, "redo": [False, False, True], "force": [False] * 3}[mode]
        )
        assert ("Tj" in typed_page) is (mode != "force")
