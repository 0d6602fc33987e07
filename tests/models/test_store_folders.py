"""Folder models in the store (a converted faster-whisper model is several files): each file
verified, ready only while all are, partial and delete as for one file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ipyjobs.models import FASTER_WHISPER, InvalidModelEntry, ModelEntry, ModelStore
from ipyjobs.models.catalog import CONVERTED_FILES

pytestmark = pytest.mark.anyio


def make_folder(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    hashes = {}
    for i, name in enumerate(CONVERTED_FILES):
        data = f"{name} {i}\n".encode() * (i + 1)
        (folder / name).write_bytes(data)
        hashes[name] = hashlib.sha256(data).hexdigest()
    return hashes


@pytest.fixture
def converted(store: ModelStore) -> tuple[ModelEntry, Path]:
    entry = store.entry("faster-whisper/tiny.en")
    target = store.target(entry)
    store.record_verified_folder(entry, target, make_folder(target), "converted")
    return entry, target


def test_every_whisper_model_has_a_converted_twin(store: ModelStore) -> None:
    entry = store.entry("faster-whisper/tiny.en")
    assert entry.family == FASTER_WHISPER and entry.converted_from == "whisper/tiny.en"
    assert entry.files == CONVERTED_FILES and "converted" not in entry.label
    assert store.entry("tiny.en").family == "whisper"  # plain names still mean the checkpoint
    assert store.info(entry).status == "missing"


def test_ready_while_every_file_is_unchanged(
    store: ModelStore, converted: tuple[ModelEntry, Path]
) -> None:
    entry, target = converted
    info = store.info(entry)
    assert (info.status, info.path, info.source) == ("ready", target, "converted")
    assert info.size == sum((target / n).stat().st_size for n in CONVERTED_FILES)
    (target / "tokenizer.json").write_text("changed")
    assert store.info(entry).status == "missing"
    assert store.ready_path(entry) is None


def test_a_missing_file_is_not_ready(store: ModelStore, converted: tuple[ModelEntry, Path]) -> None:
    entry, target = converted
    (target / "vocabulary.json").unlink()
    assert store.ready_path(entry) is None


async def test_verify_rehashes_each_file_and_deletes_a_corrupt_folder(
    store: ModelStore, converted: tuple[ModelEntry, Path]
) -> None:
    entry, target = converted
    assert await store.verify(entry)
    model_bin = target / "model.bin"
    stat = model_bin.stat()
    model_bin.write_bytes(b"X" * stat.st_size)  # same size, same mtime: only a hash sees it
    os.utime(model_bin, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert store.info(entry).status == "ready"
    assert not await store.verify(entry)
    assert not target.exists() and store.info(entry).status == "missing"


def test_a_half_made_folder_is_partial_and_delete_removes_both(
    store: ModelStore, converted: tuple[ModelEntry, Path]
) -> None:
    entry, target = converted
    partial = store.partial_folder(target)
    make_folder(partial)
    (partial / "model.bin").unlink()
    present = sum(p.stat().st_size for p in partial.iterdir())
    size = sum(p.stat().st_size for p in target.iterdir())
    assert store.delete(entry) == size + present
    assert not target.exists() and not partial.exists()
    make_folder(partial)
    info = store.info(entry)
    assert info.status == "partial" and info.present > 0
    store.delete(entry)
    assert store.info(entry).status == "missing"


def test_custom_whisper_entries_get_a_twin_but_the_twin_is_not_saved(
    store: ModelStore, ipyjobs_home: Path
) -> None:
    store.register(ModelEntry("whisper", "mine", "mine.pt", "https://example.org/mine.pt"))
    assert store.entry("faster-whisper/mine").converted_from == "whisper/mine"
    reloaded = ModelStore(ipyjobs_home)
    assert reloaded.entry("faster-whisper/mine").custom
    assert "faster-whisper" not in (ipyjobs_home / "models" / "custom.json").read_text()


def test_folder_files_must_be_plain_names() -> None:
    with pytest.raises(InvalidModelEntry, match="plain file name"):
        ModelEntry(FASTER_WHISPER, "x", "x", "", files=("../model.bin",), converted_from="a/b")
    with pytest.raises(InvalidModelEntry, match="must list its files"):
        ModelEntry(FASTER_WHISPER, "x", "x", "", converted_from="whisper/x")
