"""The model manager: Whisper models and Tesseract languages, their status, and actions.

Rows are built for the models the filter selects (the catalog has hundreds of Tesseract
entries); statuses come from the store, live download progress from the download job's handle.
Download and verify run as jobs, so they also show in the jobs panel.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from ..engine import JobManager, jobs
from ..engine.text import format_amount
from ..models import ConvertModel, DownloadModel, ModelError, ModelInfo, ModelStore, VerifyModel
from ..models.catalog import WHISPER
from .sync import SentState, TextRepr
from .ticker import ticker

#: Rows shown at most for one filter.
MAX_ROWS = 40
#: Tesseract languages shown without a filter, besides those present on disk.
DEFAULT_LANGUAGES = ("eng", "osd")
STATUS_COLOURS = {"missing": "#5f6368", "partial": "#b06000", "downloading": "#1a73e8",
                  "ready": "#188038"}  # fmt: skip


def _size(value: int | None) -> str:
    return format_amount(value, "bytes") if value else "size unknown"


class ModelRow:
    """Widgets of one model; ``sync`` writes only what changed."""

    def __init__(self, panel: ModelManager, info: ModelInfo) -> None:
        self.entry = info.entry
        self.panel = panel
        self.label = widgets.HTML(layout=widgets.Layout(width="340px"))  # bars line up
        bar_layout = widgets.Layout(width="140px", flex="0 0 auto")
        self.bar = widgets.FloatProgress(min=0, max=1, layout=bar_layout)
        self.download = self._button("Download", "download", self._download)
        self.cancel = self._button("Cancel", "stop", self._cancel)
        self.verify = self._button("Verify", "check", self._verify)
        self.delete = self._button("Delete", "trash", self._ask_delete)
        self.confirm = self._button("Really delete", "trash", self._delete)
        self.confirm.button_style = "danger"
        self.keep = self._button("Keep", "times", self._keep)
        self.buttons = widgets.HBox([self.download, self.cancel, self.verify, self.delete])
        self.box = widgets.HBox([self.label, self.bar, self.buttons])
        self.info = info
        self._confirming = False
        self._sent = SentState()

    def _button(self, text: str, icon: str, action: Any) -> widgets.Button:
        layout = widgets.Layout(width="auto", flex="0 0 auto")  # never squeezed to "Do..."
        button = widgets.Button(description=text, icon=icon, layout=layout)
        button.on_click(lambda _: self.panel._act(action))
        return button

    def _download(self) -> None:
        make = ConvertModel if self.entry.converted_from else DownloadModel
        self.panel.manager.dispatch(make(self.entry.id, str(self.panel.manager.home)))

    def _cancel(self) -> None:
        if self.info.job is not None:
            self.info.job.cancel()

    def _verify(self) -> None:
        self.panel.manager.dispatch(VerifyModel(self.entry.id, str(self.panel.manager.home)))

    def _ask_delete(self) -> None:
        self._confirming = True

    def _keep(self) -> None:
        self._confirming = False

    def _delete(self) -> None:
        self._confirming = False
        freed = self.panel.store.delete(self.entry)
        self.panel.message = f"Deleted {self.entry.label}: {_size(freed)} freed."

    def _desired(self) -> list[tuple[widgets.Widget, dict[str, Any]]]:
        info = self.info
        status = info.status
        shown = status
        if status == "partial" and info.fraction is not None:
            shown = f"partial {info.fraction:.0%}"
        fraction = info.fraction or 0.0
        if info.job is not None:
            progress = info.job.progress
            fraction = progress.fraction or 0.0
            shown = f"{'converting' if self.entry.converted_from else 'downloading'} {fraction:.0%}"
            if progress.rate:
                shown += f", {format_amount(progress.rate, 'bytes')}/s"
        made = f" · converted from {self.entry.converted_from}" if self.entry.converted_from else ""
        label = (
            f"<b>{html.escape(self.entry.name)}</b> <small>{html.escape(self.entry.family)}"
            f"{html.escape(made)} · {_size(info.size)}</small> "
            f'<span style="color:{STATUS_COLOURS[status]}">{html.escape(shown)}</span>'
        )
        buttons: tuple[widgets.Button, ...]
        if self._confirming:
            buttons = (self.confirm, self.keep)
        elif status == "downloading":
            buttons = (self.cancel,)
        elif status == "ready":
            buttons = (self.verify, self.delete)
        elif status == "partial":
            buttons = (self.download, self.delete)
        else:
            buttons = (self.download,)
        return [
            (self.label, {"value": label}),
            (
                self.bar,
                {
                    "value": fraction if status != "ready" else 1.0,
                    "bar_style": "success" if status == "ready" else "",
                },
            ),
            (self.buttons, {"children": buttons}),
        ]

    def sync(self, info: ModelInfo) -> int:
        self.info = info
        return self._sent.apply(self._desired())

    def close(self) -> None:
        for widget in (self.label, self.bar, self.download, self.cancel, self.verify,
                       self.delete, self.confirm, self.keep, self.buttons, self.box):  # fmt: skip
            widget.close()


class ModelManager(TextRepr, widgets.VBox):
    """Models of the kernel's data folder: list, download, cancel, delete, verify, filter."""

    def __init__(
        self, manager: JobManager | None = None, store: ModelStore | None = None, **kwargs: Any
    ) -> None:
        self.manager = manager if manager is not None else jobs()
        self.store = store if store is not None else ModelStore.at(self.manager.home)
        self.filter = widgets.Text(
            placeholder="filter: tiny, large, deu, ready…", continuous_update=True
        )
        self.usage = widgets.HTML()
        self.feedback = widgets.HTML()
        self._list = widgets.VBox()
        self._rows: dict[str, ModelRow] = {}
        self.filter.observe(lambda _: self.refresh(), names="value")
        header = widgets.HBox([widgets.HTML("<b>Models</b>"), self.filter, self.usage])
        super().__init__([header, self._list, self.feedback], **kwargs)
        self.add_class("ipyjobs-models")
        self.refresh()
        ticker().add(self)

    @property
    def message(self) -> str:
        return self.feedback.value

    @message.setter
    def message(self, text: str) -> None:
        self.feedback.value = html.escape(text)

    def _act(self, action: Any) -> None:
        try:
            action()
        except ModelError as exc:
            self.message = str(exc)
        self.refresh()

    def _selected(self, infos: list[ModelInfo]) -> list[ModelInfo]:
        words = self.filter.value.lower().split()
        if not words:
            return [
                i for i in infos
                if i.entry.family == WHISPER or i.status != "missing"
                or (i.entry.family == "tessdata_fast" and i.entry.name in DEFAULT_LANGUAGES)
            ]  # fmt: skip

        def matches(info: ModelInfo) -> bool:
            text = f"{info.entry.id} {info.status} {' '.join(info.entry.aliases)}".lower()
            return all(word in text for word in words)

        return [i for i in infos if matches(i)][:MAX_ROWS]

    def refresh(self) -> None:
        """Statuses from the store, progress from download jobs (called by the ticker)."""
        selected = self._selected(self.store.list())
        wanted = [info.entry.id for info in selected]
        for entry_id in [e for e in self._rows if e not in wanted]:
            self._rows.pop(entry_id).close()
        for info in selected:
            row = self._rows.get(info.entry.id)
            if row is None:
                row = self._rows[info.entry.id] = ModelRow(self, info)
            row.sync(info)
        boxes = tuple(self._rows[e].box for e in wanted)
        if self._list.children != boxes:
            self._list.children = boxes
        usage = f"<small>{_size(self.store.disk_usage())} on disk in {self.store.folder}</small>"
        if self.usage.value != usage:
            self.usage.value = usage

    def row(self, name: str) -> ModelRow:
        """The row of a model (by any catalog name), for scripts and tests."""
        return self._rows[self.store.entry(name).id]

    def __repr__(self) -> str:
        lines = [f"{r.entry.id}: {r.info.status}" for r in self._rows.values()]
        return "ModelManager:\n" + "\n".join(lines)

    def close(self) -> None:
        ticker().discard(self)
        for row in self._rows.values():
            row.close()
        super().close()
