"""The on-disk model store: where each model lives, whether it is ready, and what it costs.

Layout under ``<data folder>/models``::

    whisper/<file>.pt                    Whisper checkpoints
    tessdata_fast/<lang>.traineddata     one folder per Tesseract variant, usable as
    tessdata_best/<lang>.traineddata     ``tesseract --tessdata-dir`` (configs/ and pdf.ttf in it)
    faster-whisper/<name>/               converted models: a folder of files, each verified
    manifest.json                        verified files: id -> sha256, size, mtime, path, source
    custom.json                          the user's own catalog entries

A file is *ready* when the manifest vouches for it and its size and mtime are unchanged;
checking never re-hashes (``verify`` does). A folder model is ready when every one of its files
is; it is made in ``<name>.partial/`` (a *partial* model) and moved into place when complete.
Files already on the machine are reused: a checkpoint in whisper's cache is used where it is,
system Tesseract data is copied into the managed folder (tesseract reads one folder).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from ..engine import data_home
from .catalog import TESSDATA_BEST, TESSDATA_FAST, WHISPER, Catalog, ModelEntry
from .diskio import copy_into_place, replace_text, sha256_of
from .errors import ModelInUse
from .partfile import partial_files

if TYPE_CHECKING:
    from ..engine import JobHandle

log = logging.getLogger(__name__)

#: Where Debian, Ubuntu, Fedora and Homebrew install Tesseract's data.
SYSTEM_TESSDATA = (
    Path("/usr/share/tesseract-ocr/5/tessdata"),
    Path("/usr/share/tesseract-ocr/4.00/tessdata"),
    Path("/usr/share/tessdata"),
    Path("/usr/local/share/tessdata"),
    Path("/opt/homebrew/share/tessdata"),
)

#: What tesseract needs in a data folder besides the languages, to write each output format.
_CONFIGS = {
    "txt": "tessedit_create_txt 1\n",
    "hocr": "tessedit_create_hocr 1\nhocr_font_info 0\n",
    "pdf": "tessedit_create_pdf 1\n",
    "tsv": "tessedit_create_tsv 1\n",
}


#: What every manifest record holds.
_RECORD_KEYS = frozenset({"path", "sha256", "size", "mtime_ns", "source"})


def whisper_cache() -> Path:
    """Where openai-whisper keeps its downloads: ``$XDG_CACHE_HOME/whisper`` or ``~/.cache``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "whisper"


def system_tessdata() -> list[Path]:
    """Tesseract data folders of this machine, ``$TESSDATA_PREFIX`` first."""
    prefix = os.environ.get("TESSDATA_PREFIX")
    folders = [Path(prefix)] if prefix else []
    return [f for f in (*folders, *SYSTEM_TESSDATA) if f.is_dir()]


def vouches(entry: ModelEntry, sha256: str, size: int) -> bool:
    """Whether a file with this hash and size is ``entry``: its SHA-256 matches, or (none known)
    its size matches the exact size known. Without either, any file is taken (the HTML checks
    of the download are then all there is) and its hash recorded for later checks."""
    if entry.sha256 is not None:
        return sha256 == entry.sha256
    if entry.size is not None and entry.size_exact:
        return size == entry.size
    return True


@dataclass(frozen=True)
class ModelInfo:
    """One model as the store sees it now."""

    entry: ModelEntry
    status: str
    """``missing``, ``partial`` (``present`` bytes of a download), ``downloading``, ``ready``."""
    path: Path
    """Where the model is (ready) or will be."""
    present: int
    size: int | None
    job: JobHandle | None = None
    source: str | None = None
    """``download``, ``whisper-cache`` or ``system`` for a ready model."""

    @property
    def fraction(self) -> float | None:
        return self.present / self.size if self.size else None


