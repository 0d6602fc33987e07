"""The environment of the notebooks under nbval (``pytest notebooks --nbval-lax``).

nbval starts one kernel per notebook with this process's environment, and it starts it while
setting up the notebook's collector, before any fixture runs. So the environment is made in a
``pytest_runtest_setup`` hook that runs before that set-up, once, for the first notebook cell:

* a loopback model mirror (``IPYJOBS_MODEL_MIRROR``) serving the converted tiny.en checkpoint
  at ``/whisper/tiny.en-test.pt`` and Debian's ``eng.traineddata`` and ``osd.traineddata`` at
  ``/tessdata_fast/``: no notebook reaches the internet;
* a fresh data folder (``IPYJOBS_HOME``) where that checkpoint is registered as the custom
  entry ``whisper/tiny.en-test``, and a fresh ``XDG_CACHE_HOME`` (no whisper cache reused);
* ``IPYJOBS_DEMO_MODEL`` and ``IPYJOBS_DEMO_DOWNLOAD``: the models the notebooks use
  (``tiny.en`` and ``tessdata_fast/deu`` on Binder, the test entry here).

The previous environment is restored and the mirror closed when the session ends.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest notebooks` from anywhere: the tests package is here
    sys.path.insert(0, str(ROOT))

DEBIAN_ENG = Path("/usr/share/tesseract-ocr/5/tessdata/eng.traineddata")
DEBIAN_OSD = Path("/usr/share/tesseract-ocr/5/tessdata/osd.traineddata")
TEST_MODEL = "tiny.en-test"

_ready = False


def _make_environment(config: pytest.Config) -> None:
    from ipyjobs.models import ModelEntry, ModelStore
    from tests.support.http_server import LoopbackServer
    from tests.support.whisper_model import converted_tiny_en, sha256_of

    checkpoint = converted_tiny_en()
    server = LoopbackServer().start()
    config.add_cleanup(server.close)
    url = server.add_file(f"/whisper/{TEST_MODEL}.pt", checkpoint)
    if DEBIAN_ENG.exists():
        server.add_file("/tessdata_fast/eng.traineddata", DEBIAN_ENG)
    if DEBIAN_OSD.exists():
        server.add_file("/tessdata_fast/osd.traineddata", DEBIAN_OSD)

    scratch = Path(tempfile.mkdtemp(prefix="ipyjobs-notebooks-"))
    config.add_cleanup(lambda: shutil.rmtree(scratch, ignore_errors=True))
    home = scratch / "home"
    ModelStore(home).register(
        ModelEntry(
            "whisper",
            TEST_MODEL,
            f"{TEST_MODEL}.pt",
            url,
            sha256_of(checkpoint),
            checkpoint.stat().st_size,
        )
    )
    environment = {
        "IPYJOBS_HOME": str(home),
        "IPYJOBS_MODEL_MIRROR": server.url,
        "IPYJOBS_DEMO_MODEL": TEST_MODEL,
        "IPYJOBS_DEMO_DOWNLOAD": TEST_MODEL,
        "XDG_CACHE_HOME": str(scratch / "xdg-cache"),
        "IPYJOBS_OFFLINE": None,
        "TESSDATA_PREFIX": None,
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # quiet kernels under --nbval-current-env
    }
    previous = {name: os.environ.get(name) for name in environment}
    config.add_cleanup(lambda: _apply(previous))
    _apply(environment)


def _apply(environment: dict[str, str | None]) -> None:
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the first notebook's kernel starts (this hook only sees items below here)."""
    global _ready
    if not _ready:
        _ready = True
        _make_environment(item.config)
