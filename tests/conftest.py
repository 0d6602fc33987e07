"""Shared fixtures: an asyncio backend for anyio tests and a fresh data folder per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ipyjobs import JobManager

pytest_plugins = ["tests.support.model_fixtures", "tests.support.clusters"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the Jupyter kernel's loop


@pytest.fixture(autouse=True)
def ipyjobs_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data folder, so nothing touches the user's."""
    home = tmp_path / "ipyjobs-home"
    monkeypatch.setenv("IPYJOBS_HOME", str(home))
    return home


@pytest.fixture
async def manager(ipyjobs_home: Path) -> AsyncIterator[JobManager]:
    async with JobManager(ipyjobs_home, tick=0.02, store_interval=0.05) as jm:
        yield jm
