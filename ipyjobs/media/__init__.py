"""Media jobs: speech-to-text (openai-whisper) and OCR of images (Tesseract).

Each job module is imported here so that its kind is registered for ``manager.resume``.
"""

from .executor import Executor, LocalExecutor
from .ocr import OcrJob
from .speech import TranscribeJob

__all__ = [
    "Executor",
    "LocalExecutor",
    "OcrJob",
    "TranscribeJob",
]
