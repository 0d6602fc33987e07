"""What the jobs panel sends: the tree as rows, diffed against what was sent last.

The panel is one widget model whatever the number of jobs; its front end keeps every row and
draws only the visible ones. Each tick the feed rebuilds the rows of the jobs the engine's events
named (and their parents), and returns one message with the order (only when the tree changed)
and the rows that differ from what was sent. So a tick costs one
comm message, however many jobs run, and an idle tree costs none.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..engine import JobHandle, JobManager, JobRecord, JobState, events
from . import rowdata

log = logging.getLogger(__name__)

#: Seconds between full sweeps over every job (events cover the rest).
SWEEP_EVERY = 2.0
#: States the history can be filtered by ("" is all of them).
HISTORY_STATES = ("", "interrupted", "failed", "cancelled", "completed")


class Feed:
    """The rows of one manager's jobs and what was last sent of them.

    Which rows to rebuild comes from the engine's event bus (lifecycle, progress and log
    events name their job): a tick costs in proportion to what changed, not to the number of
    jobs. A full sweep every ``SWEEP_EVERY`` seconds also catches what has no event (a pause
    asked from code shows "pausing" until it takes effect, waiter counts).
    """

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self._order: list[list[Any]] = []
        self._rows: dict[str, list[Any]] = {}
        self._handles: dict[str, JobHandle] = {}
        self._dirty: set[str] = set()
        self._sweep_due = 0.0
        bus = getattr(manager, "bus", None)
        self._events = None if bus is None else bus.subscribe(max_logs=100_000)

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

    def touch(self, job_id: str) -> None:
        """Rebuild this job's row, its subtree's and its parents' at the next diff (a control
        acted on them)."""
        handle = self._handles.get(job_id)
        stack = [handle] if handle is not None else []
        while stack:
            current = stack.pop()
            self._dirty.add(current.id)
            stack.extend(current.children)
        self._dirty.add(job_id)

    def full(self) -> dict[str, Any]:
        """Everything, for a view that starts (or restarts) from nothing."""
        self._sweep_due = 0.0
        self.diff()
        return {"t": "full", "order": self._order, "rows": self._rows}

    def _take_events(self) -> bool:
        """Mark the jobs events named as dirty; True if a job was added."""
        added = False
        while self._events is not None and (event := self._events.get_nowait()) is not None:
            self._dirty.add(event.job_id)
            added = added or isinstance(event, events.Queued)
        return added

    def diff(self) -> dict[str, Any] | None:
        """The order if it changed and the rows that changed since the last call; ``None`` when
        nothing did."""
        now = time.monotonic()
        sweep = self._events is None or now >= self._sweep_due
        added = self._take_events()
        message: dict[str, Any] = {"t": "diff"}
        if sweep or added:
            tree = self.walk()
            self._handles = {handle.id: handle for handle, _ in tree}
            order = [[handle.id, depth] for handle, depth in tree]
            if order != self._order:
                self._order = message["order"] = order
                for gone in set(self._rows) - set(self._handles):
                    del self._rows[gone]
        if sweep:
            self._sweep_due = now + SWEEP_EVERY
            wanted = list(self._handles.values())
        else:
            wanted = []
            for job_id in self._dirty:  # and their parents, which may follow them
                handle = self._handles.get(job_id)
                while handle is not None:
                    wanted.append(handle)
                    handle = handle.parent
        self._dirty.clear()
        changed: dict[str, list[Any]] = {}
        for handle in wanted:
            new = rowdata.row(handle)
            if self._rows.get(handle.id) != new:
                changed[handle.id] = self._rows[handle.id] = new
        if changed:
            message["rows"] = changed
        return message if len(message) > 1 else None

    def close(self) -> None:
        if self._events is not None:
            self._events.close()

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
        live = {h.id: h.state.value for h in self.manager.handles}
        live = {job_id: s for job_id, s in live.items() if s != JobState.INTERRUPTED.value}
        # as many more as live jobs could take places in the answer
        extra = sum(1 for s in live.values() if not state or s == state)
        states = [JobState(state)] if state else None
        found = store.records(states=states, limit=limit + extra)
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
