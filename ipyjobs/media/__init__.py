"""Media jobs: speech-to-text (openai-whisper) and OCR of images (Tesseract).

Each job module is imported here so that its kind is registered for ``manager.resume``.
"""

from .batch import NoInputFiles
from .causes import FileFailed
from .executor import Executor, LocalExecutor
from .ocr import OcrJob
from .speech import TranscribeJob

__all__ = [
    "Executor",
    "FileFailed",
    "LocalExecutor",
    "NoInputFiles",
    "OcrJob",
    "TranscribeJob",
]
