"""The OCR job on real page images: Pillow renders known English text in Debian's TrueType
fonts, the real tesseract binary reads it back."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import anyio
import pytest

from ipyjobs import JobManager, JobState
from ipyjobs.media import LocalExecutor, OcrJob
from ipyjobs.media.tesseract import TesseractNotFound
from ipyjobs.models import ModelStore
from tests.media.processes import tesseract_processes
from tests.support import pages

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed"),
    pytest.mark.skipif(len(pages.fonts()) < 3, reason="needs fonts-dejavu-core, fonts-liberation"),
]

ALL_FORMATS = ["txt", "hocr", "tsv", "pdf"]
TSV_COLUMNS = (
    "level page_num block_num par_num line_num word_num left top width height conf text".split()
)


def output(stem: Path, fmt: str) -> Path:
    return stem.with_name(f"{stem.name}.{fmt}")


async def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await anyio.sleep(0.02)


def dense_pages(count: int, sentences: int, size: int = 28) -> list[pages.Page]:
    """Pages full of text (about 1 s of tesseract work per 25 sentences), in each font in turn."""
    fonts = pages.fonts()
    text = " ".join((pages.SENTENCES * 3)[:sentences])
    return [pages.render(text, fonts[i % len(fonts)], size) for i in range(count)]


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


async def test_ocr_of_a_folder_in_every_format_then_skips_done_files(
    manager: JobManager, tmp_path: Path, ipyjobs_home: Path
) -> None:
    scans, out = tmp_path / "scans", tmp_path / "out"
    rendered = pages.pages(12, sentences=3)
    expected = pages.save(rendered[:6], scans)
    expected.update(pages.save(rendered[6:9], scans / "part2", prefix="more"))
    expected.update(pages.save_tiff(rendered[9:], scans / "part2" / "bundle.tif"))
    assert len({p.font for p in rendered}) >= 3 and len({p.size for p in rendered}) >= 3
    good = (scans / "page01.png").read_bytes()
    (scans / "corrupt.png").write_bytes(good[: len(good) // 3])
    (scans / "notes.png").write_text("hello, I am a text file\n" + str(scans / "page01.png"))
    (scans / "readme.txt").write_text("not an image type: never looked at")

    job = OcrJob(str(scans), output_dir=str(out), formats=ALL_FORMATS, workers=2)
    assert job.title == "OCR scans"
    handle = manager.dispatch(job)
    result = await handle

    assert handle.state is JobState.COMPLETED
    assert (result["files"], result["done"], result["failed"], result["skipped"]) == (12, 10, 2, 0)
    assert result["pages"] == 12
    assert handle.progress.done == handle.progress.total == 14  # a page per bad file
    assert handle.progress.unit == "pages"
    # Failures: one per bad file, with tesseract's own words for the corrupt image.
    assert handle.error_count == 2
    errors = {Path(e.item).name: e.error for e in handle.item_errors}
    assert set(errors) == {"corrupt.png", "notes.png"}
    assert re.search(r"png|pix", errors["corrupt.png"], re.IGNORECASE), errors
    assert "not an image" in errors["notes.png"]
    # The language data: Debian's eng, reused through a shared download child.
    assert Path(result["tessdata"], "eng.traineddata").is_file()
    assert [c.kind for c in handle.children] == ["models.download"]
    assert ModelStore.at(ipyjobs_home).info("tesseract:eng").source == "system"

    stems = {image: out / image.relative_to(scans).with_suffix("") for image in expected}
    assert sorted(result["outputs"]) == sorted(
        str(output(stem, fmt)) for stem in stems.values() for fmt in ALL_FORMATS
    )
    # Nothing else: no outputs of the failed files, no temporary leftovers.
    names = files_in(out)
    assert not [n for n in names if n.startswith(".") or "/." in n], names
    assert not [n for n in names if "corrupt" in n or "notes" in n], names

    # Text: character error rate over all pages.
    pairs = [(text, output(stems[image], "txt").read_text()) for image, text in expected.items()]
    assert pages.cer([("hello  world", "hel1o world\n")]) == 1 / 11  # the measure itself
    rate = pages.cer(pairs)
    print(f"character error rate {rate:.4f}")
    assert rate <= 0.05

    for image, stem in stems.items():
        page_count = 3 if image.suffix == ".tif" and image.stem == "bundle" else 1
        # hOCR: well-formed XHTML with pages and words.
        root = ET.fromstring(output(stem, "hocr").read_bytes())
        classes = [e.get("class") for e in root.iter()]
        assert classes.count("ocr_page") == page_count
        assert classes.count("ocrx_word") >= 20
        # TSV: tesseract's 12 columns, word rows (level 5) with a confidence.
        with open(output(stem, "tsv"), newline="") as file:
            rows = list(csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE))
        assert rows[0] == TSV_COLUMNS
        words = [dict(zip(TSV_COLUMNS, r, strict=True)) for r in rows[1:] if r[0] == "5"]
        assert len(words) >= 20
        assert all(0 <= float(w["conf"]) <= 100 and w["text"].strip() for w in words)
        assert {int(w["page_num"]) for w in words} == set(range(1, page_count + 1))
        # PDF: a searchable PDF with one page per image page.
        pdf = output(stem, "pdf").read_bytes()
        assert pdf.startswith(b"%PDF")
        assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) == page_count
        marker = json.loads(stem.with_name(stem.name + ".ipyjobs.json").read_text())
        assert marker["pages"] == page_count

    # Again: every finished file is skipped, nothing rewritten; the bad files fail again.
    mtimes = {n: (out / n).stat().st_mtime_ns for n in names}
    again = manager.dispatch(job)
    result = await again
    assert (result["done"], result["failed"], result["skipped"], result["outputs"]) == (
        0,
        2,
        10,
        [],
    )
    assert again.error_count == 2 and again.state is JobState.COMPLETED
    assert again.progress.done == again.progress.total == 14
    assert again.children == []  # the language data is ready now
    assert {n: (out / n).stat().st_mtime_ns for n in names} == mtimes

    # A changed image is done again, alone.
    changed = scans / "page02.jpg"
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    result = await manager.dispatch(job)
    assert (result["done"], result["skipped"]) == (1, 9)
    assert result["outputs"] == [str(output(stems[changed], fmt)) for fmt in ALL_FORMATS]


class CountingExecutor(LocalExecutor):
    """The local executor, counting the files it was given."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.files: list[str] = []

    async def run(self, ctx, fn, /, *args):
        self.files.append(args[0].image.name)
        return await super().run(ctx, fn, *args)


