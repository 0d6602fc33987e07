"""Real processes for the media tests: a second kernel running a job (``python -m
tests.media.run_job``), one without root's file access, and the tesseract processes alive."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_file_access() -> None:
    """In the child, before exec: root keeps its uid but loses the capabilities that let it
    read any folder, so permissions mean what they mean for everyone else."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            os._exit(97)


def start_job(
    kind: str,
    params: dict[str, Any] | None = None,
    *,
    resume: str | None = None,
    without_file_access: bool = False,
) -> subprocess.Popen[str]:
    """A second "kernel": a Python process running one job (or resuming one) with this
    process's environment (IPYJOBS_HOME, the model mirror). ``without_file_access``: as root,
    without the capabilities that bypass file permissions (other users have none anyway).
    It prints JSON lines: ``{"id"}`` once dispatched, then ``{"state", "result", "error",
    "item_errors", "log"}``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "tests.media.run_job", kind, json.dumps(params or {})]
    if resume:
        args.append(resume)
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_drop_file_access if without_file_access and os.geteuid() == 0 else None,
    )


def read_json_line(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        assert process.stderr is not None
        raise AssertionError(f"the job process ended: {process.wait()} {process.stderr.read()}")
    return json.loads(line)


def finish(process: subprocess.Popen[str], timeout: float = 300) -> dict[str, Any]:
    """The job process's final report, once it ended."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def tesseract_processes(marker: str) -> list[str]:
    """Tesseract processes that are children of this process (zombies included) or that name
    ``marker`` (the test's folder) on their command line (orphans included)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (
                (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            )
        except OSError:
            continue  # ended meanwhile
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if command == "tesseract" and (ppid == os.getpid() or marker in cmdline):
            found.append(f"{proc.name}: {cmdline}")
    return found
