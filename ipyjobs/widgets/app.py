"""The app for people who do not write code (Voila, Binder): forms, results, models and the
jobs panel on one page."""

from __future__ import annotations

import ipywidgets as widgets

from ..engine import JobManager, jobs
from .forms import OcrForm, TranscribeForm
from .jobs_panel import JobsPanel
from .model_manager import ModelManager
from .results import ResultsView


def app(manager: JobManager | None = None) -> widgets.VBox:
    """Launch forms, results and models in tabs, the jobs panel below (with "Resume N
    interrupted jobs" when an earlier kernel, or a reloaded page, left jobs unfinished)."""
    manager = manager if manager is not None else jobs()
    tabs = widgets.Tab(
        [TranscribeForm(manager), OcrForm(manager), ResultsView(manager), ModelManager(manager)],
        titles=("Transcribe", "OCR", "Results", "Models"),
    )
    page = widgets.VBox([tabs, JobsPanel(manager)])
    page.add_class("ipyjobs-app")
    return page
