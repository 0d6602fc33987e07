"""Running the ``tesseract`` program: finding it, checking inputs, and one interruptible run.

The OCR job calls the binary itself (rather than ``pytesseract.image_to_string``) so that every
output format comes from one run, and so that a cancel can kill the process: :func:`run` goes
through :func:`.children.run`, which kills (and reaps) the process on cancel and makes it die
with the kernel.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from . import children
from .causes import FileFailed, check_space, tesseract_cause

#: Output formats, each a config file in the tessdata folder's ``configs/``.
FORMATS = ("txt", "hocr", "tsv", "pdf")

#: The first bytes of the image formats Leptonica (tesseract's image library) reads.
_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"\xff\xd8\xff",  # JPEG
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"BM",  # BMP
    b"GIF87a",
    b"GIF89a",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",  # JPEG 2000
    b"\xff\x4f\xff\x51",  # JPEG 2000 codestream
    b"P1",  # PNM: P1 to P7
    b"P2",
    b"P3",
    b"P4",
    b"P5",
    b"P6",
    b"P7",
)


class TesseractNotFound(RuntimeError):
    """The ``tesseract`` program cannot be run; the message says how to install it."""


def tesseract_cmd() -> str:
    """The command pytesseract is configured with (``pytesseract.pytesseract.tesseract_cmd``)."""
    import pytesseract

    return pytesseract.pytesseract.tesseract_cmd


def tesseract_version() -> str:
    """The version of the tesseract program, or :class:`TesseractNotFound` naming the fix."""
    try:
        import pytesseract
    except ImportError as exc:
        raise TesseractNotFound(
            "pytesseract is not installed: pip install 'ipyjobs[ocr]' (or pytesseract Pillow)"
        ) from exc
    command = pytesseract.pytesseract.tesseract_cmd
    try:
        return str(pytesseract.get_tesseract_version())
    except (pytesseract.TesseractNotFoundError, SystemExit) as exc:
        # pytesseract raises SystemExit for a program whose version it cannot parse.
        raise TesseractNotFound(
            f"the tesseract program ({command!r}) was not found or does not run. Install it "
            "(Debian/Ubuntu: apt-get install tesseract-ocr; macOS: brew install tesseract), "
            "or set pytesseract.pytesseract.tesseract_cmd to its full path."
        ) from exc


def is_image(path: Path) -> bool:
    """Whether ``path`` starts like an image file. Tesseract reads any other file as a list of
    image paths, one a line, so a text file named ``.png`` must not reach it."""
    with open(path, "rb") as file:
        head = file.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return head.startswith(_SIGNATURES)


def page_count(path: Path) -> int:
    """Pages in an image: the frames of a TIFF (tesseract reads them all), else 1."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return 1
    try:
        from PIL import Image

        with Image.open(path) as image:
            return max(1, getattr(image, "n_frames", 1))
    except Exception:  # unreadable: tesseract will say why
        return 1


def command(
    image: Path,
    base: Path,
    *,
    tessdata: Path,
    languages: str,
    formats: Sequence[str],
    psm: int | None = None,
    oem: int | None = None,
    dpi: int | None = None,
    text_only_pdf: bool = False,
) -> list[str]:
    """``tesseract <image> <base> --tessdata-dir D -l L [--psm N] [--oem N] [--dpi N]
    <formats...>``: writes ``<base>.<format>`` for each format. ``text_only_pdf``: the PDF holds
    the invisible text alone (a layer for an existing page), not the image."""
    args = [tesseract_cmd(), str(image), str(base), "--tessdata-dir", str(tessdata)]
    args += ["-l", languages]
    for option, value in (("--psm", psm), ("--oem", oem), ("--dpi", dpi)):
        if value is not None:
            args += [option, str(value)]
    if text_only_pdf:
        args += ["-c", "textonly_pdf=1"]
    return [*args, *formats]


#: Below this OSD confidence a page is left as it is (a page with little text guesses).
ORIENTATION_CONFIDENCE = 3.0


def orientation(image: Path, tessdata: Path, dpi: int | None = None) -> int:
    """How many degrees clockwise the picture must turn for its text to stand upright (0, 90,
    180 or 270), by tesseract's orientation detection (``osd`` data). 0 when the page has too
    little text to tell or the guess is weak. Cancel: as :func:`run`."""
    args = [tesseract_cmd(), str(image), "stdout", "--tessdata-dir", str(tessdata)]
    args += ["--psm", "0", "-l", "osd"]
    if dpi is not None:
        args += ["--dpi", str(dpi)]
    process = run(args)
    found = dict(re.findall(r"^(Rotate|Orientation confidence):\s*([\d.]+)", process.stdout, re.M))
    if process.returncode or "Rotate" not in found:
        return 0  # "Too few characters", a blank page: nothing to turn
    if float(found.get("Orientation confidence", 0)) < ORIENTATION_CONFIDENCE:
        return 0
    return int(found["Rotate"]) % 360


def run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run tesseract with one OpenMP thread (parallelism comes from running several files) and
    return the finished process, its output decoded. Cancel kills it (``JobCancelled``); a
    pause does not stop a running process: the job pauses between files."""
    process = children.run(args, env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    return subprocess.CompletedProcess(
        process.args,
        process.returncode,
        process.stdout.decode("utf-8", "replace"),
        process.stderr.decode("utf-8", "replace"),
    )


def run_checked(args: Sequence[str], outputs: Sequence[Path], folder: Path, name: str) -> None:
    """:func:`run`, then :class:`~.causes.FileFailed` with tesseract's meaningful line if it
    failed or did not write every one of ``outputs``. ``folder`` (where it wrote) is checked
    for a full disk when tesseract gives no reason; ``name`` names the input in messages."""
    process = run(args)
    missing = [path.name for path in outputs if not path.is_file()]
    if process.returncode or missing:
        cause = tesseract_cause(process.stderr)
        if cause is None:  # only chatter: a full disk says nothing else
            check_space(folder, f"outputs of {name}")
            cause = f"tesseract failed (exit status {process.returncode}) without a reason"
        if not process.returncode:
            cause = f"tesseract wrote no {', '.join(missing)}: {cause}"
        raise FileFailed(cause, process.stderr)
