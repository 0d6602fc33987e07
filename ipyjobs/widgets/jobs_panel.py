"""The jobs panel: a tree of rows, one per job, children indented under their parent.

State lives in the engine's handles; the panel's ``refresh`` (called by the ticker) compares
what each row should show with what it last sent and writes only the differences, within a
budget of comm messages per second shared by the whole panel. Rows whose job changed state go
first, then the rows that waited longest, so every row converges to its job's final values
however many jobs report at once.
"""

from __future__ import annotations

import time
from typing import Any

import ipywidgets as widgets

from ..engine import JobHandle, JobManager, jobs
from ..engine.text import format_tree
from .rows import JobRow
from .sync import TextRepr
from .ticker import ticker

#: Comm messages per second the whole panel may send, however many jobs run.
MESSAGES_PER_SECOND = 90


class JobsPanel(TextRepr, widgets.VBox):
    """All jobs of a manager, live. ``JobsPanel()`` uses the kernel's manager."""

    def __init__(self, manager: JobManager | None = None, **kwargs: Any) -> None:
        self.manager = manager if manager is not None else jobs()
        self._rows: dict[tuple[str, ...], JobRow] = {}
        self._budget = float(MESSAGES_PER_SECOND) / 4
        self._last_refresh = time.monotonic()
        self.messages_sent = 0
        self._clear = widgets.Button(description="Clear finished", icon="broom")
        self._clear.on_click(lambda _: self.clear_finished())
        self._empty = widgets.HTML("<i>No jobs yet.</i>")
        self._list = widgets.VBox([self._empty])
        header = widgets.HBox([widgets.HTML("<b>Jobs</b>"), self._clear])
        super().__init__([header, self._list], **kwargs)
        self.add_class("ipyjobs-panel")
        self.refresh()
        ticker().add(self)

    # -- the tree --------------------------------------------------------------------------

    def _walk(self) -> list[tuple[tuple[str, ...], JobHandle, int]]:
        """(path, handle, depth) of every row, depth first; a shared job under each waiter."""
        found: list[tuple[tuple[str, ...], JobHandle, int]] = []

        def visit(handle: JobHandle, path: tuple[str, ...], depth: int) -> None:
            found.append((path, handle, depth))
            for child in handle.children:
                if child.id not in path:
                    visit(child, (*path, child.id), depth + 1)

        for root in self.manager.roots():
            visit(root, (root.id,), 0)
        return found

    def refresh(self) -> None:
        """Bring the rows up to date within the message budget (called by the ticker)."""
        now = time.monotonic()
        self._budget = min(
            MESSAGES_PER_SECOND / 2,  # at most half a second of messages at once
            self._budget + (now - self._last_refresh) * MESSAGES_PER_SECOND,
        )
        self._last_refresh = now
        tree = self._walk()
        if self._sync_structure(tree):
            self._spend(1)
        rows = [self._rows[path] for path, _, _ in tree]
        # state changes first, then the rows that waited longest for a progress update
        rows.sort(key=lambda row: (not row.state_changed(), row.last_sent))
        for row in rows:
            if self._budget < 1:
                break
            self._spend(row.sync(now))

    def _spend(self, messages: int) -> None:
        self._budget -= messages
        self.messages_sent += messages

    def _sync_structure(self, tree: list[tuple[tuple[str, ...], JobHandle, int]]) -> bool:
        """Add rows for new jobs and remove (and close) rows of jobs gone; True if changed."""
        wanted = {path for path, _, _ in tree}
        gone = [path for path in self._rows if path not in wanted]
        for path in gone:
            self._rows.pop(path).close()
        added = False
        for path, handle, depth in tree:
            if path not in self._rows:
                self._rows[path] = JobRow(handle, depth)
                added = True
        if not gone and not added:
            return False
        boxes = [self._rows[path].box for path, _, _ in tree]
        self._list.children = boxes or [self._empty]
        return True

    @property
    def in_sync(self) -> bool:
        """Whether every row shows exactly what its job is now (the tree included)."""
        return {path for path, _, _ in self._walk()} == set(self._rows) and all(
            row.in_sync() for row in self._rows.values()
        )

    def clear_finished(self) -> int:
        """Forget ended jobs (the store keeps them) and remove their rows."""
        count = self.manager.forget_finished()
        self.refresh()
        return count

    # -- text ------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"JobsPanel:\n{format_tree(self.manager.roots())}"

    def close(self) -> None:
        ticker().discard(self)
        for row in self._rows.values():
            row.close()
        self._rows.clear()
        super().close()
