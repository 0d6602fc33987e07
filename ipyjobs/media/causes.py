"""One line saying why one file failed, and the full text for the job's log.

A batch over 800 files records each failure as an item error; a user reads those in a panel, so
each must be one line naming the real cause: ffmpeg's reason rather than its version banner,
tesseract's error rather than its chatter ("Estimating resolution as 340"), "no space left on
/mnt (…): N bytes free" rather than a bare ``OSError``. What the program printed in full, or
the traceback of an unexpected error, goes to the job's log instead (:func:`describe`).
"""

from __future__ import annotations

import errno
import os
import re
import traceback
from pathlib import Path

from ..engine.diskspace import NoSpaceLeft, is_no_space, no_space_left
from ..engine.handle import error_text

#: Longest item error kept; the full text is in the log.
LIMIT = 400


class FileFailed(RuntimeError):
    """One file could not be processed. ``str()`` is the one-line cause; ``output`` is the full
    text behind it, such as everything a program printed on stderr (for the job's log)."""

    def __init__(self, cause: str, output: str = "") -> None:
        super().__init__(cause)
        self.output = output


def one_line(text: str, limit: int = LIMIT) -> str:
    """``text`` with its lines joined by spaces and cut to ``limit`` characters."""
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_FFMPEG_CONTEXT = re.compile(r"^\[(\w+) @ 0x[0-9a-f]+\]\s*")
#: ffmpeg's last words that say nothing by themselves.
_FFMPEG_GENERIC = ("Conversion failed!", "Error opening output file", "Error opening output files")
#: Causes a user would not recognise, said plainly (ffmpeg's words follow).
_FFMPEG_PLAIN = {
    "does not contain any stream": "no audio stream",
    "Output file is empty, nothing was encoded": "no audio stream",
}


def ffmpeg_cause(stderr: str, source: str | os.PathLike[str]) -> str:
    """The meaningful line of ffmpeg's stderr about ``source``: its fatal error (the last line
    that is not a generic epilogue), without the input's path, with the last detail line of a
    decoder before it when the fatal one is terse ("Invalid argument")."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    prefix = f"{os.fspath(source)}: "
    fatal, index = "", len(lines)
    for index in range(len(lines) - 1, -1, -1):
        if not lines[index].startswith(_FFMPEG_GENERIC):
            fatal = lines[index].removeprefix(prefix)
            break
    if not fatal:
        return "ffmpeg failed without a message"
    fatal = _FFMPEG_CONTEXT.sub("", fatal)
    for phrase, plain in _FFMPEG_PLAIN.items():
        if phrase in fatal:
            return one_line(f"{plain} (ffmpeg: {fatal})")
    detail = next((line for line in reversed(lines[:index]) if _FFMPEG_CONTEXT.match(line)), None)
    if detail is not None and len(fatal) < 40:
        match = _FFMPEG_CONTEXT.match(detail)
        assert match is not None
        fatal += f" ({match.group(1)}: {detail[match.end() :]})"
    return one_line(fatal)


#: Tesseract's progress chatter and generic last words: never a cause.
_TESSERACT_CHATTER = re.compile(
    r"^(Estimating resolution as|Detected \d+ diacritics|Warning: Invalid resolution|"
    r"Tesseract Open Source OCR Engine|Page \d+|Error during processing\.|"
    r"Too few characters|Empty page!*|OSD:|Warning\b)"
)
_TESSERACT_ERROR = re.compile(r"error|cannot|can't|could not|failed|not found|corrupt", re.I)


def tesseract_cause(stderr: str) -> str | None:
    """The meaningful line of tesseract's stderr, or ``None`` when it printed only chatter
    (then the caller looks for the cause itself, such as a full disk).

    Tesseract's own summary ("Error, cannot read input file x: ...") is plainest, so its last
    one wins; else Leptonica's first error, the root of its chain ("internal png error" before
    "no pix returned"); else the first line that is not chatter."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    meaningful = [line for line in lines if not _TESSERACT_CHATTER.match(line)]
    errors = [line for line in meaningful if _TESSERACT_ERROR.search(line)]
    library = [line for line in errors if line.startswith(("Error in ", "libpng ", "Leptonica"))]
    own = [line for line in errors if line not in library]
    if own:
        return one_line(own[-1])
    leptonica = [line for line in library if line.startswith("Error in ")]
    for candidates in (leptonica, library, meaningful):
        if candidates:
            return one_line(candidates[0])
    return None


def check_space(folder: Path, what: str, probe: int = 64 * 1024) -> None:
    """Raise :class:`NoSpaceLeft` if ``probe`` bytes cannot be written in ``folder``. For a
    program that failed without a reason: tesseract on a full disk says only "Error during
    processing." (its chatter before that is no cause either)."""
    path = folder / ".ipyjobs-space-probe"
    try:
        with open(path, "wb") as file:
            file.write(bytes(probe))
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        if is_no_space(exc):
            raise no_space_left(folder, what) from exc
    finally:
        path.unlink(missing_ok=True)


def name_too_long(exc: OSError) -> str:
    """ENAMETOOLONG with the name, its length and what the file system allows."""
    named = [Path(os.fsdecode(n)) for n in (exc.filename, exc.filename2) if n]
    path = max(named, key=lambda p: len(os.fsencode(p.name)), default=Path())  # rename: either
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    size = len(os.fsencode(path.name))
    return (
        f"file name too long for this file system: {path.name!r} is {size} bytes, the "
        f"limit in {path.parent} is {limit}. Shorten the input's name or choose output_dir "
        "elsewhere."
    )


def describe(exc: Exception, folder: Path, what: str) -> tuple[str, str | None]:
    """Why one file failed: ``(one line for the item error, full text for the log or None)``.

    ``folder`` is where the file's outputs go (named when the disk is full); ``what`` names the
    file's outputs ("outputs of a.wav").
    """
    if isinstance(exc, NoSpaceLeft):
        return str(exc), None
    if is_no_space(exc):
        where = Path(getattr(exc, "filename", None) or folder)
        return str(no_space_left(where if where.is_dir() else where.parent, what)), error_text(exc)
    if isinstance(exc, FileFailed):
        return one_line(str(exc)), exc.output or None
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return name_too_long(exc), None
    trace = "".join(traceback.format_exception(exc))
    return one_line(error_text(exc)), None if isinstance(exc, OSError) else trace