class ModelStore:
    """Models of one data folder. ``ModelStore.at(home)`` shares one instance per folder."""

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        whisper_cache_folder: Path | None = None,
        system_tessdata_folders: Sequence[Path] | None = None,
    ) -> None:
        self.folder = Path(home if home is not None else data_home()) / "models"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.whisper_cache = whisper_cache_folder or whisper_cache()
        self.system_tessdata = (
            list(system_tessdata_folders)
            if system_tessdata_folders is not None
            else system_tessdata()
        )
        self.catalog = Catalog()
        self.catalog.load_custom(self.folder / "custom.json")
        self._manifest_lock = FileLock(self.folder / "manifest.lock")
        self._users: Counter[str] = Counter()
        self._downloads: dict[str, JobHandle] = {}

    @classmethod
    def at(cls, home: Path | str | None = None) -> ModelStore:
        folder = Path(home if home is not None else data_home()).resolve()
        store = _stores.get(folder)
        if store is None:
            store = _stores[folder] = cls(folder)
        return store

    # -- catalog ---------------------------------------------------------------------------

    def entry(self, name: str) -> ModelEntry:
        return self.catalog.get(name)

    def register(self, entry: ModelEntry) -> ModelEntry:
        """Add your own model (validated) and keep it for later sessions."""
        entry = self.catalog.register(entry)
        self.catalog.save_custom(self.folder / "custom.json")
        return entry

    # -- paths -----------------------------------------------------------------------------

    def family_folder(self, family: str) -> Path:
        folder = self.folder / family
        folder.mkdir(exist_ok=True)
        if family in (TESSDATA_FAST, TESSDATA_BEST):
            self._prepare_tessdata_folder(folder)
        return folder

    def target(self, entry: ModelEntry) -> Path:
        """Where the store keeps ``entry`` when it downloads (or converts) it."""
        return self.family_folder(entry.family) / entry.file

    @staticmethod
    def partial_folder(target: Path) -> Path:
        """Where a folder model is assembled before it is moved to ``target``."""
        return target.with_name(target.name + ".partial")

    def _prepare_tessdata_folder(self, folder: Path) -> None:
        """Give a managed tessdata folder the configs and font tesseract's outputs need."""
        configs = folder / "configs"
        if not configs.is_dir():
            # made aside and renamed into place: processes sharing the folder (a cluster's
            # workers) may do this at once, and none may see a half-made folder
            staging = folder / f".configs.{os.getpid()}-{threading.get_ident()}"
            staging.mkdir()
            for name, text in _CONFIGS.items():
                system = next(
                    (
                        f / "configs" / name
                        for f in self.system_tessdata
                        if (f / "configs" / name).is_file()
                    ),
                    None,
                )
                (staging / name).write_text(system.read_text() if system else text)
            try:
                staging.rename(configs)
            except OSError:  # another process put its own in place first, or a real error
                shutil.rmtree(staging)
                if not configs.is_dir():
                    raise
        font = folder / "pdf.ttf"
        if not font.exists():
            system_font = next(
                (f / "pdf.ttf" for f in self.system_tessdata if (f / "pdf.ttf").is_file()), None
            )
            if system_font is not None:
                copy_into_place(system_font, font)

    def reuse_candidates(self, entry: ModelEntry) -> list[tuple[Path, str]]:
        """Files already on the machine that may be ``entry``: (path, source). First the store's
        own file, if the manifest does not vouch for it (the manifest was lost, or the user
        copied the file in); then whisper's cache for checkpoints, and system folders for fast
        Tesseract data (Debian ships the fast variant)."""
        own = self.folder / entry.family / entry.file
        candidates = [(own, "download")] if own.is_file() else []
        if entry.family == WHISPER:
            candidates.append((self.whisper_cache / entry.file, "whisper-cache"))
        elif entry.family == TESSDATA_FAST:
            candidates.extend((folder / entry.file, "system") for folder in self.system_tessdata)
        return [(path, source) for path, source in candidates if path.is_file()]

    # -- the manifest of verified files ----------------------------------------------------

    def _read_manifest(self) -> dict[str, dict[str, Any]]:
        """The manifest; an unreadable one is set aside (see :meth:`_set_aside`)."""
        path = self.folder / "manifest.json"
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            manifest = json.loads(text)
            if not isinstance(manifest, dict) or not all(
                isinstance(record, dict) and record.keys() >= _RECORD_KEYS
                for record in manifest.values()
            ):
                raise ValueError("not a map of model ids to records of verified files")
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError included
            return self._set_aside(path, text, exc)
        return manifest

    def _set_aside(self, path: Path, text: bytes, error: ValueError) -> dict[str, dict[str, Any]]:
        """Move an unreadable manifest to ``manifest.json.corrupt`` and start an empty one.
        Nothing is lost: a model file still on disk is hashed (not downloaded) when next
        ensured, and recorded again if it is the right file."""
        aside = path.with_name(path.name + ".corrupt")
        with self._manifest_lock:
            try:
                if path.read_bytes() == text:  # not already replaced by another process
                    os.replace(path, aside)
            except FileNotFoundError:
                pass
        log.warning(
            "the model manifest %s was unreadable (%s) and was moved to %s; models on disk are "
            "verified again (hashed, not downloaded) when next used",
            path,
            error,
            aside,
        )
        return {}

    def _update_manifest(self, entry_id: str, record: dict[str, Any] | None) -> None:
        with self._manifest_lock:
            manifest = self._read_manifest()
            if record is None:
                manifest.pop(entry_id, None)
            else:
                manifest[entry_id] = record
            replace_text(
                self.folder / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True)
            )

    def record_verified(self, entry: ModelEntry, path: Path, sha256: str, source: str) -> None:
        """Vouch for ``path`` as ``entry`` (its hash was just computed)."""
        stat = path.stat()
        self._update_manifest(
            entry.id,
            {
                "path": str(path),
                "sha256": sha256,
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "source": source,
            },
        )

    def record_verified_folder(
        self, entry: ModelEntry, folder: Path, hashes: dict[str, str], source: str
    ) -> None:
        """Vouch for a folder model: ``hashes`` maps each of ``entry.files`` to the SHA-256 just
        computed. The record's own ``sha256`` is a digest of those, its ``size`` their sum."""
        files = {}
        for name in entry.files:
            stat = (folder / name).stat()
            files[name] = {"sha256": hashes[name], "size": stat.st_size,
                           "mtime_ns": stat.st_mtime_ns}  # fmt: skip
        self._update_manifest(
            entry.id,
            {
                "path": str(folder),
                "sha256": _digest(hashes),
                "size": sum(f["size"] for f in files.values()),
                "mtime_ns": folder.stat().st_mtime_ns,  # each file's own is in ``files``
                "files": files,
                "source": source,
            },
        )

    def recorded_sha256(self, entry: ModelEntry) -> str | None:
        """The hash to expect: the catalog's, else the one recorded at the first download (if
        that download matched the known size)."""
        if entry.sha256 is not None:
            return entry.sha256
        record = self._vouched_record(entry, self._read_manifest())
        return record["sha256"] if record else None

    def _vouched_record(self, entry: ModelEntry, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """The manifest's record of ``entry`` if it shows the right file (see :func:`vouches`):
        a record an older version wrote for a wrong file (an HTML page) does not count."""
        record = manifest.get(entry.id)
        if record is None or not vouches(entry, record["sha256"], record["size"]):
            return None
        return record

    def _ready_record(self, entry: ModelEntry, manifest: dict[str, Any]) -> dict[str, Any] | None:
        record = self._vouched_record(entry, manifest)
        if record is None:
            return None
        if entry.files:
            if sorted(record.get("files", ())) != sorted(entry.files):
                return None
            checks = [(Path(record["path"]) / n, f) for n, f in record["files"].items()]
        else:
            checks = [(Path(record["path"]), record)]
        for path, expected in checks:
            try:
                stat = os.stat(path)
            except OSError:
                return None
            if stat.st_size != expected["size"] or stat.st_mtime_ns != expected["mtime_ns"]:
                return None
        return record

    def ready_path(self, name: str | ModelEntry) -> Path | None:
        """The verified file of a model, or ``None``. Never hashes."""
        entry = name if isinstance(name, ModelEntry) else self.entry(name)
        record = self._ready_record(entry, self._read_manifest())
        return None if record is None else Path(record["path"])

    async def verify(self, name: str | ModelEntry) -> bool:
        """Re-hash a ready model (in a worker thread). A file that no longer matches is
        forgotten, and deleted when it is the store's own, so it never looks ready again."""
        entry = name if isinstance(name, ModelEntry) else self.entry(name)
        record = self._read_manifest().get(entry.id)
        if record is None:
            raise FileNotFoundError(f"{entry.label} is not downloaded: nothing to verify")
        path = Path(record["path"])
        if entry.files:
            return await self._verify_folder(entry, path, record)
        actual, size = await sha256_of(path)
        expected = entry.sha256 or record["sha256"]
        if actual == expected and vouches(entry, actual, size):
            self.record_verified(entry, path, actual, record["source"])
            return True
        log.error(
            "%s at %s is corrupt: SHA-256 %s, expected %s", entry.label, path, actual, expected
        )
        self._forget(entry, path)
        return False

    async def _verify_folder(self, entry: ModelEntry, folder: Path, record: dict[str, Any]) -> bool:
        hashes = {}
        for name in entry.files:
            expected = record.get("files", {}).get(name, {}).get("sha256")
            try:
                hashes[name], _ = await sha256_of(folder / name)
            except FileNotFoundError:
                hashes[name] = "missing"
            if hashes[name] != expected:
                log.error("%s: %s is corrupt: SHA-256 %s, expected %s",
                          entry.label, folder / name, hashes[name], expected)  # fmt: skip
                self._forget(entry, folder)
                return False
        self.record_verified_folder(entry, folder, hashes, record["source"])
        return True

    def _forget(self, entry: ModelEntry, path: Path) -> None:
        """Drop a model's record, and delete its file or folder when it is the store's own."""
        self._update_manifest(entry.id, None)
        if path.is_relative_to(self.folder):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    # -- listing ---------------------------------------------------------------------------

    def info(self, name: str | ModelEntry) -> ModelInfo:
        entry = name if isinstance(name, ModelEntry) else self.entry(name)
        return self._info(entry, self._read_manifest())

    def _info(self, entry: ModelEntry, manifest: dict[str, Any]) -> ModelInfo:
        record = self._ready_record(entry, manifest)
        if record is not None:
            return ModelInfo(
                entry,
                "ready",
                Path(record["path"]),
                record["size"],
                record["size"],
                source=record["source"],
            )
        target = self.folder / entry.family / entry.file
        present = _partial_bytes(entry, target)
        job = self._downloads.get(entry.id)
        if job is not None and not job.done:
            status = "downloading"
        else:
            status, job = ("partial" if present else "missing"), None
        return ModelInfo(entry, status, target, present, entry.size, job=job)

    def list(self, family: str | None = None) -> list[ModelInfo]:
        """Every catalog model (of one family), with its status now."""
        manifest = self._read_manifest()
        return [self._info(e, manifest) for e in self.catalog if family in (None, e.family)]

    def disk_usage(self) -> int:
        """Bytes the store's own folder takes (reused files elsewhere are not counted)."""
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())

    # -- use, downloads, deletion ----------------------------------------------------------

    @contextmanager
    def using(self, name: str | ModelEntry) -> Iterator[None]:
        """Mark a model as in use by a job for the block: ``delete`` refuses meanwhile."""
        entry = name if isinstance(name, ModelEntry) else self.entry(name)
        self._users[entry.id] += 1
        try:
            yield
        finally:
            self._users[entry.id] -= 1

    @contextmanager
    def downloading(self, entry: ModelEntry, job: JobHandle) -> Iterator[None]:
        """Register the job downloading ``entry`` for the model list, for the block."""
        self._downloads[entry.id] = job
        try:
            yield
        finally:
            if self._downloads.get(entry.id) is job:
                del self._downloads[entry.id]

    def delete(self, name: str | ModelEntry) -> int:
        """Delete a model's managed file and any partial download; return the bytes freed.

        Refused while a download or a job uses it. A reused file outside the store (whisper's
        cache) is not deleted, only forgotten.
        """
        entry = name if isinstance(name, ModelEntry) else self.entry(name)
        job = self._downloads.get(entry.id)
        if job is not None and not job.done:
            raise ModelInUse(
                f"{entry.label} is being downloaded by job {job.id}; cancel that job first"
            )
        if self._users[entry.id]:
            raise ModelInUse(
                f"{entry.label} is in use by {self._users[entry.id]} running job(s); "
                "wait for them or cancel them first"
            )
        target = self.folder / entry.family / entry.file
        freed = _partial_bytes(entry, target)
        if entry.files:
            if target.is_dir():
                freed += _folder_bytes(target)
                shutil.rmtree(target)
            shutil.rmtree(self.partial_folder(target), ignore_errors=True)
            self._update_manifest(entry.id, None)
            return freed
        for leftover in partial_files(target):
            leftover.unlink(missing_ok=True)
        if target.exists():
            freed += target.stat().st_size
            target.unlink()
        self._update_manifest(entry.id, None)
        return freed


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _partial_bytes(entry: ModelEntry, target: Path) -> int:
    """Bytes of an unfinished download (one file) or conversion (a ``.partial`` folder)."""
    from .download import partial_size

    if entry.files:
        partial = ModelStore.partial_folder(target)
        return _folder_bytes(partial) if partial.is_dir() else 0
    return partial_size(target)


def _digest(hashes: dict[str, str]) -> str:
    """One SHA-256 standing for a folder's files (names and hashes, in name order)."""
    text = "".join(f"{name}\0{hashes[name]}\n" for name in sorted(hashes))
    return hashlib.sha256(text.encode()).hexdigest()


_stores: dict[Path, ModelStore] = {}
