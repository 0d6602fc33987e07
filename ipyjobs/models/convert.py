"""``ConvertModel`` and ``ensure_converted``: a faster-whisper model made on this machine from the
verified openai-whisper checkpoint, so that one trusted download serves both engines (and a
mirror or offline mode need only openai's files).

The conversion is a job (kind ``models.convert``, keyed by the model like a download), dispatched
as a *shared* child of the first job that needs it: a second job needing the same model joins it
and shows it nested. It first makes sure the checkpoint is there (``ensure_model``, so a download
shows nested under the conversion), builds the folder in ``<name>.partial/`` in a worker thread
(:mod:`.ct2_whisper`), hashes every file, moves the folder into place and records each file's
SHA-256 in the store. On cancel the conversion stops between its steps and the unfinished folder
is left as a *partial* model (the next run starts it again; ``ModelStore.delete`` removes it).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..engine import JobContext, JobHandle, JobState, current_token
from ..engine.handle import error_text
from .catalog import ModelEntry
from .diskio import sha256_of
from .download import _locked
from .ensure import ModelJob, ensure_model
from .errors import ModelError
from .store import ModelStore


class ConversionFailed(ModelError):
    """A faster-whisper model could not be converted from its checkpoint."""


@dataclass
class ConvertModel(ModelJob, kind="models.convert"):
    """Convert a Whisper checkpoint into its faster-whisper (CTranslate2) folder (``model``: a
    ``faster-whisper/<name>`` id)."""

    resumable = True  # starts the conversion again; the checkpoint download resumes
    group = "convert"

    @property
    def title(self) -> str:
        entry = self._store().entry(self.model)
        return f"Convert whisper model {entry.name} for faster-whisper"

    async def run(self, ctx: JobContext) -> str:
        store = self._store(ctx)
        entry = store.entry(self.model)
        if entry.converted_from is None:
            raise ConversionFailed(f"{entry.label} is not made by conversion")
        source = store.entry(entry.converted_from)
        with store.downloading(entry, ctx.handle):
            ready = store.ready_path(entry)
            if ready is not None:
                return str(ready)
            checkpoint = await ensure_model(ctx, source.id)
            target = store.target(entry)
            async with _locked(target, ctx, entry.label):  # one conversion across processes
                ready = store.ready_path(entry)  # another process may have just made it
                if ready is not None:
                    return str(ready)
                with store.using(source):
                    await self._convert(ctx, store, entry, source, checkpoint, target)
            ctx.log(f"{entry.label} ready at {target}")
            return str(target)

    async def _convert(
        self, ctx: JobContext, store: ModelStore, entry: ModelEntry, source: ModelEntry,
        checkpoint: Path, target: Path,
    ) -> None:  # fmt: skip
        from .ct2_whisper import STEPS, convert_checkpoint

        partial = store.partial_folder(target)
        shutil.rmtree(partial, ignore_errors=True)
        total = len(STEPS) + len(entry.files)

        def check(step: str) -> None:
            ctx.progress(STEPS.index(step), total, message=step, unit="steps")
            token = current_token()
            if token is not None:
                token.check()

        ctx.log(f"converting {checkpoint} into {target}")
        try:
            await ctx.run_sync(convert_checkpoint, checkpoint, partial, source.name, check)
        except (ImportError, KeyError, ValueError, RuntimeError) as exc:
            raise ConversionFailed(
                f"{source.label} at {checkpoint} could not be converted for faster-whisper: "
                f"{error_text(exc)}"
            ) from exc
        hashes = {}
        for done, name in enumerate(entry.files, start=len(STEPS)):
            ctx.progress(done, total, message=f"hashing {name}")
            hashes[name], _ = await sha256_of(partial / name)
        if target.exists():  # an unverified leftover: the new folder replaces it
            shutil.rmtree(target)
        os.replace(partial, target)
        store.record_verified_folder(entry, target, hashes, "converted")
        ctx.progress(total, total, message="converted")


async def ensure_converted(ctx: JobContext, name: str) -> Path:
    """The faster-whisper folder of Whisper model ``name`` (``"tiny.en"``), at once when it is
    ready; otherwise dispatch (or join) its ``ConvertModel`` job as a shared child of this job
    and wait for it. Cancelling this job leaves the conversion running for other waiters."""
    store = ModelStore.at(ctx.manager.home)
    source = store.entry(name)
    entry = store.entry(f"faster-whisper/{source.name}")
    path = store.ready_path(entry)
    if path is not None:
        ctx.log(f"using {entry.label} at {path}")
        return path
    handle = ctx.dispatch(ConvertModel(entry.id, str(ctx.manager.home)))
    ctx.log(f"{entry.label} not found: converting it from {source.label} in job {handle.id}")
    return await _wait_for_conversion(ctx, entry, handle)


async def _wait_for_conversion(ctx: JobContext, entry: ModelEntry, handle: JobHandle) -> Path:
    try:
        return Path(await handle)
    except Exception as exc:
        if ctx.token.cancelled:
            raise
        if handle.state is JobState.CANCELLED:
            raise ConversionFailed(
                f"Model conversion was cancelled: {entry.label} (job {handle.id}); "
                "run again to convert it"
            ) from exc
        raise ConversionFailed(f"Model conversion failed: {error_text(exc)}") from exc
