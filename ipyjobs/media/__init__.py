"""Media jobs: OCR of images (Tesseract); speech-to-text comes next.

Each job module is imported here so that its kind is registered for ``manager.resume``.
"""

from .executor import Executor, LocalExecutor
from .ocr import OcrJob

__all__ = [
    "Executor",
    "LocalExecutor",
    "OcrJob",
]
