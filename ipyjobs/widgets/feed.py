"""What the jobs panel sends: the tree as rows, diffed against what was sent last.

The panel is one widget model whatever the number of jobs; its front end keeps every row and
draws only the visible ones. Each tick the feed walks the live tree, rebuilds the rows of jobs
whose state, progress, errors or waiters changed (a cheap fingerprint decides), and returns one
message with the order (only when the tree changed) and the changed rows. So a tick costs one
comm message, however many jobs run, and an idle tree costs none.
"""

from __future__ import annotations

import logging
from typing import Any

from ..engine import JobHandle, JobManager, JobRecord, JobState
from . import rowdata

log = logging.getLogger(__name__)

#: States the history can be filtered by ("" is all of them).
HISTORY_STATES = ("", "interrupted", "failed", "cancelled", "completed")


def _fingerprint(handle: JobHandle) -> tuple:
    # the snapshot is a new object at each sample; holding it keeps the comparison honest
    return (
        handle.status,
        handle.progress,
        handle.error_count,
        handle.waiters,
        len(handle.children),
    )


class Feed:
    """The rows of one manager's jobs and what was last sent of them."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self._order: list[list[Any]] = []
        self._rows: dict[str, list[Any]] = {}
        self._seen: dict[str, tuple] = {}

    def walk(self) -> list[tuple[JobHandle, int]]:
        """``(handle, depth)`` depth first; a shared job appears once, under its first waiter."""
        found: list[tuple[JobHandle, int]] = []
        placed: set[str] = set()
        stack = [(root, 0) for root in reversed(self.manager.roots())]
        while stack:
            handle, depth = stack.pop()
            if handle.id in placed:
                continue
            placed.add(handle.id)
            found.append((handle, depth))
            stack.extend((child, depth + 1) for child in reversed(handle.children))
        return found

    def full(self) -> dict[str, Any]:
        """Everything, for a view that starts (or restarts) from nothing."""
        self.diff()
        return {"t": "full", "order": self._order, "rows": self._rows}

    def diff(self) -> dict[str, Any] | None:
        """The order if it changed and the rows that changed since the last call; ``None`` when
        nothing did."""
        tree = self.walk()
        order = [[handle.id, depth] for handle, depth in tree]
        changed: dict[str, list[Any]] = {}
        seen: dict[str, tuple] = {}
        for handle, _ in tree:
            mark = _fingerprint(handle)
            seen[handle.id] = mark
            # a parent without a total follows its children: rebuild it every time
            follows_children = bool(handle.children) and not handle.progress.total
            if self._seen.get(handle.id) == mark and not follows_children:
                continue
            new = rowdata.row(handle)
            if self._rows.get(handle.id) != new:
                changed[handle.id] = self._rows[handle.id] = new
        self._seen = seen
        message: dict[str, Any] = {"t": "diff"}
        if order != self._order:
            self._order = order
            message["order"] = order
            for gone in set(self._rows) - set(seen):
                del self._rows[gone]
        if changed:
            message["rows"] = changed
        return message if len(message) > 1 else None

    def in_sync(self) -> bool:
        """Whether what was sent is exactly what the jobs are now."""
        tree = self.walk()
        return [[h.id, d] for h, d in tree] == self._order and all(
            self._rows.get(h.id) == rowdata.row(h) for h, _ in tree
        )

    def counts(self) -> dict[str, int]:
        """How many jobs are in each status (for the header)."""
        counts: dict[str, int] = {}
        for row in self._rows.values():
            counts[row[1]] = counts.get(row[1], 0) + 1
        return counts

    # -- the store ---------------------------------------------------------------------------

    def records(self, state: str = "", limit: int = 50) -> list[JobRecord]:
        """The data folder's newest jobs that this kernel no longer (or never) held."""
        store = getattr(self.manager, "store", None)
        if store is None:
            return []
        live = {h.id for h in self.manager.handles if h.state is not JobState.INTERRUPTED}
        states = [JobState(state)] if state else None
        found = store.records(states=states, limit=limit + len(live))
        return [r for r in found if r.id not in live][:limit]

    def history(self, state: str, limit: int) -> dict[str, Any]:
        rows = [[r.id, rowdata.record_row(r)] for r in self.records(state, limit)]
        return {"t": "history", "rows": rows}

    def interrupted(self) -> list[str]:
        """Ids of interrupted top-level jobs that can resume (their children come with them).

        Jobs of a kernel that ended after this one started (a reloaded Voila page shuts the
        old kernel down while the new one starts) are marked interrupted here first."""
        store = getattr(self.manager, "store", None)
        if store is not None:
            store.mark_orphans_interrupted()
        records = self.records("interrupted", 1000)
        return [r.id for r in records if r.parent_id is None and rowdata.resumable(r.kind)]

    def details(self, job_id: str) -> dict[str, Any] | None:
        """What the job ``job_id`` opens to, live or from the store; ``None`` if unknown."""
        handle = next((h for h in self.manager.handles if h.id == job_id), None)
        store = getattr(self.manager, "store", None)
        record = store.get(job_id) if store is not None and handle is None else None
        if handle is None and record is None:
            return None
        history = store.history(job_id) if store is not None else []
        return rowdata.details(handle, record, history)