async def test_outputs_next_to_images_keep_names_apart(manager: JobManager, tmp_path: Path) -> None:
    executor = CountingExecutor(1)
    folder = tmp_path / "inbox"
    first, second, third = pages.pages(3, sentences=2, seed=3)
    folder.mkdir()
    first.image.save(folder / "scan.png")
    second.image.save(folder / "scan.jpg", quality=92)
    third.image.save(folder / "notes.v2.bmp")

    result = await manager.dispatch(OcrJob([str(folder)], psm=3, oem=1, executor=executor))

    assert result["done"] == 3
    assert sorted(executor.files) == ["notes.v2.bmp", "scan.jpg", "scan.png"]
    for name, page in (("scan.png", first), ("scan.jpg", second), ("notes.v2", third)):
        text = (folder / f"{name}.txt").read_text()
        assert pages.cer([(page.text, text)]) <= 0.05, (name, text)
        assert (folder / f"{name}.ipyjobs.json").is_file()
    assert not (folder / "scan.txt").exists()
    assert len(files_in(folder)) == 9  # three images, their text and their markers


async def test_cancel_kills_tesseract_and_leaves_no_partial_output(
    manager: JobManager, tmp_path: Path
) -> None:
    folder = tmp_path / "big"
    images = pages.save(dense_pages(4, sentences=72), folder)
    handle = manager.dispatch(OcrJob(str(folder), formats=["txt", "pdf"], workers=2))
    await wait_for(lambda: len(tesseract_processes(str(folder))) == 2, what="two tesseracts")
    await anyio.sleep(0.3)  # well inside the first pages
    assert not list(folder.glob("*.txt"))

    asked = time.monotonic()
    handle.cancel()
    with anyio.fail_after(2):
        state = await handle.join()
    took = time.monotonic() - asked

    assert state is JobState.CANCELLED
    assert took < 2.0
    print(f"cancelled in {took * 1000:.0f} ms")
    assert tesseract_processes(str(folder)) == []
    assert files_in(folder) == {p.name for p in images}  # no output, marker or temporary file


