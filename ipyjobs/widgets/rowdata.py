"""What the jobs panel shows of a job, as plain data: one compact row per job, and the details
a job opens to. No widgets here, so it is cheap to test and the front end only lays it out.

A row is a list (short on the wire, thousands per message):
``[title, status, fraction, figures, speed, item, waiters, flags, errors]`` where ``fraction``
is ``None`` when unknown, ``speed`` (rate and ETA) is empty unless the job is running, and
``waiters`` is more than 0 only for a shared job that several jobs or callers wait for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ..engine import JobHandle, JobRecord, JobState, UnknownJobKind, job_class
from ..engine.text import format_amount, format_duration

CAN_PAUSE = 1
CAN_RESUME = 2  # paused or pausing: resume in this session
CAN_CANCEL = 4
CAN_RESTART = 8  # interrupted and resumable: resume from its last checkpoint
#: How many log lines and item errors the details show.
DETAIL_LINES = 30


def amounts(handle: JobHandle) -> tuple[float, float]:
    """``(done, total)`` of a job: its own progress if it has a total, else the sums over its
    children (so each child weighs as much as its total). ``total`` is 0 when unknown."""
    progress = handle.progress
    if progress.total:
        return min(progress.done, progress.total), progress.total
    done = total = 0.0
    for child in handle.children:
        child_done, child_total = amounts(child)
        done, total = done + child_done, total + child_total
    return done, total


def _rate(handle: JobHandle) -> float:
    """Units per second of a job, or of its running children together (in their units)."""
    progress = handle.progress
    if progress.total:
        return (progress.rate or 0.0) if handle.state is JobState.RUNNING else 0.0
    return sum(_rate(child) for child in handle.children)


def combined_progress(handle: JobHandle) -> tuple[float | None, float | None]:
    """``(fraction, eta_seconds)``: the job's own, or for a parent that reports no total, its
    children's combined (weighted by their totals), with an ETA from their combined rate.
    The ETA is ``None`` unless the job is running."""
    if handle.state is JobState.COMPLETED:
        return 1.0, None
    progress = handle.progress
    running = handle.state is JobState.RUNNING and handle.intent is None
    if progress.total:
        return progress.fraction, progress.eta if running else None
    done, total = amounts(handle)
    if not total:
        return None, None
    rate = _rate(handle) if running else 0.0
    eta = (total - done) / rate if rate > 0 else None
    return min(1.0, done / total), eta


def figures(done: float, total: float | None, unit: str) -> str:
    """``40% 4 / 10 items``, or ``4 items`` without a total."""
    if total:
        fraction = min(1.0, done / total)
        return f"{fraction:.0%} {format_amount(done, unit)} / {format_amount(total, unit)}"
    return format_amount(done, unit) if done else ""


def speed(rate: float | None, eta: float | None, unit: str) -> str:
    """``2.1 items/s · ETA 0:03``; the caller passes ``None`` for a job that is not running."""
    parts = []
    if rate:
        parts.append(f"{format_amount(rate, unit)}/s")
    if eta is not None:
        parts.append(f"ETA {format_duration(eta)}")
    return " · ".join(parts)


def flags(handle: JobHandle) -> int:
    status = handle.status
    if handle.state is JobState.INTERRUPTED:
        return CAN_CANCEL | (CAN_RESTART if resumable(handle.kind) else 0)
    if handle.done:
        return 0
    value = 0 if status == "cancelling" else CAN_CANCEL
    if status in ("paused", "pausing"):
        value |= CAN_RESUME
    elif status in ("running", "queued"):
        value |= CAN_PAUSE
    return value


def resumable(kind: str) -> bool:
    try:
        return job_class(kind).resumable
    except UnknownJobKind:  # a kind whose module is not imported in this kernel
        return False


def row(handle: JobHandle) -> list[Any]:
    """The row of a live job."""
    progress = handle.progress
    fraction, eta = combined_progress(handle)
    running = handle.state is JobState.RUNNING and handle.intent is None
    if progress.total or progress.done or not handle.children:
        shown = figures(progress.done, progress.total, progress.unit)
        rate = progress.rate if running and progress.total else None
    else:  # a parent without progress of its own: its children's
        shown = f"{fraction:.0%} of its children" if fraction is not None else ""
        rate = None
    current = "" if handle.done else (progress.item or progress.message or "")
    shared = handle.waiters if not handle.owned and handle.waiters > 1 else 0
    return [
        handle.title,
        handle.status,
        None if fraction is None else round(fraction, 4),
        shown,
        speed(rate, eta, progress.unit) if running else "",
        current,
        shared,
        flags(handle),
        handle.error_count,
    ]


def record_row(record: JobRecord) -> list[Any]:
    """The row of a job only the store knows (an earlier session's, or one forgotten)."""
    progress = record.progress or {}
    total, done = progress.get("total"), progress.get("done") or 0
    fraction = (
        1.0 if record.state is JobState.COMPLETED else (min(1.0, done / total) if total else None)
    )
    restart = record.state is JobState.INTERRUPTED and resumable(record.kind)
    return [
        record.title,
        record.state.value,
        None if fraction is None else round(fraction, 4),
        figures(done, total, progress.get("unit") or "items"),
        "",
        "",
        0,
        CAN_RESTART if restart else 0,
        record.error_count,
    ]


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def summarise_output(output: Any, limit: int = 8) -> list[str]:
    """A few readable lines about a job's output: scalars as they are, lists counted."""
    if output is None:
        return []
    if isinstance(output, dict):
        lines = []
        for key, value in output.items():
            if isinstance(value, list | tuple):
                shown = ", ".join(str(v) for v in value[:limit])
                more = f" … and {len(value) - limit} more" if len(value) > limit else ""
                lines.append(f"{key}: {len(value)} — {shown}{more}" if value else f"{key}: none")
            else:
                lines.append(f"{key}: {value}")
        return lines
    text = output if isinstance(output, str) else json.dumps(output, default=str)
    return [text if len(text) <= 500 else text[:500] + " …"]


def timings(history: Iterable[tuple[float, JobState, str | None]], elapsed: float) -> list[str]:
    """``when: state (why)`` for each state the job entered, then its active time."""
    lines = [
        f"{_when(at)}: {state.value}" + (f" ({detail})" if detail else "")
        for at, state, detail in history
    ]
    lines.append(f"active {format_duration(elapsed)}")
    return lines


def details(
    handle: JobHandle | None,
    record: JobRecord | None,
    history: Iterable[tuple[float, JobState, str | None]],
) -> dict[str, Any]:
    """Everything a job opens to: log tail, item errors (which, why), output summary, timings
    and warnings. From the live handle when there is one, else from the stored record."""
    if handle is not None:
        errors = [[e.item, e.error] for e in handle.item_errors[:DETAIL_LINES]]
        elapsed = handle.progress.elapsed
        if not handle.done:
            tracker = getattr(handle, "tracker", None)
            if tracker is not None:
                elapsed = tracker.elapsed(time.monotonic())
        return {
            "id": handle.id,
            "title": handle.title,
            "kind": handle.kind,
            "status": handle.status,
            "error": handle.error_text or "",
            "log": handle.log_tail[-DETAIL_LINES:],
            "item_errors": errors,
            "error_count": handle.error_count,
            "output": summarise_output(handle.output),
            "timings": timings(history, elapsed) + _where(handle),
            "warnings": list(getattr(handle, "warnings", []))[-DETAIL_LINES:],
        }
    assert record is not None
    return {
        "id": record.id,
        "title": record.title,
        "kind": record.kind,
        "status": record.state.value,
        "error": record.error or "",
        "log": [],
        "item_errors": [[e.get("item"), e.get("error")] for e in record.item_errors][:DETAIL_LINES],
        "error_count": record.error_count,
        "output": summarise_output(record.output),
        "timings": timings(history, (record.progress or {}).get("elapsed") or 0.0),
        "warnings": [],
    }


def _where(handle: JobHandle) -> list[str]:
    """Where the job's work ran (this kernel's threads, a Dask cluster), once it ran some."""
    where = getattr(handle, "where", None)
    return [f"work ran on {where}"] if where else []
