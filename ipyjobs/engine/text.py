"""Plain-text views of jobs: one line per job, children indented under their parent.

Used by terminals, logs, and as the stable ``text/plain`` form of the widgets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .progress import ProgressSnapshot

if TYPE_CHECKING:
    from .handle import JobHandle

_UNITS = ("B", "kB", "MB", "GB", "TB")


def format_amount(value: float, unit: str) -> str:
    """``12.3 MB`` for bytes, ``12 items`` or ``2.5 items`` otherwise."""
    if unit != "bytes":
        return f"{value:,.0f} {unit}" if float(value).is_integer() else f"{value:,.1f} {unit}"
    for name in _UNITS:
        if abs(value) < 1000 or name == _UNITS[-1]:
            return f"{value:.1f} {name}" if name != "B" else f"{value:.0f} B"
        value /= 1000
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def format_progress(progress: ProgressSnapshot) -> str:
    """``40% 4/10 items, 2.1 items/s, ETA 0:03`` (parts that are unknown are left out)."""
    parts = []
    if progress.total:
        parts.append(
            f"{progress.fraction:.0%} {format_amount(progress.done, progress.unit)}"
            f" / {format_amount(progress.total, progress.unit)}"
        )
    elif progress.done:
        parts.append(format_amount(progress.done, progress.unit))
    if progress.rate:
        parts.append(f"{format_amount(progress.rate, progress.unit)}/s")
    if progress.eta is not None and progress.total and progress.done < progress.total:
        parts.append(f"ETA {format_duration(progress.eta)}")
    return ", ".join(parts)


def format_line(handle: JobHandle) -> str:
    line = f"{handle.title} [{handle.status}]"
    detail = format_progress(handle.progress)
    if detail:
        line += f" {detail}"
    current = handle.progress.item or handle.progress.message
    if current and not handle.done:
        line += f" - {current}"
    if handle.error_count:
        line += f" ({handle.error_count} item error{'s' if handle.error_count > 1 else ''})"
    if handle.error_text:
        line += f": {handle.error_text}"
    return line


def format_tree(roots: Iterable[JobHandle]) -> str:
    """Every job under ``roots``, children indented; a shared job shows under each waiter."""
    lines: list[str] = []

    def add(handle: JobHandle, depth: int) -> None:
        lines.append("  " * depth + ("└─ " if depth else "") + format_line(handle))
        for child in handle.children:
            add(child, depth + 1)

    for root in roots:
        add(root, 0)
    return "\n".join(lines) if lines else "(no jobs)"
