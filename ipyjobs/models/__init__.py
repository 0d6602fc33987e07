"""Models: the catalog, the on-disk store, the download and conversion jobs, ``ensure_model``
and ``ensure_converted``."""

from .catalog import FAMILIES, FASTER_WHISPER, TESSDATA_BEST, TESSDATA_FAST, WHISPER, ModelEntry
from .convert import ConversionFailed, ConvertModel, ensure_converted
from .ensure import DownloadModel, VerifyModel, ensure_model, ensure_tessdata
from .errors import (
    ChecksumMismatch,
    CorruptStoreFile,
    DownloadError,
    InvalidModelEntry,
    ModelError,
    ModelInUse,
    NotEnoughSpace,
    NotTheModel,
    OfflineError,
    UnknownModel,
)
from .store import ModelInfo, ModelStore

__all__ = [
    "FAMILIES",
    "FASTER_WHISPER",
    "TESSDATA_BEST",
    "TESSDATA_FAST",
    "WHISPER",
    "ChecksumMismatch",
    "ConversionFailed",
    "ConvertModel",
    "CorruptStoreFile",
    "DownloadError",
    "DownloadModel",
    "InvalidModelEntry",
    "ModelEntry",
    "ModelError",
    "ModelInUse",
    "ModelInfo",
    "ModelStore",
    "NotEnoughSpace",
    "NotTheModel",
    "OfflineError",
    "UnknownModel",
    "VerifyModel",
    "ensure_converted",
    "ensure_model",
    "ensure_tessdata",
]
