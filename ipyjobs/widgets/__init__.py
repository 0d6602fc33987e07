"""ipywidgets views of jobs and models. Standard controls only (JupyterLab, Notebook 7, Voila,
VS Code); all updates come from one ticker on the kernel's loop."""

from .jobs_panel import JobsPanel

__all__ = ["JobsPanel"]
