"""An OCR batch loses nothing: each failure is one file's with its real cause, a killed kernel's
debris is removed on resume, two kernels on one folder do each file once. Real tesseract, real
processes, a real (tmpfs) disk that fills up."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from ipyjobs import JobManager, JobState
from ipyjobs.media import OcrJob, TranscribeJob
from ipyjobs.media.batch import NoInputFiles
from tests.media.conftest import fill
from tests.media.processes import finish, read_json_line, start_job, tesseract_processes
from tests.media.test_ocr import dense_pages, files_in, wait_for
from tests.support import pages

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed"),
    pytest.mark.skipif(len(pages.fonts()) < 3, reason="needs fonts-dejavu-core, fonts-liberation"),
]


def hidden(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


async def test_long_names_work_where_the_final_names_fit(
    manager: JobManager, tmp_path: Path
) -> None:
    folder = tmp_path / "long"
    first, second, third = pages.pages(3, sentences=2, seed=5)
    folder.mkdir()
    fits = "a" * 245  # outputs fit (249-250 bytes); the marker (258) and old temp names not
    first.image.save(folder / f"{fits}.png")
    too_long = "b" * 251  # .txt fits (255 bytes), .hocr does not (256)
    second.image.save(folder / f"{too_long}.png")
    third.image.save(folder / "short.png")
    job = OcrJob(str(folder), formats=["txt", "hocr"], workers=1)

    handle = manager.dispatch(job)
    result = await handle

    assert (result["done"], result["failed"]) == (2, 1)
    assert pages.cer([(first.text, (folder / f"{fits}.txt").read_text())]) <= 0.05
    assert (folder / f"{fits}.hocr").is_file()
    [error] = handle.item_errors
    assert error.item == str(folder / f"{too_long}.png")
    assert error.error.startswith("file name too long for this file system: ")
    assert "is 256 bytes, the limit" in error.error and "255" in error.error
    # Nothing of the failed file (its .txt was renamed into place, then taken back), no debris.
    left = [n for n in os.listdir(folder) if n.startswith(too_long) and n != f"{too_long}.png"]
    assert left == []
    assert hidden(folder) == []

    again = await manager.dispatch(job)
    assert (again["done"], again["skipped"], again["failed"]) == (0, 2, 1)  # never redone


async def test_a_full_output_disk_fails_each_file_with_no_space_left(
    manager: JobManager, tmp_path: Path, small_disk: Path
) -> None:
    scans = tmp_path / "scans"
    pages.save(pages.pages(3, sentences=3), scans)
    out = small_disk / "out"
    fill(small_disk, leave=8 * 1024)  # a text file fits, a PDF page does not

    handle = manager.dispatch(OcrJob(str(scans), output_dir=str(out), formats=["txt", "pdf"]))
    result = await handle

    assert handle.state is JobState.COMPLETED
    assert (result["done"], result["failed"]) == (0, 3)
    for error in handle.item_errors:
        name = Path(error.item).name
        assert error.error.startswith(f"outputs of {name}: no space left on {small_disk} ("), error
        assert "bytes free" in error.error and "\n" not in error.error
        assert "Estimating resolution" not in error.error
    assert files_in(out) == set()  # no output, marker, claim or staging folder


@pytest.mark.parametrize("then", ["resume", "new job"])
async def test_a_sigkilled_ocr_kernel_leaves_no_tesseract_and_its_debris_is_removed(
    ipyjobs_home: Path, tmp_path: Path, then: str
) -> None:
    folder = tmp_path / "pile"
    images = pages.save(dense_pages(3, sentences=36), folder)
    params = {"inputs": str(folder), "formats": ["txt", "pdf"], "workers": 2}
    kernel = start_job("media.ocr", params)
    job_id = read_json_line(kernel)["id"]
    await wait_for(lambda: len(tesseract_processes(str(folder))) == 2, "two tesseracts", 60)
    debris = hidden(folder)
    assert len(debris) == 4  # a claim and a staging folder per running file

    kernel.send_signal(signal.SIGKILL)
    kernel.communicate()
    await wait_for(lambda: tesseract_processes(str(folder)) == [], "tesseract to die", 5)
    assert set(debris) <= set(hidden(folder))  # the killed run could not clean up

    async with JobManager(ipyjobs_home, tick=0.02) as manager:
        assert manager.record(job_id).state is JobState.INTERRUPTED
        if then == "resume":
            handle = manager.resume(job_id)
        else:
            handle = manager.dispatch(OcrJob.from_params(params))
        result = await handle
    assert result["failed"] == 0 and result["done"] + result["skipped"] == 3
    assert hidden(folder) == []
    stems = [image.with_suffix("") for image in images]
    expected = {p.name for p in images}
    expected |= {f"{s.name}.{ext}" for s in stems for ext in ("txt", "pdf", "ipyjobs.json")}
    assert files_in(folder) == expected


async def test_two_kernels_on_one_folder_do_each_file_once(
    manager: JobManager, tmp_path: Path
) -> None:
    warm = tmp_path / "warm"
    pages.save(pages.pages(1), warm)
    await manager.dispatch(OcrJob(str(warm)))  # the language data, ready for both kernels
    folder = tmp_path / "shared"
    pages.save(dense_pages(4, sentences=24, size=30), folder)
    params = {"inputs": str(folder), "workers": 1}

    kernels = [start_job("media.ocr", params) for _ in range(2)]
    reports = [finish(kernel) for kernel in kernels]

    results = [report["result"] for report in reports]
    assert [r["failed"] for r in results] == [0, 0]
    assert [r["done"] + r["skipped"] for r in results] == [4, 4]
    assert sum(r["done"] for r in results) == 4  # each file once
    assert all(r["done"] >= 1 for r in results)  # they ran side by side
    assert not set(results[0]["outputs"]) & set(results[1]["outputs"])
    # The one that met the other's claim said so.
    logs = [line for report in reports for line in report["log"]]
    assert any("another job" in line for line in logs), logs
    assert len(list(folder.glob("*.txt"))) == 4 and hidden(folder) == []


async def test_unreadable_folders_and_files_are_item_errors(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    pages.save(pages.pages(1), scans)
    locked, secret = scans / "locked", scans / "secret.png"
    pages.save(pages.pages(1, seed=2), locked)
    shutil.copy(scans / "page01.png", secret)
    os.symlink(scans / "gone.png", scans / "link.png")
    locked.chmod(0)
    secret.chmod(0)
    try:
        # As root, in a process without the capabilities that read anything.
        kernel = start_job("media.ocr", {"inputs": str(scans)}, without_file_access=True)
        report = finish(kernel)
    finally:
        locked.chmod(0o755)
        secret.chmod(0o644)

    assert report["state"] == "completed", report
    assert (report["result"]["done"], report["result"]["files"]) == (1, 1)
    assert dict(report["item_errors"]) == {
        str(locked): "cannot read this folder: Permission denied",
        str(secret): "cannot read this file: permission denied",
        str(scans / "link.png"): "broken link: no such target",
    }


async def test_empty_inputs_give_one_answer_for_both_jobs(
    manager: JobManager, tmp_path: Path
) -> None:
    for job_type in (OcrJob, TranscribeJob):
        with pytest.raises(ValueError, match="inputs is empty: give a file or a folder"):
            job_type([])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.md").write_text("no media here")
    for job, kind in ((OcrJob(empty), "image or PDF"), (TranscribeJob(empty), "audio or video")):
        handle = manager.dispatch(job)
        with pytest.raises(NoInputFiles, match=f"no {kind} files in '{empty}'") as info:
            await handle
        assert "looked for .wav" in str(info.value) or "looked for .png" in str(info.value)
        assert handle.children == []  # nothing downloaded for nothing


async def test_bad_parameters_are_refused_before_any_download(
    manager: JobManager, tmp_path: Path
) -> None:
    scans = tmp_path / "scans"
    pages.save(pages.pages(1), scans)
    job = OcrJob(scans, formats="txt", output_dir=tmp_path / "out")  # Path and one string
    assert (job.inputs, job.formats) == (str(scans), ("txt",))
    assert job.output_dir == str(tmp_path / "out")
    assert OcrJob.from_params(json.loads(json.dumps(job.params()))) == job

    handle = manager.dispatch(OcrJob(scans, languages="eng+xx"))
    with pytest.raises(ValueError, match="unknown Tesseract language 'xx': valid codes") as info:
        await handle
    assert "eng, enm, epo" in str(info.value)
    missing = manager.dispatch(OcrJob(tmp_path / "scnas"))
    with pytest.raises(FileNotFoundError, match="scnas"):
        await missing
    assert handle.children == [] and missing.children == []
