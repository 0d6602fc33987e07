"""Page images with known text, rendered by Pillow in real TrueType fonts (Debian's
fonts-dejavu-core and fonts-liberation), and the character error rate of OCR output.

Shared by ``tests/media/test_ocr.py`` and ``bench/ocr.py``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

_FONT_FOLDERS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/truetype/liberation"),
    Path("/usr/share/fonts/truetype/liberation2"),
)
#: Fonts tried, by file name; the pages cycle through the ones installed.
FONT_FILES = (
    "DejaVuSerif.ttf",
    "LiberationSans-Regular.ttf",
    "DejaVuSans.ttf",
    "LiberationSerif-Regular.ttf",
    "LiberationMono-Regular.ttf",
)
SIZES = (28, 34, 30, 40, 26)
FORMATS = ("png", "jpg", "tif")

SENTENCES = (
    "Every morning the harbour master counted the boats that had returned overnight.",
    "When the fog lifted, the fishermen carried crates of herring up to the market hall.",
    "The old library kept its rarest maps in a cold room behind a heavy oak door.",
    "Our train left the station at seven and reached the coast shortly after noon.",
    "She planted tomatoes, beans and sunflowers along the southern wall of the garden.",
    "A committee of twelve members will review the budget before the end of March.",
    "The bridge was closed for repairs, so the bakery van took the longer road.",
    "Children gathered around the fire while their grandmother told stories of winter.",
    "Please return the signed contract together with a copy of your passport.",
    "The laboratory measured the temperature of the river every hour for a year.",
    "Heavy rain flooded the lower fields and the farmers moved their sheep uphill.",
    "In the evening the square filled with musicians, dancers and families.",
    "The museum opens at ten on weekdays and stays open late on Thursdays.",
    "Engineers replaced the worn cables of the lift during the quiet summer months.",
    "He wrote three letters to the council about the broken street lamps.",
    "The recipe needs two cups of flour, one egg and a pinch of salt.",
    "Volunteers cleaned the beach and collected forty bags of plastic waste.",
    "The orchestra rehearsed the new symphony twice before the opening night.",
    "Snow covered the mountain pass, and the hikers waited in the shelter.",
    "Our neighbours painted their front door a bright shade of yellow.",
    "The ferry to the island runs four times a day during the holiday season.",
    "A small black cat slept on the warm windowsill of the village shop.",
    "The students presented their research on solar energy to the whole school.",
    "After the storm, the lighthouse keeper checked every window and lamp.",
    "The new bicycle lane connects the university with the central station.",
    "Fresh bread, cheese and apples were sold at the market every Saturday.",
    "The director thanked the staff for their patience during the long move.",
    "Migrating geese crossed the valley in long lines early in October.",
    "The clock tower has struck the hours for more than two hundred years.",
    "Please keep your ticket until the end of the journey for inspection.",
    "The river carried timber from the forests down to the busy sawmills.",
    "Visitors may borrow umbrellas from the reception desk free of charge.",
    "The council agreed to plant a hundred oak trees along the new avenue.",
    "A quiet wind moved through the tall grass behind the farmhouse.",
    "The captain ordered the crew to lower the sails before the harbour.",
    "Each chapter of the report ends with a short summary and a table.",
)


@dataclass(frozen=True)
class Page:
    text: str
    """What the page says, one rendered line per line."""
    image: Image.Image
    font: str
    size: int
    words: tuple[tuple[str, tuple[int, int, int, int]], ...] = ()
    """Each word drawn and its box in pixels (left, top, right, bottom)."""


def fonts() -> list[Path]:
    """The installed fonts of :data:`FONT_FILES`, in that order."""
    found = []
    for name in FONT_FILES:
        path = next((f / name for f in _FONT_FOLDERS if (f / name).is_file()), None)
        if path is not None:
            found.append(path)
    return found


def render(text: str, font_file: Path, size: int, width: int = 1240, margin: int = 80) -> Page:
    """Black text on white, wrapped to ``width`` at word boundaries."""
    font = ImageFont.truetype(str(font_file), size)
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and measure.textlength(candidate, font=font) <= width - 2 * margin:
            lines[-1] = candidate
        else:
            lines.append(word)
    step = int(size * 1.6)
    image = Image.new("L", (width, 2 * margin + step * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    words = []
    for i, line in enumerate(lines):
        top = margin + i * step
        draw.text((margin, top), line, font=font, fill=0)
        x = margin
        for word in line.split(" "):
            words.append((word, draw.textbbox((x, top), word, font=font)))
            x += draw.textlength(word + " ", font=font)
    return Page("\n".join(lines), image, font_file.stem, size, tuple(words))


def pages(count: int, sentences: int = 3, seed: int = 7) -> list[Page]:
    """``count`` pages of ``sentences`` sentences each, cycling through fonts and sizes."""
    installed = fonts()
    if not installed:
        raise RuntimeError("no fonts: apt-get install fonts-dejavu-core fonts-liberation")
    chooser = random.Random(seed)
    return [
        render(
            " ".join(chooser.sample(SENTENCES, sentences)),
            installed[i % len(installed)],
            SIZES[i % len(SIZES)],
        )
        for i in range(count)
    ]


def save(page_list: Iterable[Page], folder: Path, prefix: str = "page") -> dict[Path, str]:
    """One file per page as png, jpg or tif in turn; returns file -> expected text."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for i, page in enumerate(page_list):
        path = folder / f"{prefix}{i + 1:02d}.{FORMATS[i % len(FORMATS)]}"
        options = {"quality": 92} if path.suffix == ".jpg" else {}
        page.image.save(path, **options)
        expected[path] = page.text
    return expected


def save_tiff(page_list: list[Page], path: Path) -> dict[Path, str]:
    """All pages in one multi-page TIFF; returns {path: the pages' text}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    first, *rest = (p.image for p in page_list)
    first.save(path, save_all=True, append_images=rest, compression="tiff_lzw")
    return {path: "\n".join(p.text for p in page_list)}


def normalise(text: str) -> str:
    """Whitespace runs (line and page breaks too) as one space."""
    return " ".join(text.split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions of characters."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(pairs: Iterable[tuple[str, str]]) -> float:
    """Character error rate over (reference, recognised) pairs, whitespace normalised."""
    errors = length = 0
    for reference, recognised in pairs:
        reference, recognised = normalise(reference), normalise(recognised)
        errors += edit_distance(reference, recognised)
        length += len(reference)
    return errors / max(1, length)
