"""Fixtures for the media tests: spoken clips, and a small disk that fills up."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.whisper_model import SENTENCES as ALL_SENTENCES
from tests.support.whisper_model import speak

SENTENCES = ALL_SENTENCES[:5]
CLIP_FORMATS = ("wav", "mp3", "ogg", "wav", "mp3")

#: The small disk's size: room for a few outputs, not for a batch.
SMALL_DISK = 256 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs mounted for this test (root only), unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    if shutil.which("mount") is None:
        pytest.skip("no mount program")
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK},mode=0755", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` until only about ``leave`` bytes are free."""
    free = shutil.disk_usage(disk).free
    (disk / "filler").write_bytes(bytes(max(0, free - leave)))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five spoken sentences: clip-0.wav, clip-1.mp3, clip-2.ogg, clip-3.wav, clip-4.mp3."""
    folder = tmp_path_factory.mktemp("clips")
    for index, (sentence, fmt) in enumerate(zip(SENTENCES, CLIP_FORMATS, strict=True)):
        speak(sentence, folder / f"clip-{index}.{fmt}", fmt)
    return folder
