"""One row of the jobs panel: the widgets of a job and how they follow its handle."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..engine import JobError, JobHandle, JobState
from ..engine.text import format_progress
from .sync import SentState

log = logging.getLogger(__name__)

STATUS_COLOURS = {
    "queued": "#5f6368",
    "running": "#1a73e8",
    "pausing": "#b06000",
    "paused": "#b06000",
    "cancelling": "#c5221f",
    "completed": "#188038",
    "failed": "#c5221f",
    "cancelled": "#5f6368",
    "interrupted": "#9334e6",
}
BAR_STYLES = {"completed": "success", "failed": "danger", "paused": "warning"}
LOG_LINES = 10


def _button(description: str, icon: str, action: Callable[[], Any]) -> widgets.Button:
    # flex 0 0 auto: a long label wraps instead of squeezing the buttons to "Pa..."
    layout = widgets.Layout(width="auto", flex="0 0 auto")
    button = widgets.Button(description=description, icon=icon, layout=layout)

    def clicked(_: widgets.Button) -> None:
        try:
            action()
        except JobError as exc:  # the job moved on meanwhile (ended, say): nothing to do
            log.info("%s: %s", description, exc)

    button.on_click(clicked)
    return button


class JobRow:
    """Widgets for one job at one place in the tree (a shared job has a row under each
    waiter). ``sync`` writes what changed and returns how many comm messages that took."""

    def __init__(self, handle: JobHandle, depth: int) -> None:
        self.handle = handle
        self.depth = depth
        self.label = widgets.HTML()  # title, status, progress figures, current item
        bar_layout = widgets.Layout(width="180px", flex="0 0 auto")
        self.bar = widgets.FloatProgress(min=0, max=1, layout=bar_layout)
        self.pause = _button("Pause", "pause", handle.pause)
        self.resume = _button("Resume", "play", handle.resume)
        self.cancel = _button("Cancel", "stop", handle.cancel)
        self.details = widgets.HTML()
        self.line = widgets.HBox([self.label, self.bar, self.pause, self.resume, self.cancel])
        self.box = widgets.VBox([self.line, self.details])
        self.last_sent = 0.0
        self._sent_status: str | None = None
        self._sent = SentState()

    @property
    def widgets(self) -> list[widgets.Widget]:
        return [self.label, self.bar, self.pause, self.resume, self.cancel,
                self.details, self.line, self.box]  # fmt: skip

    def state_changed(self) -> bool:
        return self.handle.status != self._sent_status

    def _desired(self) -> list[tuple[Any, dict[str, Any]]]:  # (widget, traits)
        handle = self.handle
        status = handle.status
        progress = handle.progress
        indent = f"padding-left:{1.5 * self.depth}em" if self.depth else ""
        branch = "└─ " if self.depth else ""
        shared = f" · {handle.waiters} waiting" if not handle.owned and handle.waiters > 1 else ""
        label = (
            f'<span style="{indent}">{branch}<b>{html.escape(handle.title)}</b></span> '
            f'<span style="color:{STATUS_COLOURS[status]}">{status}</span>{shared}'
        )
        figures = format_progress(progress)
        if figures:
            label += f" {html.escape(figures)}"
        current = progress.item or progress.message
        if current and not handle.done:
            label += f" <i>{html.escape(current)}</i>"
        desired: list[tuple[widgets.Widget, dict[str, Any]]] = [
            (self.label, {"value": label}),
            (
                self.bar,
                {
                    "value": 1.0
                    if handle.state is JobState.COMPLETED
                    else progress.fraction or 0.0,
                    "bar_style": BAR_STYLES.get(status, ""),
                },
            ),
            (self.details, {"value": self._details()}),
        ]
        if handle.done:  # finished jobs collapse to their label; buttons go away
            desired.append((self.line, {"children": (self.label, self.bar)}))
        else:
            running_or_queued = handle.state in (JobState.RUNNING, JobState.QUEUED)
            paused = handle.state is JobState.PAUSED or status == "pausing"
            desired += [
                (self.pause, {"disabled": not (running_or_queued and handle.intent is None)}),
                (self.resume, {"disabled": not paused}),
                (self.cancel, {"disabled": status == "cancelling"}),
            ]
        return desired

    def _details(self) -> str:
        handle = self.handle
        parts = []
        if handle.error_text:
            parts.append(f'<div style="color:#c5221f">{html.escape(handle.error_text)}</div>')
        if handle.error_count:
            items = "".join(
                f"<li>{html.escape(e.item)}: {html.escape(e.error)}</li>"
                for e in handle.item_errors
            )
            more = handle.error_count - len(handle.item_errors)
            extra = f"<li>… and {more} more</li>" if more > 0 else ""
            plural = "s" if handle.error_count > 1 else ""
            parts.append(
                f"<details><summary>{handle.error_count} item error{plural}</summary>"
                f"<ul>{items}{extra}</ul></details>"
            )
        tail = handle.log_tail[-LOG_LINES:]
        if tail and not handle.done:
            lines = "<br>".join(html.escape(line) for line in tail)
            parts.append(f"<details><summary>log</summary><small>{lines}</small></details>")
        if not parts:
            return ""
        indent = 1.5 * self.depth + 1.5
        return f'<div style="padding-left:{indent}em">{"".join(parts)}</div>'

    def in_sync(self) -> bool:
        """Whether the widgets show exactly what the job is now."""
        return self._sent.matches(self._desired())

    def sync(self, now: float) -> int:
        """Write what changed; return how many comm messages that took."""
        messages = self._sent.apply(self._desired())
        self._sent_status = self.handle.status
        if messages:
            self.last_sent = now
        return messages

    def close(self) -> None:
        for widget in self.widgets:
            widget.close()
