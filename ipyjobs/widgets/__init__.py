"""ipywidgets views of jobs and models. Standard controls only (JupyterLab, Notebook 7, Voila,
VS Code); all updates come from one ticker on the kernel's loop."""

from __future__ import annotations

import ipywidgets as widgets

from ..engine import JobManager, jobs
from .forms import LaunchForm, OcrForm, TranscribeForm
from .jobs_panel import JobsPanel
from .model_manager import ModelManager

__all__ = ["JobsPanel", "LaunchForm", "ModelManager", "OcrForm", "TranscribeForm", "app"]


def app(manager: JobManager | None = None) -> widgets.VBox:
    """Everything on one page (the Voila app): launch forms and models in tabs, jobs below."""
    manager = manager if manager is not None else jobs()
    tabs = widgets.Tab(
        [TranscribeForm(manager), OcrForm(manager), ModelManager(manager)],
        titles=("Transcribe", "OCR", "Models"),
    )
    return widgets.VBox([tabs, JobsPanel(manager)])
