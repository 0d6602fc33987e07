"""Fixtures for real-browser tests: a loopback model mirror, a data folder with the test model
registered, JupyterLab and Voila servers started as subprocesses, and Debian's Chromium driven
through Playwright.

Nothing here reaches beyond 127.0.0.1. The servers get their own Jupyter runtime, config,
settings and workspace folders, so the user's JupyterLab set-up neither leaks in nor changes;
kernels inherit ``IPYJOBS_HOME``, ``IPYJOBS_MODEL_MIRROR`` and ``XDG_CACHE_HOME`` from them.
Whatever a test does, its servers and their kernels are stopped at the end, and a failing test
leaves a screenshot in ``tests/browser/artifacts/<test>.png``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ipyjobs.models import ModelEntry, ModelStore
from tests.support.http_server import LoopbackServer
from tests.support.model_fixtures import DEBIAN_ENG

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
#: README screenshots are rewritten only when asked (IPYJOBS_SCREENSHOTS=1), so that a test run
#: leaves the work tree clean; otherwise they go with the other artifacts.
DOCS_IMAGES = (
    REPO / "docs" / "images"
    if os.environ.get("IPYJOBS_SCREENSHOTS") == "1"
    else REPO / "tests" / "browser" / "artifacts"
)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
#: The test's own catalog entry (the converted tiny.en), served by the loopback mirror.
TEST_MODEL = "tiny.en-test"
TEST_MODEL_PATH = "/whisper/tiny.en-test.pt"
#: How long a server may take to answer after it was started.
SERVER_START_TIMEOUT = 60.0


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (Debian: apt-get install -y chromium chromium-driver)"
    if importlib.util.find_spec("playwright") is None:
        return (
            "the playwright package is missing (pip install playwright; never playwright install)"
        )
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures know whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


# -- helpers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """A web server started as a subprocess, with its log file and base URL."""

    name: str
    process: subprocess.Popen
    url: str
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def wait_until_ready(self, probe: str | None, timeout: float = SERVER_START_TIMEOUT) -> None:
        """Wait until ``GET url+probe`` answers 200 (or, with no probe, the port accepts)."""
        deadline = time.monotonic() + timeout
        port = int(self.url.rsplit(":", 1)[1])
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.process.returncode} while starting:\n"
                    f"{self.log_tail()}"
                )
            try:
                if probe is None:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        return
                elif httpx.get(self.url + probe, timeout=2).status_code == 200:
                    return
            except (OSError, httpx.HTTPError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (servers shut their kernels down on it), then SIGKILL whatever of this
        server's own process tree is still alive, by pid."""
        import psutil

        try:
            tree = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            tree = []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        _, alive = psutil.wait_procs(tree, timeout=5)
        for leftover in alive:
            with contextlib.suppress(psutil.Error):
                leftover.kill()


@contextlib.contextmanager
def run_server(
    name: str,
    argv: Sequence[str],
    env: dict[str, str],
    cwd: Path,
    log: Path,
    port: int,
    probe: str | None,
) -> Iterator[ServerProcess]:
    """Start a server, wait until it answers, and stop it (and its kernels) on the way out."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, not the server
        )
    server = ServerProcess(name, process, f"http://127.0.0.1:{port}", log)
    try:
        server.wait_until_ready(probe)
        yield server
    finally:
        server.stop()


def save_screenshot(
    page: Page, path: Path, element: Locator | None = None, margin: int = 8
) -> Path:
    """A screenshot of the page, or of one element with a margin around it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if element is None:
        page.screenshot(path=str(path))
        return path
    element.evaluate("node => node.scrollIntoView({block: 'center'})")
    box = element.bounding_box()
    assert box is not None, "the element to photograph is not visible"
    viewport = page.viewport_size or {"width": 1440, "height": 900}
    x, y = max(0.0, box["x"] - margin), max(0.0, box["y"] - margin)
    clip = {
        "x": x,
        "y": y,
        "width": min(viewport["width"] - x, box["width"] + 2 * margin),
        "height": min(viewport["height"] - y, box["height"] + 2 * margin),
    }
    page.screenshot(path=str(path), clip=clip)
    return path