async def test_pause_lets_running_files_finish_and_starts_no_new_one(
    manager: JobManager, tmp_path: Path
) -> None:
    folder = tmp_path / "queue"
    pages.save(dense_pages(4, sentences=24, size=30), folder)
    handle = manager.dispatch(OcrJob(str(folder), workers=2))
    await wait_for(lambda: len(tesseract_processes(str(folder))) == 2, what="two tesseracts")

    handle.pause()
    await wait_for(lambda: handle.state is JobState.PAUSED, what="paused")
    assert tesseract_processes(str(folder)) == []  # paused means nothing is running
    done = sorted(folder.glob("*.txt"))
    assert len(done) == 2
    await anyio.sleep(0.5)
    assert tesseract_processes(str(folder)) == [] and sorted(folder.glob("*.txt")) == done

    handle.resume()
    result = await handle
    assert (result["done"], result["failed"]) == (4, 0)
    assert len(list(folder.glob("*.txt"))) == 4


async def test_an_interrupted_job_resumes_with_the_files_not_done(
    ipyjobs_home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "pile"
    pages.save(dense_pages(4, sentences=24, size=30), folder)
    async with JobManager(ipyjobs_home, tick=0.02, store_interval=0.02) as manager:
        handle = manager.dispatch(OcrJob(str(folder), workers=1))
        await wait_for(lambda: len(list(folder.glob("*.txt"))) == 1, what="the first file")
    assert handle.state is JobState.INTERRUPTED  # the manager closed under it (kernel restart)
    assert tesseract_processes(str(folder)) == []

    async with JobManager(ipyjobs_home, tick=0.02) as manager:
        resumed = manager.resume(handle.id)
        result = await resumed
    assert result["skipped"] >= 1 and result["skipped"] + result["done"] == 4
    assert len(list(folder.glob("*.txt"))) == 4


@pytest.mark.parametrize("how", ["tesseract_cmd", "PATH"])
async def test_no_tesseract_fails_before_any_work(
    manager: JobManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    import pytesseract

    folder = tmp_path / "scans"
    pages.save(pages.pages(1), folder)
    if how == "PATH":
        monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "tesseract")
        monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    else:
        monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", str(tmp_path / "no/tess"))

    handle = manager.dispatch(OcrJob(str(folder)))
    with pytest.raises(TesseractNotFound) as info:
        await handle

    message = str(info.value)
    assert "apt-get install tesseract-ocr" in message and "brew install tesseract" in message
    assert "pytesseract.pytesseract.tesseract_cmd" in message
    assert handle.state is JobState.FAILED
    assert handle.children == []  # no language data was fetched
    assert files_in(folder) == {"page01.png"}


async def test_bad_parameters_are_refused_with_the_valid_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'docx'") as info:
        OcrJob(str(tmp_path), formats=["txt", "docx"])
    assert "valid formats are txt, hocr, tsv, pdf" in str(info.value)
    with pytest.raises(ValueError, match="psm must be an integer from 0 to 13"):
        OcrJob(str(tmp_path), psm=14)
    with pytest.raises(ValueError, match="variant must be 'fast' or 'best'"):
        OcrJob(str(tmp_path), variant="medium")

    job = OcrJob(tmp_path, formats="PDF", languages="eng + deu")
    assert (job.formats, job.languages, job.inputs) == (("pdf",), "eng+deu", str(tmp_path))
    rebuilt = OcrJob.from_params(json.loads(json.dumps(job.params())))
    assert rebuilt == job
