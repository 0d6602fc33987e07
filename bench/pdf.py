"""Scanned PDF to searchable PDF: the OcrJob against OCRmyPDF on the same file, in one run.

A 16-page scanned PDF is built first: A4 pages at 300 dpi with known English text
(``tests/support/pages.py``: Pillow, Debian's TrueType fonts, about 25 lines a page), two pages
skewed, two with scanner noise, one turned sideways, saved by Pillow as one JPEG per page (what
a scanner writes). Then, with ``-l eng`` and the same Tesseract:

- the OcrJob (``formats=["pdf"]``: the searchable PDF alone) dispatched to a JobManager under
  ``anyio.run``, its default workers (``os.cpu_count()``), timed from dispatch to result. The
  language data is made ready by a one-page job before the clock starts (a one-time set-up, as
  OCRmyPDF's data is Debian's, already in place);
- ``ocrmypdf --jobs N --output-type pdf in.pdf out.pdf`` with N = ``os.cpu_count()``.

vs_ocrmypdf_ratio: job time / ocrmypdf time. cer: character error rate of ``pdftotext -raw``
on the job's PDF against the known text, page by page. size_ratio: the job's PDF / the input.
Also printed (not in the JSON): the CPU seconds each side used, this process and its children
(the tesseracts) for the job, the ocrmypdf process tree for OCRmyPDF; on a machine shared with
other work the wall-clock ratio drifts towards 1 while the CPU ratio does not.
The last line printed is one JSON object. Goals: R <= 0.8, C <= 0.01, S <= 1.1.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipyjobs import JobManager
from ipyjobs.media import OcrJob
from tests.support import pages, scanned

PAGES = 16
WIDTH = 2480  # A4 at 300 dpi


async def through_job(source: Path, warm: Path, home: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds of the job (this process and its tesseracts)."""
    async with JobManager(home) as manager:
        await manager.dispatch(OcrJob(str(warm), formats=["pdf"]))  # the language data
        cpu, started = cpu_seconds(), time.perf_counter()
        result = await manager.dispatch(OcrJob(str(source), formats=["pdf"]))
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    assert result["done"] == 1 and result["pages"] == PAGES, result
    return elapsed, cpu


def through_ocrmypdf(source: Path, target: Path) -> float:
    command = [sys.executable, "-m", "ocrmypdf", "--jobs", str(os.cpu_count() or 1)]
    command += ["--output-type", "pdf", "-l", "eng", str(source), str(target)]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        started = time.perf_counter()
        scans = scanned.scans(
            PAGES, sentences=14, seed=16, skewed=(3, 11), noisy=(5, 13), turned=(), width=WIDTH,
            size=44,
        )  # fmt: skip
        source = scanned.save_pdf(scans, tmp / "job" / "scan.pdf", dpi=300)
        warm = scanned.save_pdf(scans[:1], tmp / "warm" / "one.pdf", dpi=300)
        size = source.stat().st_size
        print(f"built {PAGES} pages ({size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
        home = tmp / "home"
        os.environ["IPYJOBS_HOME"] = str(home)

        job_time, job_cpu = anyio.run(through_job, source, warm, home)
        cpu = cpu_seconds()
        output = tmp / "job" / "scan.ocr.pdf"
        print(f"OcrJob ({os.cpu_count()} workers): {job_time:.2f} s")
        reference = tmp / "ocrmypdf.pdf"
        ocrmypdf_time = through_ocrmypdf(source, reference)
        ocrmypdf_cpu = cpu_seconds() - cpu
        print(f"ocrmypdf --jobs {os.cpu_count()}: {ocrmypdf_time:.2f} s")
        print(
            f"CPU seconds: job {job_cpu:.1f}, ocrmypdf "
            f"{ocrmypdf_cpu:.1f}: {job_cpu / ocrmypdf_cpu:.3f}; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )

        cer = pages.cer(
            (scan.page.text, scanned.pdftotext(output, i + 1)) for i, scan in enumerate(scans)
        )
        reference_cer = pages.cer(
            (scan.page.text, scanned.pdftotext(reference, i + 1)) for i, scan in enumerate(scans)
        )
        size_ratio = output.stat().st_size / size
        reference_size = reference.stat().st_size / size
    ratio = job_time / ocrmypdf_time
    print(f"character error rate: job {cer:.4f}, ocrmypdf {reference_cer:.4f}")
    print(f"size / input: job {size_ratio:.3f}, ocrmypdf {reference_size:.3f}")
    print(
        json.dumps(
            {
                "vs_ocrmypdf_ratio": round(ratio, 3),
                "cer": round(cer, 4),
                "size_ratio": round(size_ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
