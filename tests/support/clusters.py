"""Real Dask clusters on 127.0.0.1 (a pytest plugin of tests/conftest.py, for the scale and
widget tests): a LocalCluster of 2 single-thread worker processes per module, and one whose
scheduler is a process of its own (to be killed)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def start_client(home: Path, timeout: str = "30s", **env: str):  # -> distributed.Client
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        env={"IPYJOBS_HOME": str(home), **env},
    )
    return distributed.Client(cluster, timeout=timeout)


@dataclass
class Processes:
    """A scheduler and 2 single-thread workers, each a process of its own (a LocalCluster's
    scheduler runs in the test's process), and a client of them."""

    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    client: Any  # distributed.Client


def _spec(*args: str, **spec: Any) -> list[str]:
    return [sys.executable, "-m", "dask", "spec", *args, "--spec", json.dumps(spec)]


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """The workers inherit the test's environment (its ``IPYJOBS_HOME``). Every process is
    killed at the end, whatever the test did to the scheduler."""
    distributed = pytest.importorskip("distributed")
    file = tmp_path / "scheduler.json"
    options = {"host": "127.0.0.1", "port": 0, "dashboard": False, "scheduler_file": str(file)}
    started = [subprocess.Popen(_spec(cls="distributed.Scheduler", opts=options))]
    try:
        deadline = time.monotonic() + 60
        while not file.exists() or not file.read_text().strip().endswith("}"):
            assert started[0].poll() is None and time.monotonic() < deadline, "no scheduler"
            time.sleep(0.05)
        address = json.loads(file.read_text())["address"]
        worker = {"host": "127.0.0.1", "nthreads": 1}
        for _ in range(2):
            started.append(subprocess.Popen(_spec(address, cls="distributed.Worker", opts=worker)))
        client = distributed.Client(address, timeout="3s")
        try:
            client.wait_for_workers(2, timeout=60)
            yield Processes(started[0], started[1:], client)
        finally:
            for process in started[1:]:  # nothing runs on a worker once the client is closed
                process.kill()
            client.close()
    finally:
        for process in started:
            process.kill()
            process.wait()


def close(client) -> None:
    cluster = client.cluster
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    client = start_client(tmp_path_factory.mktemp("worker-home"))
    yield client
    close(client)
