"""The public names of ``ipyjobs`` and ``ipyjobs.engine``: changing them is a decision."""

from __future__ import annotations

import ipyjobs
import ipyjobs.engine

ENGINE = {
    "Cancelled",
    "Intent",
    "InterruptToken",
    "InvalidTransition",
    "ItemError",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobHandle",
    "JobInterrupted",
    "JobManager",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "ManagerClosed",
    "NotResumable",
    "ProgressSnapshot",
    "UnknownJobKind",
    "current_token",
    "data_home",
    "events",
    "job_class",
    "jobs",
    "registered_kinds",
}


def public(module: object) -> set[str]:
    return {name for name in vars(module) if not name.startswith("_")}


def test_engine_exports() -> None:
    assert set(ipyjobs.engine.__all__) == ENGINE
    for name in ENGINE:
        assert getattr(ipyjobs.engine, name) is not None


def test_package_exports_the_engine_and_nothing_else() -> None:
    assert set(ipyjobs.__all__) == ENGINE
    for name in ENGINE:
        assert getattr(ipyjobs, name) is getattr(ipyjobs.engine, name)
    # What a star import does not give, but the package still holds: its subpackages.
    subpackages = {"engine", "media", "models", "widgets", "demo"}
    assert public(ipyjobs) - ENGINE <= subpackages


def test_handle_and_manager_contracts() -> None:
    """Names other parts of ipyjobs (widgets, Dask executor) build on."""
    for name in ("warnings", "state", "intent", "status", "progress", "item_errors", "log_tail"):
        assert isinstance(getattr(ipyjobs.JobHandle, name), property), name
    for name in ("store_problem", "bus"):
        assert isinstance(getattr(ipyjobs.JobManager, name), property), name
    for name in ("dispatch", "pause", "resume", "cancel", "forget_finished", "record", "history"):
        assert callable(getattr(ipyjobs.JobManager, name)), name
    assert not issubclass(ipyjobs.Cancelled, Exception)
    assert issubclass(ipyjobs.JobCancelled, ipyjobs.JobError)
