"""Jupyter views of jobs and models: the jobs panel (one anywidget model for the whole tree),
the model manager, launch forms, results and the app. No server extension, no build step
(JupyterLab, Notebook 7, Voila, VS Code, Colab); all updates come from one ticker on the
kernel's loop."""

from __future__ import annotations

from .app import app
from .forms import LaunchForm, OcrForm, TranscribeForm
from .jobs_panel import JobsPanel
from .model_manager import ModelManager
from .results import ResultsView

__all__ = [
    "JobsPanel",
    "LaunchForm",
    "ModelManager",
    "OcrForm",
    "ResultsView",
    "TranscribeForm",
    "app",
]
