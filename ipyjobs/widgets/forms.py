"""Launch forms for transcription and OCR: the entry point for people who do not write code
(Voila, Binder). A form takes uploaded files or a picked folder, builds a job from its fields
and dispatches it; results land in the data folder (``results/<job>``), where the Results tab
shows them and offers them as a zip. Labels share one width so fields line up. While the
kernel runs its work on a Dask cluster, a form offers to run its job on the kernel instead.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from ..engine import Executor, Job, JobHandle, JobManager, LocalExecutor, jobs
from ..media.ocr import EXTENSIONS as IMAGE_EXTENSIONS
from ..media.ocr import OcrJob
from ..media.speech import AUDIO_VIDEO_EXTENSIONS, BACKENDS, TranscribeJob
from ..media.speech import FORMATS as SPEECH_FORMATS
from ..media.tesseract import FORMATS as OCR_FORMATS
from ..models import ModelError, ModelStore
from ..models.catalog import WHISPER
from .inputs import InputPicker, fresh_folder, labelled, style
from .ticker import ticker

DETECT = "detect"
LANGUAGES = [
    ("detect", DETECT), ("English", "en"), ("German", "de"), ("French", "fr"),
    ("Spanish", "es"), ("Italian", "it"), ("Portuguese", "pt"), ("Dutch", "nl"),
]  # fmt: skip


def default_model(store: ModelStore, language: str = DETECT) -> str:
    """The best Whisper model already on disk (the largest), else the smallest that fits the
    language (an English-only model for English, a multilingual one otherwise)."""
    entries = [e for e in store.catalog if e.family == WHISPER]
    ready = [e for e in entries if store.info(e).status == "ready"]
    english = language == "en"
    fitting = [e for e in ready if english or not e.name.endswith((".en", ".en-test"))]
    if fitting:
        return max(fitting, key=lambda e: (e.size or 0, e.name)).name
    smallest = "tiny.en" if english else "tiny"
    return smallest if any(e.name == smallest for e in entries) else entries[0].name


class Checkboxes(widgets.HBox):
    """One checkbox per choice, under a label as wide as the others."""

    def __init__(self, label: str, options: tuple[str, ...] | list[str], chosen: tuple[str, ...]):
        self.boxes = {
            name: widgets.Checkbox(value=name in chosen, description=name, indent=False,
                                   layout=widgets.Layout(width="auto", margin="0 1em 0 0"))
            for name in options
        }  # fmt: skip
        super().__init__(labelled(label, *self.boxes.values()).children)

    @property
    def value(self) -> list[str]:
        return [name for name, box in self.boxes.items() if box.value]


class RunOn(widgets.Dropdown):
    """Where a form's job runs, shown only while the kernel runs its jobs' work elsewhere than
    on its own threads (``jobs.use_dask(...)``): "Dask cluster <address>" (the default, as for
    any job) or "this kernel (N threads)". ``value`` is the executor for the job's
    ``executor`` field (``None`` while hidden: the kernel's).

    Follows ``manager.executor`` from the widget ticker (a cluster set or dropped after the
    form was shown); a change of executor brings the default back.
    """

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self.local = LocalExecutor()
        self._seen: Executor | None = None
        super().__init__(description="Run on", style=style(), layout=widgets.Layout(width="auto"))
        self.refresh()
        ticker().add(self)

    def refresh(self) -> None:
        executor = self.manager.executor
        if executor is self._seen or self.comm is None:  # unchanged, or closed
            return
        self._seen = executor
        elsewhere = not isinstance(executor, LocalExecutor)
        choices = ((self.local.label, self.local), (executor.label, executor))
        self.options = choices if elsewhere else ()
        self.value = executor if elsewhere else None
        self.layout.display = None if elsewhere else "none"


class LaunchForm(widgets.VBox):
    """Inputs, fields, a Start button, and what happened. Subclasses build the job."""

    title = ""
    what = ""
    extensions: tuple[str, ...] = ()

    def __init__(self, fields: list[widgets.Widget], manager: JobManager | None) -> None:
        self.manager = manager if manager is not None else jobs()
        self.run_on = RunOn(self.manager)
        self.inputs = InputPicker(self.what, self.extensions)
        self.start = widgets.Button(description="Start", icon="play", button_style="primary")
        self.start.on_click(lambda _: self.submit())
        self.feedback = widgets.HTML()
        self.last_job: JobHandle | None = None
        super().__init__([
            widgets.HTML(f"<b>{self.title}</b>"), self.inputs, *fields, self.run_on,
            labelled("", self.start, self.feedback),
        ])  # fmt: skip
        self.add_class("ipyjobs-form")

    def build(self, source: str, output_dir: str) -> Job:
        raise NotImplementedError

    def check(self) -> None:
        """Raise ``ValueError`` for a bad field before anything is written."""

    def submit(self) -> JobHandle | None:
        """Dispatch the job the fields describe; a bad field shows its error, nothing starts."""
        self.run_on.refresh()  # the kernel's executor may have changed since the last tick
        try:
            self.check()
            source = self.inputs.resolve(self.manager.home / "uploads")
            output_dir = fresh_folder(self.manager.home / "results", self.what.lower())
            job = self.build(source, str(output_dir))
        except (ValueError, TypeError, ModelError) as exc:
            self.feedback.value = f'<span style="color:#c5221f">{html.escape(str(exc))}</span>'
            return None
        self.last_job = self.manager.dispatch(job)
        self.feedback.value = (
            f"Started {html.escape(self.last_job.title)} ({self.last_job.id}); its results "
            "will be in the Results tab."
        )
        return self.last_job


class TranscribeForm(LaunchForm):
    title = "Transcribe audio or video"
    what = "Audio"
    extensions = tuple(AUDIO_VIDEO_EXTENSIONS)

    def __init__(self, manager: JobManager | None = None, **kwargs: Any) -> None:
        manager = manager if manager is not None else jobs()
        self.store = ModelStore.at(manager.home)
        models = sorted({e.name for e in self.store.catalog if e.family == WHISPER})
        self.model = widgets.Dropdown(description="Model", options=models,
                                      value=default_model(self.store), style=style())  # fmt: skip
        self.language = widgets.Dropdown(description="Language", options=LANGUAGES,
                                         value=DETECT, style=style())  # fmt: skip
        self.language.observe(self._language_changed, "value")
        self._default = self.model.value
        self.task = widgets.ToggleButtons(options=["transcribe", "translate"])
        self.backend = widgets.Dropdown(description="Engine", options=BACKENDS, value="auto",
                                        style=style())  # fmt: skip
        self.vad = widgets.Checkbox(description="Skip silence (VAD, faster-whisper)")
        # 0: one 30-second window after the other; more: faster-whisper's batched pipeline
        self.batch_size = widgets.BoundedIntText(description="Batch size", value=0, max=64,
                                                 style=style())  # fmt: skip
        self.formats = Checkboxes("Outputs", SPEECH_FORMATS, ("txt", "srt", "vtt"))
        fields = [self.model, self.language, labelled("Task", self.task), self.backend,
                  self.vad, self.batch_size, self.formats]  # fmt: skip
        super().__init__(fields, manager)

    def _language_changed(self, change: dict) -> None:
        if self.model.value == self._default:  # the user did not pick another: follow
            self._default = self.model.value = default_model(self.store, change["new"])

    def check(self) -> None:
        if not self.formats.value:
            raise ValueError("No output chosen: tick at least one of Outputs")

    def build(self, source: str, output_dir: str) -> TranscribeJob:
        return TranscribeJob(
            source,
            model=self.model.value,
            language=None if self.language.value == DETECT else self.language.value,
            task=self.task.value,
            backend=self.backend.value,
            vad=self.vad.value,
            batch_size=self.batch_size.value or None,
            formats=self.formats.value,
            output_dir=output_dir,
            executor=self.run_on.value,
        )


class OcrForm(LaunchForm):
    title = "Recognise text in images (OCR)"
    what = "Image"
    extensions = tuple(IMAGE_EXTENSIONS)

    def __init__(self, manager: JobManager | None = None, **kwargs: Any) -> None:
        self.languages = widgets.Text(description="Languages", value="eng",
                                      placeholder="eng+deu", style=style())  # fmt: skip
        self.variant = widgets.ToggleButtons(options=["fast", "best"])
        self.formats = Checkboxes("Outputs", OCR_FORMATS, ("txt",))
        fields = [self.languages, labelled("Data", self.variant), self.formats]
        super().__init__(fields, manager)

    def check(self) -> None:
        catalog = ModelStore.at(self.manager.home).catalog
        for code in self.languages.value.split("+"):
            catalog.tessdata(code.strip(), self.variant.value)  # names the unknown ones
        if not self.formats.value:
            raise ValueError("No output chosen: tick at least one of Outputs")

    def build(self, source: str, output_dir: str) -> OcrJob:
        return OcrJob(
            source,
            languages=self.languages.value.strip(),
            variant=self.variant.value,
            formats=self.formats.value,
            output_dir=output_dir,
            executor=self.run_on.value,
        )
