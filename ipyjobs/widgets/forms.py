"""Launch forms for transcription and OCR: the entry point for people who do not write code
(Voila, Binder). A form builds a job from its fields and dispatches it; the jobs panel shows it.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from ..engine import Job, JobHandle, JobManager, jobs
from ..media.ocr import OcrJob
from ..media.speech import BACKENDS, TranscribeJob
from ..media.speech import FORMATS as SPEECH_FORMATS
from ..media.tesseract import FORMATS as OCR_FORMATS
from ..models import ModelError, ModelStore
from ..models.catalog import WHISPER

LANGUAGES = [
    ("detect", None), ("English", "en"), ("German", "de"), ("French", "fr"),
    ("Spanish", "es"), ("Italian", "it"), ("Portuguese", "pt"), ("Dutch", "nl"),
]  # fmt: skip


def _wide() -> widgets.Layout:
    return widgets.Layout(width="60%")


class LaunchForm(widgets.VBox):
    """Fields, a Start button, and the last job started. Subclasses say how to build the job."""

    title = ""

    def __init__(self, fields: list[widgets.Widget], manager: JobManager | None) -> None:
        self.manager = manager if manager is not None else jobs()
        self.start = widgets.Button(description="Start", icon="play", button_style="primary")
        self.start.on_click(lambda _: self.submit())
        self.feedback = widgets.HTML()
        self.last_job: JobHandle | None = None
        super().__init__([widgets.HTML(f"<b>{self.title}</b>"), *fields, self.start, self.feedback])

    def build(self) -> Job:
        raise NotImplementedError

    def submit(self) -> JobHandle | None:
        """Dispatch the job the fields describe; a bad field shows its error, nothing starts."""
        try:
            job = self.build()
        except (ValueError, TypeError, ModelError) as exc:
            self.feedback.value = f'<span style="color:#c5221f">{html.escape(str(exc))}</span>'
            return None
        self.last_job = self.manager.dispatch(job)
        self.feedback.value = f"Started {html.escape(self.last_job.title)} ({self.last_job.id})."
        return self.last_job


class TranscribeForm(LaunchForm):
    title = "Transcribe audio or video"

    def __init__(self, manager: JobManager | None = None, **kwargs: Any) -> None:
        manager = manager if manager is not None else jobs()
        store = ModelStore.at(manager.home)
        models = sorted({e.name for e in store.catalog if e.family == WHISPER})
        self.path = widgets.Text(description="Path", placeholder="a file or folder",
                                 layout=_wide())  # fmt: skip
        self.model = widgets.Dropdown(description="Model", options=models,
                                      value="base" if "base" in models else models[0])  # fmt: skip
        self.language = widgets.Dropdown(description="Language", options=LANGUAGES, value=None)
        self.task = widgets.ToggleButtons(description="Task", options=["transcribe", "translate"])
        self.backend = widgets.Dropdown(description="Engine", options=BACKENDS, value="auto")
        self.vad = widgets.Checkbox(description="Skip silence (VAD, faster-whisper)")
        # 0: one 30-second window after the other; more: faster-whisper's batched pipeline
        self.batch_size = widgets.BoundedIntText(description="Batch size", value=0, max=64)
        self.formats = widgets.SelectMultiple(description="Outputs", options=SPEECH_FORMATS,
                                              value=("txt", "srt", "vtt"))  # fmt: skip
        self.output_dir = widgets.Text(description="Output to", placeholder="next to each file",
                                       layout=_wide())  # fmt: skip
        fields = [self.path, self.model, self.language, self.task, self.backend, self.vad,
                  self.batch_size, self.formats, self.output_dir]  # fmt: skip
        super().__init__(fields, manager)

    def build(self) -> TranscribeJob:
        if not self.path.value.strip():
            raise ValueError("Path is empty: give an audio or video file, or a folder of them")
        return TranscribeJob(
            self.path.value.strip(),
            model=self.model.value,
            language=self.language.value,
            task=self.task.value,
            backend=self.backend.value,
            vad=self.vad.value,
            batch_size=self.batch_size.value or None,
            formats=list(self.formats.value),
            output_dir=self.output_dir.value.strip() or None,
        )


class OcrForm(LaunchForm):
    title = "Recognise text in images (OCR)"

    def __init__(self, manager: JobManager | None = None, **kwargs: Any) -> None:
        self.path = widgets.Text(description="Path", placeholder="an image or a folder",
                                 layout=_wide())  # fmt: skip
        self.languages = widgets.Text(description="Languages", value="eng",
                                      placeholder="eng+deu")  # fmt: skip
        self.variant = widgets.ToggleButtons(description="Data", options=["fast", "best"])
        self.formats = widgets.SelectMultiple(description="Outputs", options=OCR_FORMATS,
                                              value=("txt",))  # fmt: skip
        self.output_dir = widgets.Text(description="Output to", placeholder="next to each image",
                                       layout=_wide())  # fmt: skip
        fields = [self.path, self.languages, self.variant, self.formats, self.output_dir]
        super().__init__(fields, manager)

    def build(self) -> OcrJob:
        if not self.path.value.strip():
            raise ValueError("Path is empty: give an image file or a folder of images")
        catalog = ModelStore.at(self.manager.home).catalog
        for code in self.languages.value.split("+"):
            catalog.tessdata(code.strip(), self.variant.value)  # names the unknown ones
        return OcrJob(
            self.path.value.strip(),
            languages=self.languages.value.strip(),
            variant=self.variant.value,
            formats=list(self.formats.value),
            output_dir=self.output_dir.value.strip() or None,
        )
