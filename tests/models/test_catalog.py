"""The catalog and the bad input it must refuse clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipyjobs.models import InvalidModelEntry, ModelEntry, ModelStore, UnknownModel
from ipyjobs.models.catalog import TESSERACT_LANGUAGES, Catalog

WHISPER_NAMES = [
    "tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium",
    "large-v1", "large-v2", "large-v3", "large", "large-v3-turbo", "turbo",
]  # fmt: skip


def test_every_whisper_name_resolves_to_a_pinned_file() -> None:
    catalog = Catalog()
    entries = {name: catalog.get(name) for name in WHISPER_NAMES}
    assert entries["large"] is entries["large-v3"]
    assert entries["turbo"] is entries["large-v3-turbo"]
    assert len({e.id for e in entries.values()}) == 12
    for entry in entries.values():
        assert entry.url.endswith(f"/{entry.sha256}/{entry.file}")
        assert entry.size > 70_000_000
    assert entries["tiny.en"].sha256.startswith("d3dd57d3")
    assert entries["tiny.en"].size == 75571315
    assert not entries["turbo"].size_exact


def test_tesseract_languages_in_both_variants() -> None:
    catalog = Catalog()
    assert {"eng", "deu", "chi_sim", "osd"} <= set(TESSERACT_LANGUAGES)
    fast, best = catalog.tessdata("eng"), catalog.tessdata("eng", "best")
    assert fast.sha256 == "7d4322bd2a7749724879683fc3912cb542f19906c83bcc1a52132556427170b2"
    assert (fast.size, best.size) == (4113088, 15400601)
    assert best.sha256 is None  # recorded at the first download
    assert "tessdata_best/main/eng.traineddata" in best.url
    assert catalog.get("tesseract:deu").id == "tessdata_fast/deu"
    assert len([e for e in catalog if e.family == "tessdata_best"]) == len(TESSERACT_LANGUAGES)


def test_an_unknown_name_lists_close_matches() -> None:
    with pytest.raises(UnknownModel) as error:
        Catalog().get("tiny-en")
    message = str(error.value)
    assert "unknown model 'tiny-en'" in message
    assert "Did you mean: tiny.en" in message
    assert "large-v3-turbo" in message  # the valid ones are listed


def entry(**changes: object) -> ModelEntry:
    fields = {
        "family": "whisper",
        "name": "mine",
        "file": "mine.pt",
        "url": "https://models.example.org/mine.pt",
        "sha256": "a" * 64,
        "size": 1000,
    }
    return ModelEntry(**{**fields, **changes})


@pytest.mark.parametrize("file", ["../evil.pt", "sub/evil.pt", "..", ".hidden.pt", "/etc/passwd"])
def test_a_file_name_that_leaves_the_folder_is_refused(file: str) -> None:
    with pytest.raises(InvalidModelEntry, match="plain file name"):
        entry(file=file)


@pytest.mark.parametrize("sha256", ["abc", "A" * 64, "g" * 64, "a" * 63])
def test_a_malformed_sha256_is_refused(sha256: str) -> None:
    with pytest.raises(InvalidModelEntry, match="64 lowercase hex digits"):
        entry(sha256=sha256)


def test_other_bad_fields_are_named() -> None:
    with pytest.raises(InvalidModelEntry, match="url must be an http"):
        entry(url="ftp://example.org/mine.pt")
    with pytest.raises(InvalidModelEntry, match="size must be a positive"):
        entry(size=-1)
    with pytest.raises(InvalidModelEntry, match=r"\.traineddata"):
        entry(family="tessdata_fast", file="eng.bin")
    with pytest.raises(InvalidModelEntry, match="built-in"):
        Catalog().register(entry(name="tiny.en", file="tiny.en.pt"))


def test_a_malformed_mirror_url_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPYJOBS_MODEL_MIRROR", "models.example.org/ipyjobs")
    with pytest.raises(InvalidModelEntry, match="IPYJOBS_MODEL_MIRROR="):
        Catalog().get("tiny").source_url  # noqa: B018


def test_the_mirror_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPYJOBS_MODEL_MIRROR", "http://127.0.0.1:9/models/")
    catalog = Catalog()
    assert catalog.get("tiny").source_url == "http://127.0.0.1:9/models/whisper/tiny.pt"
    assert (
        catalog.tessdata("deu", "best").source_url
        == "http://127.0.0.1:9/models/tessdata_best/deu.traineddata"
    )


def test_registered_entries_last_across_sessions(ipyjobs_home: Path) -> None:
    ModelStore(ipyjobs_home).register(entry(aliases=("my-model",)))
    later = ModelStore(ipyjobs_home)
    assert later.entry("my-model").id == "whisper/mine"
    assert later.entry("whisper/mine").custom
