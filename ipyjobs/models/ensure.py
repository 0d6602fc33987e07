"""``ensure_model``: what a job calls to have its model on disk, downloading it if needed.

The download runs as its own job (kind ``models.download``, keyed by the model), dispatched as a
*shared* child of the first job that needs it: every job that needs the same model joins it and
shows it nested. Cancelling a waiting job leaves the download running; pausing the download
keeps its waiters waiting; a failed download fails them with ``Model download failed: <why>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..engine import Job, JobContext, JobHandle, JobState
from ..engine.diskspace import NoSpaceLeft
from ..engine.handle import error_text
from .catalog import WHISPER, ModelEntry
from .diskio import copy_into_place, sha256_of
from .download import RetryPolicy, Transfer, fetch
from .errors import DownloadError, NotEnoughSpace, OfflineError
from .settings import MIRROR_VARIABLE, OFFLINE_VARIABLE, offline
from .store import ModelStore, vouches

#: How downloads retry; tests and closed networks may set shorter waits.
retry_policy = RetryPolicy()


def offline_error(store: ModelStore, entry: ModelEntry) -> OfflineError:
    expected = f" (SHA-256 {entry.sha256})" if entry.sha256 else ""
    elsewhere = f" or into whisper's cache {store.whisper_cache}" if entry.family == WHISPER else ""
    return OfflineError(
        f"{entry.label} is missing and {OFFLINE_VARIABLE} forbids downloads. Copy the file "
        f"{entry.file}{expected} to {store.folder / entry.family / entry.file}{elsewhere}, or "
        f"unset {OFFLINE_VARIABLE}, or set {MIRROR_VARIABLE} to a mirror this machine reaches."
    )


@dataclass
class ModelJob(Job):
    """A job that makes one model of a data folder ready (downloads and conversions): one job
    per model at a time, shared by every waiter through its key."""

    model: str
    """The catalog id, e.g. ``whisper/tiny.en`` or ``faster-whisper/tiny.en``."""
    home: str | None = None
    """The data folder; by default the manager's."""

    def _store(self, ctx: JobContext | None = None) -> ModelStore:
        return ModelStore.at(self.home or (ctx.manager.home if ctx else None))

    @property
    def key(self) -> str:
        return f"model:{self.model}"


@dataclass
class DownloadModel(ModelJob, kind="models.download"):
    """Make one catalog model ready: reuse a copy already on the machine, else download it."""

    resumable = True  # the partial file survives; the job's parameters rebuild it
    group = "download"

    @property
    def title(self) -> str:
        return f"Download {self._store().entry(self.model).label}"

    async def run(self, ctx: JobContext) -> str:
        store = self._store(ctx)
        entry = store.entry(self.model)
        with store.downloading(entry, ctx.handle):
            ready = store.ready_path(entry)
            if ready is not None:
                return str(ready)
            reused = await self._reuse(ctx, store, entry)
            if reused is not None:
                return str(reused)
            if offline():
                raise offline_error(store, entry)
            transfer = Transfer(
                url=entry.source_url,
                dest=store.target(entry),
                sha256=store.recorded_sha256(entry),
                size=entry.size if entry.size_exact else None,
                label=entry.label,
            )
            result = await fetch(transfer, ctx, policy=retry_policy)
            store.record_verified(entry, result.path, result.sha256, "download")
            ctx.log(f"{entry.label} ready at {result.path}")
            return str(result.path)

    async def _reuse(self, ctx: JobContext, store: ModelStore, entry: ModelEntry) -> Path | None:
        for candidate, source in store.reuse_candidates(entry):
            ctx.progress(message=f"checking {candidate}")
            sha256, size = await sha256_of(candidate)
            if not vouches(entry, sha256, size):
                ctx.log(f"{candidate} is not {entry.label} (SHA-256 {sha256}); not reused")
                continue
            path = candidate
            if source == "system":  # tesseract reads one folder: copy it into ours
                path = store.target(entry)
                await ctx.run_sync(copy_into_place, candidate, path)
            store.record_verified(entry, path, sha256, source)
            ctx.log(f"reusing {entry.label} from {candidate}")
            return path
        return None


async def _wait_for_download(ctx: JobContext, entry: ModelEntry, handle: JobHandle) -> Path:
    try:
        return Path(await handle)
    except Exception as exc:
        if ctx.token.cancelled:  # this job itself is being cancelled
            raise
        if handle.state is JobState.CANCELLED:
            raise DownloadError(
                f"Model download was cancelled: {entry.label} (job {handle.id}); "
                "run again to resume it from where it stopped"
            ) from exc
        # A full disk stays a NoSpaceLeft for the waiter: one except catches every full disk.
        error = NotEnoughSpace if isinstance(exc, NoSpaceLeft) else DownloadError
        raise error(f"Model download failed: {error_text(exc)}") from exc


async def ensure_model(ctx: JobContext, name: str) -> Path:
    """The path of model ``name``, at once when it is ready; otherwise dispatch (or join) its
    download as a shared child of this job and wait for it.

    The wait is interruptible by this job's own cancel and pause, and has no timeout. If this
    job is cancelled while waiting, the download goes on for the other waiters (and the next
    attempt).
    """
    store = ModelStore.at(ctx.manager.home)
    entry = store.entry(name)
    path = store.ready_path(entry)
    if path is not None:
        ctx.log(f"using {entry.label} at {path}")
        return path
    if offline() and not store.reuse_candidates(entry):
        raise offline_error(store, entry)
    handle = ctx.dispatch(DownloadModel(entry.id, str(ctx.manager.home)))
    size = f"{entry.size / 1e6:.0f} MB" if entry.size else "size unknown"
    ctx.log(f"{entry.label} not found: downloading it ({size}) in job {handle.id}")
    path = await _wait_for_download(ctx, entry, handle)
    ctx.log(f"{entry.label} ready")
    return path


async def ensure_tessdata(
    ctx: JobContext, languages: str | Iterable[str], variant: str = "fast"
) -> Path:
    """The Tesseract data folder (for ``--tessdata-dir``) holding every language asked for
    (``"eng+deu"`` or ``["eng", "deu"]``), downloading the missing ones side by side."""
    store = ModelStore.at(ctx.manager.home)
    codes = languages.split("+") if isinstance(languages, str) else list(languages)
    entries = [store.catalog.tessdata(code.strip(), variant) for code in codes]
    missing = [e for e in entries if store.ready_path(e) is None]
    if offline():
        for entry in missing:
            if not store.reuse_candidates(entry):
                raise offline_error(store, entry)
    handles = [(e, ctx.dispatch(DownloadModel(e.id, str(ctx.manager.home)))) for e in missing]
    for entry, handle in handles:
        await _wait_for_download(ctx, entry, handle)
    return store.family_folder(entries[0].family)


@dataclass
class VerifyModel(Job, kind="models.verify"):
    """Re-hash a ready model; a file that no longer matches is forgotten (see ``verify``)."""

    model: str
    home: str | None = None

    @property
    def title(self) -> str:
        return f"Verify {ModelStore.at(self.home).entry(self.model).label}"

    async def run(self, ctx: JobContext) -> bool:
        store = ModelStore.at(self.home or ctx.manager.home)
        ctx.progress(message="hashing")
        ok = await store.verify(self.model)
        ctx.log(f"{self.model}: {'verified' if ok else 'CORRUPT: forgotten, download it again'}")
        return ok
