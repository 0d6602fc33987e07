"""Results in the page: each transcript or page text beside its file, and one zip per job to
download. For people on Voila or Binder, who cannot reach the server's folders.

Jobs are listed from this kernel and from the store (so a job resumed after a reload, or one
of an earlier session, is there too). The zip travels inside the page as a ``data:`` link: no
server route, so it works wherever widgets do.
"""

from __future__ import annotations

import base64
import html
import io
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..engine import JobManager, JobState
from .inputs import style
from .ticker import ticker

#: Kinds of job whose outputs are files.
KINDS = ("media.transcribe", "media.ocr")
#: Text shown per file at most (the zip has it all).
SHOW_CHARS = 20_000
#: Largest zip offered in the page.
MAX_ZIP_BYTES = 50_000_000
#: Seconds between looks for newly finished jobs.
LOOK_EVERY = 2.0
TEXT_SUFFIXES = (".txt", ".srt", ".vtt", ".tsv")


def outputs_of(output: Any) -> list[Path]:
    """The files a job wrote, from its output (``{"outputs": [...]}``), those that exist."""
    paths = output.get("outputs", []) if isinstance(output, dict) else []
    return [Path(p) for p in paths if Path(p).is_file()]


def by_file(outputs: list[Path]) -> dict[str, list[Path]]:
    """Outputs grouped by the input file they came from (same stem)."""
    groups: dict[str, list[Path]] = {}
    for path in outputs:
        groups.setdefault(str(path.with_suffix("")), []).append(path)
    return groups


def readable(paths: list[Path]) -> Path | None:
    """The output to show for one file: its .txt, else another text format."""
    for suffix in TEXT_SUFFIXES:
        for path in paths:
            if path.suffix == suffix:
                return path
    return None


def zip_bytes(outputs: list[Path]) -> bytes:
    """One zip of a job's outputs, named relative to their common folder."""
    root = Path(_common(outputs))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in outputs:
            archive.write(path, str(path.relative_to(root)))
    return buffer.getvalue()


def _common(paths: list[Path]) -> str:
    return os.path.commonpath([str(p.parent) for p in paths])


def render(title: str, job_id: str, outputs: list[Path]) -> str:
    """HTML: a download link for the zip, then each file's text beside its name."""
    if not outputs:
        return "<i>This job wrote no files (or they were moved).</i>"
    data = zip_bytes(outputs)
    name = f"results-{job_id}.zip"
    if len(data) > MAX_ZIP_BYTES:
        link = (
            f"<i>{len(data) / 1e6:.0f} MB of results: too big for the page; they are in "
            f"{html.escape(_common(outputs))}</i>"
        )
    else:
        encoded = base64.b64encode(data).decode()
        link = (
            f'<a class="ipyjobs-download" download="{name}" style="color:#1a73e8;'
            f'text-decoration:underline" '
            f'href="data:application/zip;base64,{encoded}">Download all results ({name}, '
            f"{len(data) / 1000:.0f} kB)</a>"
        )
    rows = []
    for stem, paths in sorted(by_file(outputs).items()):
        shown = readable(paths)
        text = ""
        if shown is not None:
            text = shown.read_text(errors="replace")
            if len(text) > SHOW_CHARS:
                text = text[:SHOW_CHARS] + "\n… (the zip has the rest)"
        files = html.escape(", ".join(p.name for p in paths))
        name = html.escape(Path(stem).name)
        rows.append(
            f'<tr><td style="vertical-align:top;padding-right:1em"><b>{name}</b><br>'
            f"<small>{files}</small></td>"
            f'<td><pre class="ipyjobs-result" style="white-space:pre-wrap;margin:0">'
            f"{html.escape(text)}</pre></td></tr>"
        )
    return f"<div>{link}</div><table>{''.join(rows)}</table>"


class ResultsView(widgets.VBox):
    """Pick a finished job; see its texts and download its zip."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self.job = widgets.Dropdown(description="Job", options=[], style=style(),
                                    layout=widgets.Layout(width="70%"))  # fmt: skip
        self.show = widgets.Button(description="Show", icon="eye", button_style="primary")
        self.show.on_click(lambda _: self.show_results())
        self.body = widgets.HTML()
        self._due = 0.0
        super().__init__([widgets.HBox([self.job, self.show]), self.body])
        self.add_class("ipyjobs-results")
        self.refresh()
        ticker().add(self)

    def finished(self) -> list[tuple[str, str]]:
        """``(label, job id)`` of completed jobs that wrote files, newest first."""
        found: dict[str, tuple[str, float]] = {}
        store = getattr(self.manager, "store", None)
        if store is not None:
            for record in store.records(states=[JobState.COMPLETED], limit=200):
                if record.kind in KINDS:
                    found[record.id] = (record.title, record.updated_at)
        for handle in self.manager.handles:
            if handle.kind in KINDS and handle.state is JobState.COMPLETED:
                found[handle.id] = (handle.title, time.time())
        ordered = sorted(found.items(), key=lambda item: -item[1][1])
        return [(f"{title} ({job_id})", job_id) for job_id, (title, _) in ordered]

    def refresh(self) -> None:
        """Look for newly finished jobs now and then (called by the ticker)."""
        now = time.monotonic()
        if now < self._due or self.comm is None:
            return
        self._due = now + LOOK_EVERY
        options = self.finished()
        if options != list(self.job.options):
            current = self.job.value
            self.job.options = options
            ids = [job_id for _, job_id in options]
            self.job.value = current if current in ids else (ids[0] if ids else None)

    def show_results(self, job_id: str | None = None) -> None:
        """Show the results of ``job_id`` (default: the one picked)."""
        job_id = job_id or self.job.value
        if not job_id:
            self.body.value = "<i>No finished job yet.</i>"
            return
        handle = next((h for h in self.manager.handles if h.id == job_id), None)
        output = handle.output if handle is not None else self.manager.record(job_id).output
        title = handle.title if handle is not None else self.manager.record(job_id).title
        self.body.value = render(title, job_id, outputs_of(output))

    def close(self) -> None:
        ticker().discard(self)
        super().close()
