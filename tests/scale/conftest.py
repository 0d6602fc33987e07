"""A real Dask LocalCluster of 2 single-thread worker processes on 127.0.0.1, per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    client = start_client(tmp_path_factory.mktemp("worker-home"))
    yield client
    cluster = client.cluster
    client.close()
    cluster.close()
