"""The jobs panel: ONE widget model for the whole job tree, whose front end draws the rows.

Per-row widget trees cost ~22 comm messages to create per job (500 jobs flooded the page for
15 s and lost models). Here the kernel sends rows as plain data: a full snapshot when a view
starts, then one compact diff per tick (see ``feed.py``); the front end (``panel.js``, an
``anywidget`` ES module, no build step) keeps all rows and renders only those in view, in a
CSS grid whose bar column has a fixed width, so bars line up and never move. Clicks come back as
custom messages and run on the kernel's loop.

There is one panel per manager: ``JobsPanel()`` shown again returns the open one (one refresh
stream however many times it is displayed), and a panel whose views are all gone is closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..engine import JobError, JobManager, jobs
from ..engine.text import format_tree
from .feed import HISTORY_STATES, Feed
from .sync import TextRepr
from .ticker import ticker

log = logging.getLogger(__name__)

_ASSETS = Path(__file__).resolve().parent
#: Seconds a panel may have no view before it is closed (a re-run cell shows it again sooner).
CLOSE_AFTER = 5.0
#: Seconds between looks into the store (interrupted jobs, history); details refresh as often.
STORE_EVERY = 2.0
#: Seconds between refreshes of a shown history (the store may hold thousands of jobs).
HISTORY_EVERY = 10.0
#: Lines of the text/plain form; the rest is counted.
REPR_LINES = 40

_open: weakref.WeakKeyDictionary[JobManager, JobsPanel] = weakref.WeakKeyDictionary()


class JobsPanel(TextRepr, anywidget.AnyWidget):
    """All jobs of a manager, live, plus its data folder's history. ``JobsPanel()`` uses the
    kernel's manager; calling it again while a panel is open returns that panel."""

    _esm = (_ASSETS / "panel.js").read_text()
    _css = (_ASSETS / "panel.css").read_text()

    summary = traitlets.Unicode("").tag(sync=True)
    notice = traitlets.Unicode("").tag(sync=True)
    trouble = traitlets.Unicode("").tag(sync=True)
    """The job store's current trouble (its reason and fix), "" while all is written."""
    where = traitlets.Unicode("").tag(sync=True)
    """Where jobs run their work now (this kernel's threads, a Dask cluster)."""
    dashboard = traitlets.Unicode("").tag(sync=True)
    """The Dask dashboard's address when a cluster is in use, else ""."""
    interrupted = traitlets.Int(0).tag(sync=True)
    """How many interrupted top-level jobs of the data folder can be resumed."""
    show_history = traitlets.Bool(False).tag(sync=True)
    history_state = traitlets.Enum(HISTORY_STATES, "").tag(sync=True)
    history_limit = traitlets.Int(50, min=1, max=1000).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    """The job whose details are open ("" for none)."""
    _view_count = traitlets.Int(0, allow_none=True).tag(sync=True)  # counted by the front end

    def __new__(cls, manager: JobManager | None = None, **kwargs: Any) -> JobsPanel:
        manager = manager if manager is not None else jobs()
        existing = _open.get(manager)
        if existing is not None and existing.comm is not None:
            return existing
        return super().__new__(cls)

    def __init__(self, manager: JobManager | None = None, **kwargs: Any) -> None:
        if getattr(self, "_feed", None) is not None:
            return  # the open panel, displayed once more
        self.manager = manager if manager is not None else jobs()
        self._feed = Feed(self.manager)
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self.messages_sent = 0
        self._full_wanted = False
        self._store_due = 0.0
        self._details_due = 0.0
        self._history_due = 0.0
        self._details_sent: dict | None = None
        self._history_sent: dict | None = None
        self._shown = False
        self._unseen_since: float | None = None
        super().__init__(**kwargs)
        self.add_class("ipyjobs-panel")
        self.on_msg(self._on_message)
        _open[self.manager] = self
        self.refresh()
        ticker().add(self)

    # -- the tick ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Send what changed (called by the ticker a few times a second, on the loop)."""
        if self.comm is None:
            return
        now = time.monotonic()
        if self._unseen_since is not None and now - self._unseen_since > CLOSE_AFTER:
            log.debug("closing a jobs panel that is no longer displayed")
            self.close()
            return
        message = self._feed.full() if self._full_wanted else self._feed.diff()
        self._full_wanted = False
        look = now >= self._store_due
        with self.hold_sync():
            self.summary = self._summary()
            if look:
                self._store_due = now + STORE_EVERY
                self.interrupted = len(self._feed.interrupted())
                self.trouble = self.manager.store_problem or ""
                self.where = self.manager.executor.where
                self.dashboard = self.manager.dashboard_link or ""
        if message is not None:
            self._post(message)
        self._send_details(now, message)
        if self.show_history and (now >= self._history_due or self._history_sent is None):
            self._history_due = now + HISTORY_EVERY
            history = self._feed.history(self.history_state, self.history_limit)
            if history != self._history_sent:
                self._history_sent = history
                self._post(history)

    def _post(self, message: dict) -> None:
        self.send(message)
        self.messages_sent += 1

    def _send_details(self, now: float, message: dict | None) -> None:
        if not self.selected:
            return
        changed = message is not None and self.selected in message.get("rows", {})
        if not changed and now < self._details_due and self._details_sent is not None:
            return
        self._details_due = now + STORE_EVERY
        found = self._feed.details(self.selected)
        if found != self._details_sent:
            self._details_sent = found
            self._post({"t": "details", "d": found})

    def _summary(self) -> str:
        counts = self._feed.counts()
        total = sum(counts.values())
        if not total:
            return ""
        parts = [f"{n} {status}" for status, n in sorted(counts.items())]
        return f"{total} job{'s' if total != 1 else ''}: " + ", ".join(parts)

    @property
    def in_sync(self) -> bool:
        """Whether the front end has been sent exactly what the jobs are now."""
        return self._feed.in_sync()

    # -- what the front end asks ---------------------------------------------------------------

    def _on_message(self, _: Any, content: dict, buffers: Any = None) -> None:
        """Runs where the kernel handles comm messages; the work is done on the panel's loop."""
        if self._loop is not None and self._loop.is_running() and not _on_loop(self._loop):
            self._loop.call_soon_threadsafe(self.handle, content)
        else:
            self.handle(content)

    def handle(self, content: dict) -> None:
        """Act on a front-end message: ``{"t": "hello"|"pause"|"resume"|"cancel"|"open"|
        "resume_all"|"clear", "id": job id}``, then send the consequences at once."""
        kind, job_id = content.get("t"), content.get("id")
        try:
            if kind == "hello":
                self._full_wanted = True
                self._details_sent = self._history_sent = None
            elif kind in ("pause", "resume", "cancel") and isinstance(job_id, str):
                self._feed.touch(job_id)
                getattr(self.manager, kind)(job_id)
            elif kind == "open":
                self.selected = job_id if isinstance(job_id, str) else ""
            elif kind == "resume_all":
                self.resume_interrupted()
            elif kind == "clear":
                self.clear_finished()
            else:
                log.warning("jobs panel: unknown message %r", content)
        except JobError as exc:  # the job moved on meanwhile (ended, say): say so
            self.notice = str(exc)
            log.info("jobs panel: %s", exc)
        self.refresh()

    def resume_interrupted(self) -> int:
        """Resume every interrupted resumable top-level job of the data folder."""
        resumed = 0
        for job_id in self._feed.interrupted():
            try:
                self.manager.resume(job_id)
                resumed += 1
            except JobError as exc:
                log.warning("could not resume job %s: %s", job_id, exc)
        self.notice = f"Resumed {resumed} interrupted job{'s' if resumed != 1 else ''}."
        self._store_due = 0.0
        return resumed

    def clear_finished(self) -> int:
        """Forget ended jobs (the store keeps them: see the history) and remove their rows."""
        count = self.manager.forget_finished()
        self.refresh()
        return count

    @traitlets.observe("selected", "show_history", "history_state", "history_limit")
    def _wanted_changed(self, change: dict) -> None:
        self._details_sent = self._history_sent = None

    @traitlets.observe("_view_count")
    def _views_changed(self, change: dict) -> None:
        count = change["new"] or 0
        if count > 0:
            self._shown, self._unseen_since = True, None
        elif self._shown:
            self._unseen_since = time.monotonic()

    # -- text and end --------------------------------------------------------------------------

    def __repr__(self) -> str:
        lines = format_tree(self.manager.roots()).splitlines()
        if len(lines) > REPR_LINES:
            lines = [*lines[:REPR_LINES], f"… and {len(lines) - REPR_LINES} more"]
        return "JobsPanel:\n" + "\n".join(lines)

    def close(self) -> None:
        ticker().discard(self)
        self._feed.close()
        if _open.get(self.manager) is self:
            del _open[self.manager]
        super().close()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
