"""What speech and OCR jobs share: finding input files, naming outputs, writing them atomically,
and knowing which files are already done (so an interrupted job resumes where it stopped)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def discover(inputs: str | Path | Iterable[str | Path], extensions: Iterable[str]) -> list[Path]:
    """The files to process: a file, a list, or folders searched recursively for
    ``extensions`` (case-insensitive), sorted, without duplicates.

    Files named explicitly are kept whatever their extension (the job reports them if they
    cannot be read); a path that does not exist is an error naming it.
    """
    wanted = {e.lower().lstrip(".") for e in extensions}
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                if candidate.is_file() and candidate.suffix.lower().lstrip(".") in wanted:
                    found[candidate] = None
        elif path.is_file():
            found[path] = None
        else:
            raise FileNotFoundError(f"input {str(path)!r} does not exist")
    return list(found)


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


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path next to ``target``; on success it replaces ``target`` at once, on error
    it is removed. A half-written output never appears under its real name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of what determines the outputs (model, options, formats)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class DoneMarker:
    """A small JSON file written after a file's outputs: with the same fingerprint and all
    outputs present, the file is skipped next time."""

    stem: Path
    fingerprint: str
    outputs: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.stem.with_name(self.stem.name + ".ipyjobs.json")

    def is_done(self) -> bool:
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        return record.get("fingerprint") == self.fingerprint and all(
            Path(p).exists() for p in record.get("outputs", [])
        )

    def write(self, outputs: Iterable[Path], details: dict[str, Any]) -> None:
        self.outputs = [str(p) for p in outputs]
        with atomic_path(self.path) as tmp:
            tmp.write_text(
                json.dumps({"fingerprint": self.fingerprint, "outputs": self.outputs, **details})
            )
