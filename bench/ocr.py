"""OCR throughput: the OcrJob against a plain sequential loop of the tesseract command.

40 page images of known English text (``tests/support/pages.py``: Pillow, Debian's TrueType
fonts, png/jpg/tif in turn; short pages of two sentences, so the run stays under a minute on
two cores) are read twice, with the same options (``-l eng``, text output, the same tessdata
folder):

- the OcrJob, dispatched to a JobManager under ``anyio.run`` with a temporary IPYJOBS_HOME and
  its default workers (``os.cpu_count()``): one single-threaded tesseract per worker;
- a sequential loop of ``subprocess.run(["tesseract", ...])``, with tesseract's default
  (OpenMP) threading, as a user would write it.

vs_sequential_cli_ratio: job time (dispatch to result) / loop time. cer: character error rate
of the job's text against the rendered text, whitespace normalised. Also printed, not in the
ratio: the loop with OMP_THREAD_LIMIT=1, which separates what one thread per process gains from
what running files side by side gains.

claim_ms_per_file: what the per-file claim (a ``flock``ed lock file beside the outputs, made,
checked and removed) costs, timed over 2,000 claims beside the job's outputs;
claim_ratio_delta: that cost for the benchmark's files over the loop time, i.e. how much the
claim moves vs_sequential_cli_ratio (on one worker; less with several). The last line printed
is one JSON object. Goals on 2 cores: vs_sequential_cli_ratio <= 0.6, claim_ratio_delta <= 0.02.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipyjobs import JobManager
from ipyjobs.media import OcrJob
from ipyjobs.media.outputs import FileClaim
from ipyjobs.media.tesseract import tesseract_cmd
from tests.support import pages

PAGES = 40
SENTENCES = 2


async def through_job(images: Path, out: Path, home: Path) -> tuple[float, dict]:
    async with JobManager(home) as manager:
        started = time.perf_counter()
        result = await manager.dispatch(OcrJob(str(images), output_dir=str(out)))
        elapsed = time.perf_counter() - started
    assert result["done"] == PAGES and result["failed"] == 0, result
    return elapsed, result


def sequential(images: list[Path], out: Path, tessdata: str, threads: int | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_THREAD_LIMIT"}
    if threads is not None:
        env["OMP_THREAD_LIMIT"] = str(threads)
    out.mkdir()
    started = time.perf_counter()
    for image in images:
        args = [tesseract_cmd(), str(image), str(out / image.stem), "--tessdata-dir", tessdata]
        subprocess.run(
            [*args, "-l", "eng", "txt"],
            env=env,
            check=True,
            capture_output=True,
        )
    return time.perf_counter() - started


def claim_seconds(folder: Path, count: int = 2000) -> float:
    """Seconds per claim taken and released, for ``count`` different stems in ``folder``."""
    claims = [FileClaim(folder / f"page{i:04d}") for i in range(count)]
    started = time.perf_counter()
    for claim in claims:
        assert claim.try_acquire()
        claim.release()
    return (time.perf_counter() - started) / count


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        started = time.perf_counter()
        expected = pages.save(pages.pages(PAGES, sentences=SENTENCES, seed=11), tmp / "pages")
        print(f"rendered {PAGES} pages in {time.perf_counter() - started:.1f} s")
        home = tmp / "home"
        os.environ["IPYJOBS_HOME"] = str(home)

        job_time, result = anyio.run(through_job, tmp / "pages", tmp / "job", home)
        print(f"OcrJob ({os.cpu_count()} workers): {job_time:.2f} s")
        loop_time = sequential(list(expected), tmp / "cli", result["tessdata"], None)
        print(f"sequential tesseract loop, default threading: {loop_time:.2f} s")
        single_time = sequential(list(expected), tmp / "cli-1", result["tessdata"], 1)
        print(f"sequential tesseract loop, OMP_THREAD_LIMIT=1: {single_time:.2f} s")

        claim = claim_seconds(tmp / "job")
        cer = pages.cer(
            (text, (tmp / "job" / f"{image.stem}.txt").read_text())
            for image, text in expected.items()
        )
        cli_cer = pages.cer(
            (text, (tmp / "cli" / f"{image.stem}.txt").read_text())
            for image, text in expected.items()
        )
    ratio = job_time / loop_time
    print(f"job / loop: {ratio:.3f}; job / single-threaded loop: {job_time / single_time:.3f}")
    print(f"character error rate: job {cer:.4f}, loop {cli_cer:.4f}")
    delta = claim * PAGES / loop_time
    print(f"claim: {claim * 1000:.3f} ms per file, {delta:.5f} of the ratio")
    print(json.dumps({"vs_sequential_cli_ratio": round(ratio, 3), "cer": round(cer, 4),
                      "claim_ms_per_file": round(claim * 1000, 3),
                      "claim_ratio_delta": round(delta, 5)}))  # fmt: skip


if __name__ == "__main__":
    main()
