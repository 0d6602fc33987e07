"""Scanned PDFs with known text: pages rendered by Pillow (``pages.py``), some skewed, some
with scanner noise, some turned sideways, saved by Pillow as a PDF of one JPEG per page (what a
scanner writes); plus the checks the tests and ``bench/pdf.py`` share.

Shared by ``tests/media/test_ocr_pdf.py`` and ``bench/pdf.py``.
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from . import pages


@dataclass(frozen=True)
class Scan:
    page: pages.Page
    """The page as rendered, upright."""
    image: Image.Image
    """What the scanner saw: skewed, noisy or turned."""
    turned: int = 0
    """Degrees the page lies turned counterclockwise on the scan (0 or 90)."""
    skew: float = 0.0


def scan(
    page: pages.Page, *, skew: float = 0.0, noise: float = 0.0, turned: int = 0, seed: int = 0
) -> Scan:
    image = page.image
    if skew:
        image = image.rotate(skew, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    if noise:
        chooser = random.Random(seed)
        pixels = image.load()
        for _ in range(int(noise * image.width * image.height)):
            x, y = chooser.randrange(image.width), chooser.randrange(image.height)
            pixels[x, y] = 0 if chooser.random() < 0.5 else 255
    if turned:
        image = image.rotate(turned, expand=True)
    return Scan(page, image, turned, skew)


def scans(
    count: int,
    *,
    sentences: int = 4,
    seed: int = 5,
    skewed: tuple[int, ...] = (),
    noisy: tuple[int, ...] = (),
    turned: tuple[int, ...] = (),
    width: int = 1240,
    size: int | None = None,
) -> list[Scan]:
    """``count`` pages; the indexes in ``skewed``/``noisy``/``turned`` get that treatment."""
    fonts = pages.fonts()
    chooser = random.Random(seed)
    made = []
    for i in range(count):
        text = " ".join(chooser.sample(pages.SENTENCES, sentences))
        page = pages.render(
            text, fonts[i % len(fonts)], size or pages.SIZES[i % 5], width, margin=width // 15
        )
        made.append(
            scan(
                page,
                skew=1.5 if i in skewed else 0.0,
                noise=0.004 if i in noisy else 0.0,
                turned=90 if i in turned else 0,
                seed=i,
            )
        )
    return made


def save_pdf(scanned: list[Scan], path: Path, dpi: int = 150) -> Path:
    """One JPEG page per scan at ``dpi`` (Pillow's PDF writer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    first, *rest = (s.image for s in scanned)
    first.save(path, save_all=True, append_images=rest, resolution=dpi, quality=90)
    return path


def pdftotext(path: Path, page: int | None = None, *options: str) -> str:
    """``pdftotext -raw`` (poppler): the text in the order it is drawn; without ``-raw``
    pdftotext reorders skewed lines into nonsense."""
    pages_ = ["-f", str(page), "-l", str(page)] if page else []
    return subprocess.run(
        ["pdftotext", "-raw", *options, *pages_, str(path), "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
