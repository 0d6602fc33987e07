"""Models: the catalog, the on-disk store, the download job and ``ensure_model``."""

from .catalog import FAMILIES, TESSDATA_BEST, TESSDATA_FAST, WHISPER, ModelEntry
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
    "TESSDATA_BEST",
    "TESSDATA_FAST",
    "WHISPER",
    "ChecksumMismatch",
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
    "ensure_model",
    "ensure_tessdata",
]