def row(page: Page, text: str) -> Locator:
    """The widget row (an HBox with a progress bar) whose label contains ``text``."""
    return (
        page.locator(".widget-hbox")
        .filter(has=page.locator(".widget-html", has_text=text))
        .filter(has=page.locator(".widget-hprogress"))
    )


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_requirements() -> None:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def model_mirror(browser_requirements: None, whisper_checkpoint: Path) -> Iterator[LoopbackServer]:
    """The loopback mirror: the converted tiny.en (and Debian's eng.traineddata)."""
    with LoopbackServer() as server:
        server.add_file(TEST_MODEL_PATH, whisper_checkpoint)
        if DEBIAN_ENG.exists():
            server.add_file("/tessdata_fast/eng.traineddata", DEBIAN_ENG)
        yield server


@pytest.fixture(scope="session")
def browser_home(
    tmp_path_factory: pytest.TempPathFactory,
    model_mirror: LoopbackServer,
    whisper_checkpoint: Path,
    whisper_sha256: str,
) -> Path:
    """The servers' data folder, with the test model registered (custom.json persists it)."""
    home = tmp_path_factory.mktemp("browser-home")
    ModelStore(home).register(
        ModelEntry(
            "whisper",
            TEST_MODEL,
            "tiny.en-test.pt",
            model_mirror.url_for(TEST_MODEL_PATH),
            whisper_sha256,
            whisper_checkpoint.stat().st_size,
        )
    )
    return home


def jupyter_env(base: Path, home: Path) -> dict[str, str]:
    """Environment for Jupyter servers and so their kernels: private Jupyter folders under
    ``base``, ``home`` as the data folder, an empty whisper cache, no news toast."""
    folders = {
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTERLAB_SETTINGS_DIR": base / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": base / "lab-workspaces",
        "IPYTHONDIR": base / "ipython",
        "XDG_CACHE_HOME": base / "xdg-cache",
    }
    for folder in folders.values():
        folder.mkdir(parents=True)
    notification = folders["JUPYTERLAB_SETTINGS_DIR"] / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TESSDATA_PREFIX", "IPYJOBS_OFFLINE", "JUPYTER_PATH", "JUPYTER_TOKEN")
    }
    env.update({name: str(folder) for name, folder in folders.items()})
    env.update(
        IPYJOBS_HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="session")
def server_env(
    tmp_path_factory: pytest.TempPathFactory, browser_home: Path, model_mirror: LoopbackServer
) -> dict[str, str]:
    """The servers' environment, with the test data folder and the loopback mirror."""
    env = jupyter_env(tmp_path_factory.mktemp("jupyter"), browser_home)
    env["IPYJOBS_MODEL_MIRROR"] = model_mirror.url
    return env


@dataclass
class Lab:
    server: ServerProcess
    root: Path

    @property
    def url(self) -> str:
        return self.server.url

    def notebook_url(self, name: str) -> str:
        """A fresh workspace with only this notebook open."""
        return f"{self.url}/lab/workspaces/t{uuid.uuid4().hex[:12]}/tree/{name}?reset"


@contextlib.contextmanager
def lab_server(root: Path, env: dict[str, str]) -> Iterator[Lab]:
    """JupyterLab (and Notebook 7) on 127.0.0.1 without token, serving ``root``."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        "--ServerApp.allow_root=True",
        "--LabApp.expose_app_in_browser=True",
        "--JupyterNotebookApp.expose_app_in_browser=True",
        f"--ServerApp.root_dir={root}",
    ]
    log = root.parent / "jupyterlab.log"
    with run_server("JupyterLab", argv, env, root, log, port, "/api/status") as server:
        yield Lab(server, root)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]) -> Iterator[Lab]:
    with lab_server(tmp_path_factory.mktemp("lab-root"), server_env) as found:
        yield found


def launch_chromium(playwright: Any) -> Browser:
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )


@pytest.fixture(scope="module")
def browser(browser_requirements: None) -> Iterator[Browser]:
    """Per module, not per session: Playwright's sync API keeps an asyncio loop running in
    this thread until it stops, and the anyio tests collected after these would fail."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context and page; a screenshot goes to artifacts/ if the test fails."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}"))
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            with contextlib.suppress(Exception):
                shot = save_screenshot(page, ARTIFACTS / f"{name}.png")
                print(f"screenshot of the failure: {shot}")
            if errors:
                print("page errors:\n" + "\n".join(errors))
        context.close()


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
