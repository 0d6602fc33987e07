"""The shared parts of media batches on their own: child programs die with their parent,
discovery reports progress on a big tree, the claim excludes other processes, tesseract's and
ffmpeg's causes come out as one line. Real processes and binaries."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ipyjobs.media import batch
from ipyjobs.media.causes import tesseract_cause
from ipyjobs.media.outputs import DoneMarker, FileClaim, process_file
from tests.media.processes import ROOT
from tests.support import pages


def processes_with(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode():
                found.append(int(proc.name))
        except (OSError, UnicodeDecodeError):
            continue
    return found


def wait_until(condition, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_program_dies_with_its_sigkilled_parent() -> None:
    seconds = f"{1000 + uuid.uuid4().int % 1000}.{os.getpid()}"  # names this test's sleep
    code = f"from ipyjobs.media import children; children.run(['sleep', '{seconds}'])"
    parent = subprocess.Popen([sys.executable, "-c", code], env={**os.environ,
                              "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        wait_until(lambda: processes_with(f"sleep\0{seconds}"), "the child program", 30)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    wait_until(lambda: not processes_with(f"sleep\0{seconds}"), "the child to die", 5)


def test_discovery_reports_progress_on_a_big_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(300):
        folder = tmp_path / f"box-{i // 30:02d}" / f"shelf-{i:03d}"
        folder.mkdir(parents=True)
        (folder / f"scan-{i:03d}.PNG").touch()
        (folder / "notes.txt").touch()
    monkeypatch.setattr(batch, "PROGRESS_INTERVAL", 0.0)
    reports: list[tuple[int, int]] = []

    found = batch.discover(tmp_path, ["png"], lambda n, folders, _: reports.append((n, folders)))

    assert len(found.files) == 300 and found.files == sorted(found.files)
    assert found.folders == 311 and found.unreadable == []
    assert len(reports) >= 300
    assert reports == sorted(reports) and reports[-1] == (300, 311)


def test_a_claim_excludes_another_process_and_is_gone_after(tmp_path: Path) -> None:
    stem = tmp_path / "scan"
    claim = FileClaim(stem)
    assert claim.try_acquire()
    code = (
        "import sys; from pathlib import Path; from ipyjobs.media.outputs import FileClaim; "
        f"print(FileClaim(Path({str(stem)!r})).try_acquire())"
    )
    other = [sys.executable, "-c", code]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run(other, env=env, capture_output=True, text=True).stdout == "False\n"
    claim.release()
    assert list(tmp_path.iterdir()) == []
    assert subprocess.run(other, env=env, capture_output=True, text=True).stdout == "True\n"


def test_a_file_s_work_that_fails_after_writing_leaves_nothing(tmp_path: Path) -> None:
    stem = tmp_path / "out" / "scan"

    def work(staging) -> dict:
        staging.output("txt").write_text("text")
        raise PermissionError(13, "Permission denied", str(tmp_path / "elsewhere"))

    outcome = process_file(tmp_path / "scan.png", stem, "f1", ["txt"], work)

    assert outcome.status == "failed"
    assert outcome.error == (
        f"PermissionError: [Errno 13] Permission denied: '{tmp_path / 'elsewhere'}'"
    )
    assert list((tmp_path / "out").iterdir()) == []

    def good_work(staging) -> dict:
        staging.output("txt").write_text("ok")
        return {}

    done = process_file(tmp_path / "scan.png", stem, "f1", ["txt"], good_work)
    assert done.status == "done" and DoneMarker(stem, "f1").is_done()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scan.ipyjobs.json", "scan.txt"]


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_tesseract_s_cause_is_its_error_not_its_chatter(tmp_path: Path) -> None:
    [image] = pages.save(pages.pages(1), tmp_path)
    (tmp_path / "cut.png").write_bytes(image.read_bytes()[:3000])
    cut = subprocess.run(["tesseract", str(tmp_path / "cut.png"), str(tmp_path / "a"), "txt"],
                         capture_output=True, text=True)  # fmt: skip
    assert cut.returncode != 0
    assert tesseract_cause(cut.stderr) == "Error in pixReadStreamPng: internal png error"
    gone = subprocess.run(["tesseract", str(tmp_path / "gone.png"), str(tmp_path / "b"), "txt"],
                          capture_output=True, text=True)  # fmt: skip
    assert tesseract_cause(gone.stderr) == (
        f"Error, cannot read input file {tmp_path / 'gone.png'}: No such file or directory"
    )
    chatter = "Estimating resolution as 340\nDetected 12 diacritics\nError during processing.\n"
    assert tesseract_cause(chatter) is None  # the caller looks for the cause (a full disk)
