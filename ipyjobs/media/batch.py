"""What speech and OCR jobs share: checking their parameters, finding input files (reporting
what cannot be read), naming outputs, and running each file's work in isolation (:mod:`.outputs`)
so that an interrupted job resumes where it stopped and one bad file never stops a batch."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ..engine import JobContext
from ..engine.handle import error_text
from .executor import Executor, ExecutorLost
from .outputs import FileOutcome

#: How often discovery reports progress, in seconds.
PROGRESS_INTERVAL = 0.25

PathLike = str | os.PathLike[str]


class NoInputFiles(ValueError):
    """No file to process was found in the inputs; the message says where it looked."""


def as_inputs(inputs: PathLike | Iterable[PathLike]) -> str | list[str]:
    """A job's ``inputs`` as plain strings (``pathlib.Path`` accepted): one path or a list. An
    empty list is refused at once, the same way for every job."""
    if isinstance(inputs, (str, os.PathLike)):
        return os.fspath(inputs)
    paths = [os.fspath(p) for p in inputs]
    if not paths:
        raise ValueError("inputs is empty: give a file or a folder, or a list of them")
    return paths


def input_list(inputs: str | Sequence[str]) -> list[str]:
    return [inputs] if isinstance(inputs, str) else list(inputs)


def as_names(
    value: str | Iterable[str], what: str, valid: Sequence[str] | None = None
) -> tuple[str, ...]:
    """Names such as formats or extensions: one string is one name (``"txt"``, not ``t, x``),
    lower-cased, without a leading dot, without duplicates. With ``valid``, unknown names are
    refused with the valid ones listed."""
    items = [value] if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(str(v).strip().lower().lstrip(".") for v in items))
    if not names or "" in names:
        raise ValueError(f"{what} must name at least one value, got {value!r}")
    unknown = [n for n in names if valid is not None and n not in valid]
    if unknown:
        raise ValueError(
            f"unknown {what} {', '.join(map(repr, unknown))}: valid {what} are "
            f"{', '.join(valid or ())}"
        )
    return names


@dataclass
class Discovery:
    """The files found (sorted per input, no duplicates) and what could not be read."""

    files: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    """``(path, why)`` for each folder or file that could not be read."""
    folders: int = 0


def _reason(exc: OSError, what: str) -> str:
    return f"cannot read this {what}: {exc.strerror or error_text(exc)}"


def discover(
    inputs: PathLike | Iterable[PathLike],
    extensions: Iterable[str],
    on_progress: Callable[[int, int, Path], None] | None = None,
) -> Discovery:
    """The files to process: a file, a list, or folders searched recursively for
    ``extensions`` (case-insensitive); links are followed, each folder visited once.

    Files named explicitly are kept whatever their extension (the job reports them if they
    cannot be read); a path that does not exist is an error naming it. A folder that cannot be
    listed, a broken link or an unreadable file is recorded in ``unreadable`` and the search
    goes on. ``on_progress(files found, folders listed, current folder)`` is called now and
    then (every ``PROGRESS_INTERVAL`` seconds at most) on big trees.
    """
    wanted = {e.lower().lstrip(".") for e in extensions}
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    result = Discovery()
    found: dict[Path, None] = {}
    seen: set[tuple[int, int]] = set()
    reported = time.monotonic()
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_dir():
            if not os.path.lexists(path):
                raise FileNotFoundError(f"input {str(path)!r} does not exist")
            if os.access(path, os.R_OK):
                found[path] = None
            else:
                result.unreadable.append((path, "cannot read this file: permission denied"))
            continue
        in_root: list[Path] = []
        stack = [path]
        while stack:
            folder = stack.pop()
            try:
                info = folder.stat()
                if (info.st_dev, info.st_ino) in seen:
                    continue  # a link back up the tree, or a folder given twice
                seen.add((info.st_dev, info.st_ino))
                with os.scandir(folder) as listing:
                    entries = list(listing)
            except OSError as exc:
                result.unreadable.append((folder, _reason(exc, "folder")))
                continue
            result.folders += 1
            for entry in entries:
                try:
                    if entry.is_dir():
                        stack.append(Path(entry.path))
                        continue
                except OSError as exc:
                    result.unreadable.append((Path(entry.path), _reason(exc, "entry")))
                    continue
                if os.path.splitext(entry.name)[1].lower().lstrip(".") not in wanted:
                    continue
                file = Path(entry.path)
                if not entry.is_file():
                    if entry.is_symlink():
                        result.unreadable.append((file, "broken link: no such target"))
                elif os.access(file, os.R_OK):
                    in_root.append(file)
                else:
                    result.unreadable.append((file, "cannot read this file: permission denied"))
            if on_progress is not None and time.monotonic() - reported >= PROGRESS_INTERVAL:
                reported = time.monotonic()
                on_progress(len(found) + len(in_root), result.folders, folder)
        found.update(dict.fromkeys(sorted(in_root)))
    result.files = list(found)
    return result


async def find_inputs(
    ctx: JobContext,
    inputs: str | Sequence[str],
    extensions: Sequence[str],
    kind: str,
) -> list[Path]:
    """Discovery in a worker thread, with progress on big trees: each folder or file that
    cannot be read becomes an item error naming it; no file at all is :class:`NoInputFiles`.
    ``kind`` names the files looked for ("audio or video", "image")."""

    def report(found: int, folders: int, current: Path) -> None:
        ctx.progress(found, None, item=f"finding files: {found} in {folders} folders ({current})")

    result = await ctx.run_sync(discover, input_list(inputs), extensions, report)
    for path, why in result.unreadable:
        ctx.item_failed(path, why)
    if not result.files:
        where = ", ".join(map(repr, input_list(inputs)))
        unread = len(result.unreadable)
        raise NoInputFiles(
            f"no {kind} files in {where} (looked for "
            f"{', '.join('.' + e for e in extensions)} in {result.folders} folders)"
            + (f"; {unread} folders or files could not be read (item errors)" if unread else "")
        )
    ctx.log(f"found {len(result.files)} {kind} files in {result.folders} folders")
    return result.files


def _output_stem(file: Path, output_dir: Path | None, roots: list[Path]) -> Path:
    if output_dir is None:
        return file.with_suffix("")
    for root in roots:
        if root.is_dir() and file.is_relative_to(root):
            return output_dir / file.relative_to(root).with_suffix("")
    return output_dir / file.stem


def output_stems(
    files: Sequence[Path], output_dir: Path | None, inputs: str | Path | Iterable[str | Path]
) -> list[Path]:
    """Where each file's outputs go, without suffix: next to the file, or in ``output_dir``
    keeping the file's path below the input folder it was found in.

    Stems are unique: ``scan.png`` and ``scan.tif`` in one folder would both write
    ``scan.txt``, so colliding stems keep the file's suffix (``scan.png.txt``); equal names
    from different inputs into one ``output_dir`` get ``-2``, ``-3``. Build output names as
    ``stem.with_name(stem.name + ".txt")``: ``with_suffix`` would eat a dotted stem.
    """
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    roots = [Path(p).expanduser() for p in paths]
    stems = [_output_stem(f, output_dir, roots) for f in files]
    counts = Counter(stems)
    used: set[Path] = set()
    unique = []
    for file, stem in zip(files, stems, strict=True):
        if counts[stem] > 1:
            stem = stem.with_name(f"{stem.name}{file.suffix.lower()}")
        candidate, n = stem, 2
        while candidate in used:
            candidate, n = stem.with_name(f"{stem.name}-{n}"), n + 1
        used.add(candidate)
        unique.append(candidate)
    return unique


def fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of what determines the outputs (model, options, formats)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def run_file(
    ctx: JobContext,
    executor: Executor,
    source: Path,
    fn: Callable[..., FileOutcome],
    *args: Any,
) -> FileOutcome:
    """``executor.run(ctx, fn, *args)`` for the file ``source`` (``fn`` is
    :func:`.outputs.process_file` or calls it), then the job's record of it: a failure is an
    item error with its one-line cause and the full text in the log; a file found done by
    another job is logged. What the executor raises fails this file only (a worker lost),
    except when the executor itself is lost (:class:`ExecutorLost`): that fails the job, the
    files done so far kept. A cancel passes through."""
    try:
        outcome = await executor.run(ctx, fn, *args)
    except ExecutorLost:
        raise
    except Exception as exc:  # a cancel (``Cancelled``, a BaseException) passes through
        outcome = FileOutcome("failed", error=error_text(exc))
    if outcome.status == "failed":
        ctx.item_failed(source, outcome.error or "failed")
        if outcome.log:
            ctx.log(f"{source}: the full error:\n{outcome.log}")
    elif outcome.status == "skipped":
        ctx.log(f"{source}: done by another job meanwhile: skipped")
    elif outcome.status == "busy":
        ctx.log(f"{source}: another job is working on it; it is looked at again at the end")
    return outcome


async def take_slot(ctx: JobContext, slots: anyio.Semaphore, size: int) -> None:
    """Wait for one of ``size`` free workers, then honour cancel and pause. While paused,
    first let every running file finish, so that a paused job has no work running."""
    await slots.acquire()
    while ctx.token.paused and not ctx.token.cancelled:
        held = 1
        try:
            while held < size:
                await slots.acquire()
                held += 1
            await ctx.checkpoint()
        finally:
            for _ in range(held - 1):
                slots.release()
    await ctx.checkpoint()


class FilesProgress:
    """A job's progress in files while several are under way: the files finished plus the
    fractions of those running (reported from worker threads, hence the lock)."""

    def __init__(self, ctx: JobContext, total: int) -> None:
        self._ctx = ctx
        self._total = total
        self._finished = 0
        self._running: dict[int, float] = {}
        self._lock = threading.Lock()

    def started(self, index: int, name: str) -> None:
        with self._lock:
            self._running[index] = 0.0
        self._report(item=name)

    def advanced(self, index: int, fraction: float) -> None:
        with self._lock:
            if index in self._running:
                self._running[index] = min(fraction, 1.0)
        self._report()

    def finished(self, index: int | None = None, name: str | None = None) -> None:
        """File ``index`` ended (or, without an index, one was found done already)."""
        with self._lock:
            if index is not None:
                del self._running[index]
            self._finished += 1
        self._report(item=name)

    def _report(self, item: str | None = None) -> None:
        with self._lock:
            done = self._finished + sum(self._running.values())
        self._ctx.progress(done, self._total, item=item, unit="files")
