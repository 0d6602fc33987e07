"""The model catalog: Whisper checkpoints and Tesseract language data, plus users' own entries.

A model has one id, ``<family>/<name>`` (``whisper/tiny.en``, ``tessdata_fast/eng``). Lookups
also take a Whisper name or alias alone (``"turbo"``) and ``tesseract:<lang>`` for the fast
variant. Users add entries with :func:`register`; they are kept in the data folder so a resumed
download finds them again in a new session.

Every Whisper entry also has a faster-whisper twin, ``faster-whisper/<name>``: a folder of files
(:data:`CONVERTED_FILES`) made on this machine from the verified checkpoint by the
``ConvertModel`` job, so one trusted download serves both engines.

Mirror layout (``IPYJOBS_MODEL_MIRROR=BASE``): ``BASE/<family>/<file>``, for example
``BASE/whisper/tiny.en.pt`` and ``BASE/tessdata_fast/eng.traineddata``.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .diskio import replace_text
from .errors import CorruptStoreFile, InvalidModelEntry, UnknownModel
from .settings import mirror

WHISPER = "whisper"
TESSDATA_FAST = "tessdata_fast"
TESSDATA_BEST = "tessdata_best"
FASTER_WHISPER = "faster-whisper"
FAMILIES = (WHISPER, TESSDATA_FAST, TESSDATA_BEST, FASTER_WHISPER)
#: The files of a converted faster-whisper model folder (``model.bin`` int8, ``model.float.bin``
#: the checkpoint's float weights: see :mod:`.ct2_whisper`). A folder recorded with other files
#: (an older conversion) is not ready, so it is converted again.
CONVERTED_FILES = ("model.bin", "model.float.bin", "config.json", "vocabulary.json",
                   "tokenizer.json", "preprocessor_config.json")  # fmt: skip

_SHA256 = re.compile(r"[0-9a-f]{64}")
_WHISPER_URL = "https://openaipublic.azureedge.net/main/whisper/models/{sha256}/{file}"
_TESSDATA_URL = "https://raw.githubusercontent.com/tesseract-ocr/{repo}/main/{file}"


@dataclass(frozen=True)
class ModelEntry:
    """One downloadable model file, or a folder of files made from another entry.

    ``sha256`` is ``None`` where upstream publishes no hash: the hash of the first download is
    then recorded and later checks compare against it. ``size_exact`` is false for a size known
    only roughly (the download's Content-Length is then what counts).

    A folder model has ``files`` (the names inside the folder ``file``); ``converted_from`` is
    the id of the entry it is converted from on this machine (it then has no URL). Each file's
    SHA-256 is recorded when it is made, and the model is ready only while all of them match.
    """

    family: str
    name: str
    file: str
    url: str
    sha256: str | None = None
    size: int | None = None
    size_exact: bool = True
    aliases: tuple[str, ...] = ()
    custom: bool = field(default=False, compare=False)
    files: tuple[str, ...] = ()
    converted_from: str | None = None

    def __post_init__(self) -> None:
        validate(self)

    @property
    def id(self) -> str:
        return f"{self.family}/{self.name}"

    @property
    def label(self) -> str:
        """``whisper model tiny.en``, ``Tesseract eng (fast)``: for titles and messages."""
        if self.family == WHISPER:
            return f"whisper model {self.name}"
        if self.family == FASTER_WHISPER:
            return f"faster-whisper model {self.name}"
        return f"Tesseract {self.name} ({self.family.removeprefix('tessdata_')})"

    @property
    def source_url(self) -> str:
        """Where to download from: the mirror when one is set, else the entry's own URL."""
        base = mirror()
        return f"{base}/{self.family}/{self.file}" if base else self.url


def _plain_name(file: str) -> bool:
    return not (
        not file
        or file in (".", "..")
        or file.startswith(".")
        or any(sep in file for sep in ("/", "\\", "\0"))
        or Path(file).name != file
    )


def validate(entry: ModelEntry) -> None:
    """Raise ``InvalidModelEntry`` naming the bad field and what it should be."""
    where = f"model entry {entry.family}/{entry.name}"
    if entry.family not in FAMILIES:
        raise InvalidModelEntry(f"{where}: family must be one of {', '.join(FAMILIES)}")
    if not entry.name or "/" in entry.name or entry.name.strip() != entry.name:
        raise InvalidModelEntry(f"{where}: the name must be non-empty, without '/' or spaces")
    for file in (entry.file, *entry.files):
        if not _plain_name(file):
            raise InvalidModelEntry(
                f"{where}: file {file!r} must be a plain file name (no folders, no '..', not "
                "hidden): models are stored inside the ipyjobs model folder"
            )
    if entry.converted_from is not None:
        if not entry.files:
            raise InvalidModelEntry(f"{where}: a converted model must list its files")
        return  # made on this machine: no URL, hash or size to check
    file = entry.file
    if entry.family in (TESSDATA_FAST, TESSDATA_BEST) and not file.endswith(".traineddata"):
        raise InvalidModelEntry(f"{where}: Tesseract data files end in .traineddata, got {file!r}")
    if entry.sha256 is not None and not _SHA256.fullmatch(entry.sha256):
        raise InvalidModelEntry(
            f"{where}: sha256 must be 64 lowercase hex digits, got {entry.sha256!r}"
        )
    parts = urlsplit(entry.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidModelEntry(
            f"{where}: url must be an http(s) URL with a host, got {entry.url!r}"
        )
    if entry.size is not None and (not isinstance(entry.size, int) or entry.size <= 0):
        raise InvalidModelEntry(
            f"{where}: size must be a positive number of bytes, got {entry.size!r}"
        )


def _whisper(name: str, sha256: str, size: int, *aliases: str, exact: bool = True) -> ModelEntry:
    file = f"{name}.pt"
    url = _WHISPER_URL.format(sha256=sha256, file=file)
    return ModelEntry(WHISPER, name, file, url, sha256, size, exact, aliases)


_WHISPER_MODELS = [
    _whisper(
        "tiny.en", "d3dd57d32accea0b295c96e26691aa14d8822fac7d9d27d5dc00b4ca2826dd03", 75571315
    ),
    _whisper("tiny", "65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9", 75572083),
    _whisper(
        "base.en", "25a8566e1d0c1e2231d1c762132cd20e0f96a85d16145c3a00adf5d1ac670ead", 145261783
    ),
    _whisper("base", "ed3a0b6b1c0edf879ad9b11b1af5a0e6ab5db9205f891f668f8b0e6c6326e34e", 145262807),
    _whisper(
        "small.en", "f953ad0fd29cacd07d5a9eda5624af0f6bcf2258be67c92b79389873d91e0872", 483615683
    ),
    _whisper(
        "small", "9ecf779972d90ba49c06d968637d720dd632c55bbf19d441fb42bf17a411e794", 483617219
    ),
    _whisper(
        "medium.en", "d7440d1dc186f76616474e0ff0b3b6b879abc9d1a4926b7adfa41db2d497ab4f", 1528006491
    ),
    _whisper(
        "medium", "345ae4da62f9b3d59415adc60127b97c714f32e89e936602e85993674d08dcb1", 1528008539
    ),
    _whisper(
        "large-v1", "e4b87e7e0bf463eb8e6956e646f1e277e901512310def2c24bf0e11bd3c28e9a", 3086999982
    ),
    _whisper(
        "large-v2", "81f7c96c852ee8fc832187b0132e569d6c3065a3252ed18e56effd0b6a73e524", 3086999982
    ),
    _whisper(
        "large-v3",
        "e5b1a55b89c1367dacf97e3e19bfd829a01529dbfdeefa8caeb59b3f1b81dadb",
        3087371615,
        "large",
    ),
    _whisper(
        "large-v3-turbo",
        "aff26ae408abcba5fbf8813c21e62b0941638c5f6eebfb145be0c9839262a19a",
        1_620_000_000,
        "turbo",
        exact=False,
    ),
]

#: Every language (and ``osd``) in tessdata_fast and tessdata_best.
TESSERACT_LANGUAGES = (
    "afr amh ara asm aze aze_cyrl bel ben bod bos bre bul cat ceb ces chi_sim chi_sim_vert "
    "chi_tra chi_tra_vert chr cos cym dan deu div dzo ell eng enm epo est eus fao fas fil fin "
    "fra frk frm fry gla gle glg grc guj hat heb hin hrv hun hye iku ind isl ita ita_old jav jpn "
    "jpn_vert kan kat kat_old kaz khm kir kmr kor kor_vert lao lat lav lit ltz mal mar mkd mlt "
    "mon mri msa mya nep nld nor oci ori osd pan pol por pus que ron rus san sin slk slv snd spa "
    "spa_old sqi srp srp_latn sun swa swe syr tam tat tel tgk tha tir ton tur uig ukr urd uzb "
    "uzb_cyrl vie yid yor"
).split()

#: Sizes and hashes known for certain (tessdata_fast eng equals Debian's tesseract-ocr-eng).
_TESSDATA_KNOWN: dict[tuple[str, str], tuple[int, str | None]] = {
    (TESSDATA_FAST, "eng"): (
        4113088,
        "7d4322bd2a7749724879683fc3912cb542f19906c83bcc1a52132556427170b2",
    ),
    (TESSDATA_BEST, "eng"): (15400601, None),
    (TESSDATA_FAST, "osd"): (10562727, None),
    (TESSDATA_FAST, "deu"): (1525436, None),
    (TESSDATA_FAST, "fra"): (1130365, None),
    (TESSDATA_FAST, "spa"): (2294433, None),
    (TESSDATA_FAST, "por"): (1982756, None),
    (TESSDATA_FAST, "rus"): (3861738, None),
    (TESSDATA_FAST, "chi_sim"): (2469156, None),
    (TESSDATA_FAST, "jpn"): (2471260, None),
    (TESSDATA_FAST, "ara"): (1432056, None),
    (TESSDATA_FAST, "hin"): (1122751, None),
}


def converted(entry: ModelEntry) -> ModelEntry:
    """The faster-whisper twin of a Whisper entry: a folder converted from its checkpoint."""
    return ModelEntry(FASTER_WHISPER, entry.name, entry.name, "", custom=entry.custom,
                      files=CONVERTED_FILES, converted_from=entry.id)  # fmt: skip


def _tessdata(family: str, language: str) -> ModelEntry:
    file = f"{language}.traineddata"
    size, sha256 = _TESSDATA_KNOWN.get((family, language), (None, None))
    url = _TESSDATA_URL.format(repo=family, file=file)
    return ModelEntry(family, language, file, url, sha256, size)


class Catalog:
    """Built-in entries plus registered ones, looked up by id, name or alias."""

    def __init__(self) -> None:
        self._entries: dict[str, ModelEntry] = {}
        self._names: dict[str, str] = {}
        for entry in _WHISPER_MODELS:
            self._add(entry)
        for family in (TESSDATA_FAST, TESSDATA_BEST):
            for language in TESSERACT_LANGUAGES:
                self._add(_tessdata(family, language))

    def _add(self, entry: ModelEntry) -> None:
        self._entries[entry.id] = entry
        self._names[entry.id] = entry.id
        if entry.family == WHISPER:
            for name in (entry.name, *entry.aliases):
                self._names[name] = entry.id
            twin = converted(entry)
            self._entries[twin.id] = twin
            self._names[twin.id] = twin.id
        elif entry.family == TESSDATA_FAST:
            self._names[f"tesseract:{entry.name}"] = entry.id

    def __iter__(self):
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Every name a lookup accepts."""
        return sorted(self._names)

    def get(self, name: str) -> ModelEntry:
        """The entry for an id, Whisper name or alias; ``UnknownModel`` lists close matches."""
        entry_id = self._names.get(name.strip())
        if entry_id is None:
            raise UnknownModel(self._unknown_message(name))
        return self._entries[entry_id]

    def tessdata(self, language: str, variant: str = "fast") -> ModelEntry:
        family = f"tessdata_{variant}"
        if family not in (TESSDATA_FAST, TESSDATA_BEST):
            raise InvalidModelEntry(f"Tesseract variant must be 'fast' or 'best', got {variant!r}")
        return self.get(f"{family}/{language}")

    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._names, n=6, cutoff=0.6)
        whisper = ", ".join(e.name for e in self._entries.values() if e.family == WHISPER)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return (
            f"unknown model {name!r}.{hint} Whisper models: {whisper}, and the aliases large "
            "and turbo. Tesseract data: 'tessdata_fast/<lang>' or 'tessdata_best/<lang>' with a "
            "language code such as eng or deu. Your own files: "
            "ModelStore.at().register(ModelEntry(...))."
        )

    def register(self, entry: ModelEntry) -> ModelEntry:
        """Add or replace a user's entry (built-in ids cannot be replaced)."""
        existing = self._entries.get(entry.id)
        if existing is not None and not existing.custom:
            raise InvalidModelEntry(
                f"{entry.id} is a built-in model; register yours under another name"
            )
        if entry.family == WHISPER:
            for name in (entry.name, *entry.aliases):
                other = self._names.get(name)
                if other is not None and other != entry.id:
                    raise InvalidModelEntry(f"the name {name!r} already means {other}")
        entry = ModelEntry(**{**asdict(entry), "custom": True})
        self._add(entry)
        return entry

    def load_custom(self, path: Path) -> None:
        """Register the entries saved in ``path`` (a JSON list), skipping none silently: a file
        that cannot be read so raises ``CorruptStoreFile`` naming it, the fault and the fix."""
        if not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
            if not isinstance(saved, list):
                raise ValueError("it is not a JSON list of entries")
            for fields in saved:
                fields["aliases"] = tuple(fields.get("aliases", ()))
                fields["files"] = tuple(fields.get("files", ()))
                self.register(ModelEntry(**fields))
        except (ValueError, TypeError, AttributeError) as exc:  # JSON, fields, InvalidModelEntry
            raise CorruptStoreFile(
                f"your own model entries in {path} cannot be read ({exc}). Fix the file (a JSON "
                "list of entries as ModelStore.register writes them), or move it away to start "
                "without your own entries; the built-in models do not need it."
            ) from exc

    def save_custom(self, path: Path) -> None:
        custom = [asdict(e) for e in self._entries.values() if e.custom and not e.converted_from]
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_text(path, json.dumps(custom, indent=1))
