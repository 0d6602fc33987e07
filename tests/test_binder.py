"""The Binder set-up (binder/) and the model fetcher its postBuild runs.

repo2docker itself is run with ``--no-build --no-run --debug``: it reads binder/ and prints the
Dockerfile it would build, without Docker. The fetcher (``python -m ipyjobs.models``) runs as a
real subprocess against the loopback mirror.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ipyjobs.models import ModelStore
from ipyjobs.models.__main__ import _parser
from ipyjobs.models.catalog import Catalog
from tests.support.http_server import LoopbackServer
from tests.support.model_fixtures import TEST_WHISPER

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


def _lines(name: str) -> list[str]:
    text = (BINDER / name).read_text()
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0]]


def test_binder_files_ask_for_what_the_notebooks_need() -> None:
    assert _lines("runtime.txt") == ["python-3.11"]
    assert {"ffmpeg", "tesseract-ocr", "tesseract-ocr-eng", "espeak-ng"} <= set(_lines("apt.txt"))

    requirements = _lines("requirements.txt")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
    assert "torch" in requirements
    [project] = [line for line in requirements if line.startswith(".")]
    extras = set(project.removeprefix(".[").removesuffix("]").split(","))
    declared = importlib.metadata.metadata("ipyjobs").get_all("Provides-Extra")
    assert extras == {"speech", "ocr", "lab"} <= set(declared)

    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK)
    script = post_build.read_text()
    assert script.startswith("#!/bin/bash\n") and "set -euo pipefail" in script
    [fetch] = [line for line in script.splitlines() if "ipyjobs.models" in line]
    command = shlex.split(fetch)
    assert command[:3] == ["python", "-m", "ipyjobs.models"]
    names = _parser().parse_args(command[3:]).models
    catalog = Catalog()
    assert [catalog.get(name).id for name in names] == ["whisper/tiny.en", "tessdata_fast/eng"]


@pytest.mark.skipif(
    importlib.util.find_spec("repo2docker") is None,
    reason="jupyter-repo2docker is not installed (pip install jupyter-repo2docker); it is not "
    "part of the dev extra",
)
def test_repo2docker_accepts_the_binder_folder() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "repo2docker", "--no-build", "--no-run", "--debug", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    dockerfile = done.stdout
    assert "Building conda environment for python=3.11" in done.stderr
    assert "espeak-ng ffmpeg tesseract-ocr tesseract-ocr-eng" in dockerfile
    # binder/ wins over the root: requirements from there, the repository copied in first
    # (the "." in it is local), and the root's pyproject.toml not installed a second time.
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    assert dockerfile.index("COPY --chown=0:0 src/ ${REPO_DIR}/") < dockerfile.index(
        'pip install --no-cache-dir -r "binder/requirements.txt"'
    )
    assert "pip install --no-cache-dir .\n" not in dockerfile
    assert "RUN ./binder/postBuild" in dockerfile


def _fetch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipyjobs.models", *args, "--interval", "0.2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_fetcher_downloads_verifies_and_reuses(mirror: LoopbackServer, store: ModelStore) -> None:
    done = _fetch("tiny.en-test", "tessdata_fast/eng", "--verify")
    assert done.returncode == 0, done.stderr
    assert "ready: whisper model tiny.en-test:" in done.stdout
    assert "ready: Tesseract eng (fast):" in done.stdout
    assert done.stdout.count("(verified)") == 2
    assert store.info(TEST_WHISPER).status == "ready"
    sent = mirror.bytes_sent("/whisper/tiny.en-test.pt")

    again = _fetch("tiny.en-test", "--list")
    assert again.returncode == 0, again.stderr
    assert mirror.bytes_sent("/whisper/tiny.en-test.pt") == sent  # nothing fetched twice
    listed = dict(line.split()[:2] for line in again.stdout.splitlines() if "/" in line.split()[0])
    assert listed[TEST_WHISPER] == "ready" and listed["whisper/tiny.en"] == "missing"


def test_fetcher_reports_bad_names_and_offline_failures(
    monkeypatch: pytest.MonkeyPatch, store: ModelStore
) -> None:
    unknown = _fetch("tiny-en")
    assert unknown.returncode == 2
    assert "unknown model 'tiny-en'. Did you mean: tiny.en" in unknown.stderr

    monkeypatch.setenv("IPYJOBS_OFFLINE", "1")
    offline = _fetch("tiny.en")
    assert offline.returncode == 1
    assert "failed: whisper model tiny.en: OfflineError" in offline.stderr
    assert store.info("tiny.en").status == "missing"
