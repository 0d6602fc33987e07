"""Models on workers: the kernel names the models among a call's arguments, a worker whose
data folder is not the kernel's makes them present in its own folder.

The kernel side (:func:`model_refs`) looks for paths among the arguments (and the fields of a
dataclass argument) that its model store knows as ready: a model file, or a Tesseract data
folder. Each is sent with its catalog entries. The worker side (:func:`localize`) keeps the
paths as they are when it shares the kernel's data folder; otherwise it ensures each entry in
its own folder, from the same catalog, mirror and SHA-256 (the download job's file lock makes
that once per machine), and hands ``fn`` its own paths. A worker process remembers what it
made present, so later calls cost nothing.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .remote import CallSpec


def _paths_in(value: Any) -> list[Path]:
    if isinstance(value, Path):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [
            v for f in dataclasses.fields(value) if isinstance(v := getattr(value, f.name), Path)
        ]
    return []


def model_refs(home: Path, args: tuple) -> dict[str, dict[str, Any]]:
    """The ready models among ``args`` (paths of the kernel's store), with their entries."""
    paths = [p for arg in args for p in _paths_in(arg)]
    if not paths:
        return {}
    ready = _ready_models(home)
    refs: dict[str, dict[str, Any]] = {}
    for path in paths:
        exact = [info.entry for info in ready if info.path == path]
        held = [info.entry for info in ready if info.path.parent == path] if not exact else []
        if exact or held:  # a model (file or folder), or a folder of models (tessdata)
            found = exact or held
            entries = [dataclasses.asdict(entry) for entry in found]
            # a converted model (faster-whisper) is made from its source: send that entry too
            sources = [dataclasses.asdict(_catalog_entry(home, entry.converted_from))
                       for entry in found if entry.converted_from]  # fmt: skip
            refs[str(path)] = {"family": bool(held), "entries": entries, "sources": sources}
    return refs


def _catalog_entry(home: Path, name: str) -> Any:
    from ..models import ModelStore

    return ModelStore.at(home).entry(name)


_ready_cache: dict[Path, tuple[int, list[Any]]] = {}


def _ready_models(home: Path) -> list[Any]:
    """The store's ready models, listed again only when its manifest changed (a call costs a
    ``stat``, not a listing of the whole catalog)."""
    from ..models import ModelStore

    store = ModelStore.at(home)
    try:
        stamp = (store.folder / "manifest.json").stat().st_mtime_ns
    except FileNotFoundError:
        return []
    cached = _ready_cache.get(store.folder)
    if cached is None or cached[0] != stamp:
        cached = _ready_cache[store.folder] = (
            stamp,
            [info for info in store.list() if info.status == "ready"],
        )
    return cached[1]


_present: dict[str, Path] = {}
_present_lock = threading.Lock()


def localize(arguments: list[Any], spec: CallSpec) -> list[Any]:
    """``arguments`` with the kernel's model paths replaced by this worker's (see above)."""
    from ..engine import data_home

    if not spec.models or Path(spec.kernel_home) == data_home():
        return arguments
    if spec.mirror:  # the kernel's mirror, unless this worker has its own
        os.environ.setdefault("IPYJOBS_MODEL_MIRROR", spec.mirror)
    with _present_lock:  # one download at a time per process; others wait for its result
        mapping = {path: _make_present(path, ref) for path, ref in spec.models.items()}

    def swap(value: Any) -> Any:
        if isinstance(value, Path):
            return mapping.get(str(value), value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {
                f.name: mapping[str(v)]
                for f in dataclasses.fields(value)
                if isinstance(v := getattr(value, f.name), Path) and str(v) in mapping
            }
            return dataclasses.replace(value, **changes) if changes else value
        return value

    return [swap(value) for value in arguments]


def _make_present(path: str, ref: dict[str, Any]) -> Path:
    known = _present.get(path)
    if known is not None:
        return known
    import anyio

    from ..engine import data_home
    from ..models import ModelEntry, ModelStore

    store = ModelStore.at(data_home())

    def entry_of(fields: dict[str, Any]) -> ModelEntry:
        entry = ModelEntry(**{**fields, "aliases": tuple(fields.get("aliases", ())),
                              "files": tuple(fields.get("files", ()))})  # fmt: skip
        # a user's own entry is registered here too (its converted twin comes with it)
        return store.register(entry) if entry.custom and not entry.converted_from else entry

    for fields in ref.get("sources", []):
        entry_of(fields)
    ready = []
    for fields in ref["entries"]:
        entry = entry_of(fields)
        if entry.converted_from:
            entry = store.entry(entry.id)
        path_here = store.ready_path(entry)
        if path_here is None:
            path_here = Path(anyio.run(_make, entry.id, str(store.folder.parent)))
        ready.append((entry, path_here))
    entry, first = ready[0]
    result = store.family_folder(entry.family) if ref["family"] else first
    _present[path] = result
    return result


async def _make(entry_id: str, home: str) -> str:
    """Download one model (or convert it from its downloaded source, for a faster-whisper
    model) in this worker with a private, store-less engine."""
    from ..engine import JobManager
    from ..models import ConvertModel, DownloadModel, ModelStore

    converted = ModelStore.at(home).entry(entry_id).converted_from is not None
    job = ConvertModel(entry_id, home) if converted else DownloadModel(entry_id, home)
    async with JobManager(home, persist=False) as manager:
        return str(await manager.dispatch(job))
