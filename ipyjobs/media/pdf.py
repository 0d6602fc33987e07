"""PDF pages for OCR: opening a PDF safely, looking at what a page holds, getting its picture for
tesseract, and grafting tesseract's text-only pages onto the original pages.

Reading and writing PDF objects is pikepdf's (qpdf); rendering a page is pypdfium2's (PDFium).
PDFium must not be called from two threads at once, even on different documents, so every
PDFium call here holds :data:`_PDFIUM`. A page that is one scanned image is not rendered at all:
its image is taken out of the file as it is (a JPEG's own bytes, or the decoded pixels written as
an uncompressed TIFF) at its own resolution. Nothing here encodes PNG: that encoder alone cost
more than the OCR of a page.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pikepdf

log = logging.getLogger(__name__)

_PDFIUM = threading.Lock()
#: Text render modes that draw nothing: an OCR layer is written in mode 3.
_INVISIBLE = (3, 7)
_SHOW = ("Tj", "TJ", "'", '"')
_GREY_OR_RGB = ("/DeviceGray", "/DeviceRGB", "/CalGray", "/CalRGB")


class PdfInputError(ValueError):
    """A PDF that cannot be OCRed as it is: the message says why and what to do."""


@contextmanager
def open_pdf(path: Path) -> Iterator[pikepdf.Pdf]:
    """Open a PDF for reading, refusing those the OCR cannot keep faithfully: password-protected,
    encrypted (the output would silently lose the protection), damaged or truncated (qpdf's
    reconstruction can lose pages without a word), and empty ones."""
    try:
        pdf = pikepdf.open(path, attempt_recovery=False)
    except pikepdf.PasswordError:
        raise PdfInputError(
            f"{path.name} is password-protected: save an unprotected copy with its password "
            f"(qpdf --decrypt --password=PASSWORD '{path.name}' unlocked.pdf) and OCR that"
        ) from None
    except pikepdf.PdfError as exc:
        raise PdfInputError(
            f"{path.name} is not a readable PDF (damaged or truncated: {_reason(exc, path)}); "
            f"get a complete copy, or try repairing it with qpdf '{path.name}' repaired.pdf"
        ) from None
    try:
        if pdf.is_encrypted:
            raise PdfInputError(
                f"{path.name} is encrypted (it opens without a password, but its encryption and "
                f"permissions would not survive): decrypt it first with qpdf --decrypt "
                f"'{path.name}' decrypted.pdf"
            )
        if len(pdf.pages) == 0:
            raise PdfInputError(f"{path.name} has no pages: there is nothing to OCR")
        yield pdf
    finally:
        pdf.close()


def _reason(exc: Exception, path: Path) -> str:
    return str(exc).replace(f"{path}: ", "").strip() or type(exc).__name__


def page_count(path: Path) -> int:
    """The number of pages, or :class:`PdfInputError` saying what is wrong with the file."""
    with open_pdf(path) as pdf:
        return len(pdf.pages)


def _with_render_mode(owner: pikepdf.Object, mode: int) -> Iterator[tuple[Any, str, int]]:
    """Each instruction of ``owner``'s content, its operator, and the text render mode in force
    after it (``q``/``Q`` save and restore it, ``Tr`` sets it); ``mode`` is the one at the start."""
    stack: list[int] = []
    for instruction in pikepdf.parse_content_stream(owner):
        op = str(instruction.operator)
        if op == "q":
            stack.append(mode)
        elif op == "Q":
            mode = stack.pop() if stack else 0
        elif op == "Tr":
            mode = int(instruction.operands[0])
        yield instruction, op, mode


def _text_use(owner: pikepdf.Object, resources: pikepdf.Object, mode: int, seen: set) -> set[str]:
    """Which text a content stream (and the forms it draws) shows: ``visible``/``invisible``."""
    found: set[str] = set()
    for instruction, op, now in _with_render_mode(owner, mode):
        if op in _SHOW:
            found.add("invisible" if now in _INVISIBLE else "visible")
        elif op == "Do":
            form = _form(resources, instruction.operands[0])
            if form is not None and form.objgen not in seen:
                seen.add(form.objgen)
                found |= _text_use(form, form.get("/Resources", resources), now, seen)
    return found


def _form(resources: pikepdf.Object, name: pikepdf.Object) -> pikepdf.Object | None:
    xobjects = resources.get("/XObject") if resources is not None else None
    xobject = xobjects.get(str(name)) if xobjects is not None else None
    if xobject is not None and xobject.get("/Subtype") == pikepdf.Name.Form:
        return xobject
    return None


def text_use(page: pikepdf.Page) -> set[str]:
    """``{"visible", "invisible"}`` or part of it: whether the page shows text a reader sees
    (born-digital text) and text drawn invisibly (an earlier OCR layer)."""
    return _text_use(page.obj, page.obj.get("/Resources", pikepdf.Dictionary()), 0, set())


def _strip(owner: pikepdf.Object, resources: pikepdf.Object, pdf: pikepdf.Pdf) -> bytes:
    """``owner``'s content without the text it shows invisibly (forms are rewritten in place)."""
    kept: list[Any] = []
    for instruction, op, mode in _with_render_mode(owner, 0):
        operands = instruction.operands
        if op in _SHOW and mode in _INVISIBLE:
            # ' and " also move to the next line (and " sets spacing): keep those parts.
            if op == "'":
                kept.append(pikepdf.ContentStreamInstruction([], pikepdf.Operator("T*")))
            elif op == '"':
                kept.append(pikepdf.ContentStreamInstruction([operands[0]], pikepdf.Operator("Tw")))
                kept.append(pikepdf.ContentStreamInstruction([operands[1]], pikepdf.Operator("Tc")))
                kept.append(pikepdf.ContentStreamInstruction([], pikepdf.Operator("T*")))
            continue
        elif op == "Do":
            form = _form(resources, operands[0])
            if form is not None:
                form.write(_strip(form, form.get("/Resources", resources), pdf))
        kept.append(instruction)
    return pikepdf.unparse_content_stream(kept)


def strip_invisible_text(pdf: pikepdf.Pdf, page: pikepdf.Page) -> None:
    """Remove an earlier OCR layer (text drawn in render mode 3 or 7); visible text stays."""
    resources = page.obj.get("/Resources", pikepdf.Dictionary())
    page.obj.Contents = pdf.make_stream(_strip(page.obj, resources, pdf))


def page_text(path: Path, index: int) -> str:
    """The text a PDF page already has, as PDFium reads it (born-digital pages)."""
    import pypdfium2

    with _PDFIUM:
        document = pypdfium2.PdfDocument(path)
        try:
            textpage = document[index].get_textpage()
            return textpage.get_text_range().replace("\r\n", "\n")
        finally:
            document.close()


@dataclass(frozen=True)
class Picture:
    """A page's picture for tesseract: a file and its resolution."""

    path: Path
    dpi: int


def _matrix_product(m: list[float], n: list[float]) -> list[float]:
    """``m`` then ``n`` (PDF's row-vector convention: the result is ``m × n``)."""
    a, b, c, d, e, f = m
    p, q, r, s, t, u = n
    return [
        a * p + b * r,
        a * q + b * s,
        c * p + d * r,
        c * q + d * s,
        e * p + f * r + t,
        e * q + f * s + u,
    ]


def scanned_image(page: pikepdf.Page) -> tuple[pikepdf.Object, float] | None:
    """The page's one image and its resolution (dpi), when the page is nothing but that image
    drawn upright over the whole visible page: then the image itself is the exact page."""
    ctm, stack = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0], []
    drawn: list[tuple[pikepdf.Object, list[float]]] = []
    resources = page.obj.get("/Resources", pikepdf.Dictionary())
    for instruction in pikepdf.parse_content_stream(page.obj):
        operands, op = instruction.operands, str(instruction.operator)
        if op == "q":
            stack.append(ctm)
        elif op == "Q":
            ctm = stack.pop() if stack else ctm
        elif op == "cm":
            ctm = _matrix_product([float(v) for v in operands], ctm)
        elif op == "Do" and not drawn:
            xobjects = resources.get("/XObject")
            image = xobjects.get(str(operands[0])) if xobjects is not None else None
            if image is None or image.get("/Subtype") != pikepdf.Name.Image:
                return None
            drawn.append((image, ctm))
        else:
            return None
    if len(drawn) != 1:
        return None
    image, (a, b, c, d, e, f) = drawn[0]
    x0, y0, x1, y1 = (float(v) for v in page.cropbox)
    tolerance = max(1.0, 0.005 * max(x1 - x0, y1 - y0))
    if b or c or a <= 0 or d <= 0:
        return None
    if max(abs(e - x0), abs(f - y0), abs(e + a - x1), abs(f + d - y1)) > tolerance:
        return None
    if any(key in image for key in ("/SMask", "/Mask", "/Decode")) or image.get("/ImageMask"):
        return None
    space = image.get("/ColorSpace")
    if isinstance(space, pikepdf.Array) and space and space[0] == pikepdf.Name.ICCBased:
        if int(space[1].get("/N", 0)) not in (1, 3):
            return None
    elif str(space) not in _GREY_OR_RGB:
        return None
    if int(image.get("/BitsPerComponent", 0)) not in (1, 8):
        return None
    dpi_x, dpi_y = int(image.Width) * 72 / a, int(image.Height) * 72 / d
    if abs(dpi_x - dpi_y) > 0.01 * dpi_x:
        return None  # stretched: the text layer would still fit, but tesseract's sizes not
    return image, dpi_x


def extract(image: pikepdf.Object, folder: Path, dpi: int) -> Path | None:
    """The image as a file tesseract reads without loss: a JPEG's own bytes, else the decoded
    pixels as an uncompressed TIFF. ``None`` if pikepdf cannot decode it (JBIG2 without
    jbig2dec, say): the page is rendered instead."""
    filters = image.get("/Filter")
    if filters == pikepdf.Name.DCTDecode and "/DecodeParms" not in image:
        path = folder / "page.jpg"
        path.write_bytes(image.read_raw_bytes())
        return path
    try:
        picture = pikepdf.PdfImage(cast(pikepdf.Stream, image)).as_pil_image()
    except Exception as exc:  # an encoding pikepdf/Pillow cannot decode
        log.debug("cannot extract the page image (%s): rendering the page", exc)
        return None
    if picture.mode not in ("1", "L", "RGB"):
        picture = picture.convert("RGB")
    return save_tiff(picture, folder / "page.tif", dpi)


def save_tiff(picture: object, path: Path, dpi: int) -> Path:
    """An uncompressed TIFF (writing it is a copy of the pixels) with its resolution."""
    picture.save(path, format="TIFF", dpi=(dpi, dpi))  # type: ignore[attr-defined]
    return path


def render(path: Path, index: int, dpi: int, rotation: int, folder: Path, *, colour: bool) -> Path:
    """Render a page as shown (its ``/Rotate`` applied) turned ``rotation`` degrees clockwise
    further, at ``dpi``, into an uncompressed TIFF. Grey unless ``colour``: OCR needs no colour
    and grey pixels are a third of the work."""
    import pypdfium2

    with _PDFIUM:
        document = pypdfium2.PdfDocument(path)
        try:
            bitmap = document[index].render(scale=dpi / 72, rotation=rotation, grayscale=not colour)
            picture = bitmap.to_pil()
        finally:
            document.close()
    if not colour:
        picture = picture.convert("L")
    return save_tiff(picture, folder / "page.tif", dpi)


def placement(box: list[float], rotation: int, width: float, height: float) -> list[float]:
    """The matrix that puts a ``width`` × ``height`` picture of the page as it is shown when
    turned ``rotation`` degrees clockwise onto the page's own (unturned) ``box``."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    # Where the shown picture's lower-left corner, its x and its y axis fall on the page.
    origin, u_axis, v_axis = {
        0: ((x0, y0), (w, 0.0), (0.0, h)),
        90: ((x1, y0), (0.0, h), (-w, 0.0)),
        180: ((x1, y1), (-w, 0.0), (0.0, -h)),
        270: ((x0, y1), (0.0, -h), (w, 0.0)),
    }[rotation % 360]
    return [
        u_axis[0] / width,
        u_axis[1] / width,
        v_axis[0] / height,
        v_axis[1] / height,
        origin[0],
        origin[1],
    ]


def _number(value: float) -> Decimal:
    return Decimal(f"{value:.6f}")


def _draw(
    pdf: pikepdf.Pdf, page: pikepdf.Page, xobject: pikepdf.Object, matrix: list[float], prefix: str
) -> None:
    name = page.add_resource(xobject, pikepdf.Name.XObject, prefix=prefix)
    numbers = " ".join(str(_number(v)) for v in matrix)
    page.contents_add(pdf.make_stream(b"q\n"), prepend=True)
    page.contents_add(pdf.make_stream(f"\nQ q {numbers} cm {name} Do Q\n".encode()))


@dataclass(frozen=True)
class Layer:
    """What to do to one page of the original in the searchable PDF."""

    index: int
    text_pdf: Path | None
    """tesseract's text-only PDF of the page (``None``: the page stays as it is)."""
    rotation: int = 0
    """The page's new ``/Rotate``: the orientation its picture was OCRed in."""
    strip: bool = False
    """Remove the page's earlier OCR layer first."""
    raster: Path | None = None
    """Replace the page's content by this picture (JPEG) of it (``mode="force"``)."""


def graft(source: Path, layers: list[Layer], target: Path) -> None:
    """Write ``source`` to ``target`` with each layer's invisible text placed over its page.

    The original content streams and images are kept byte for byte (only wrapped in ``q``/``Q``
    and followed by the text layer's form), so the file grows by the text alone.
    """
    with open_pdf(source) as pdf:
        fonts: dict[str, pikepdf.Object] = {}  # one copy of tesseract's font for all pages
        for layer in layers:
            if layer.text_pdf is None:
                continue
            page = pdf.pages[layer.index]
            box = [float(v) for v in page.cropbox]
            if layer.raster is not None:
                _replace_with_picture(pdf, page, layer.raster, box, layer.rotation)
            elif layer.strip:
                strip_invisible_text(pdf, page)
            with pikepdf.open(layer.text_pdf) as text:
                text_page = text.pages[0]
                _, _, width, height = (float(v) for v in text_page.mediabox)
                form = pdf.copy_foreign(text_page.as_form_xobject())
            _share_fonts(form, fonts)
            _draw(pdf, page, form, placement(box, layer.rotation, width, height), "OCR")
            page.obj.Rotate = layer.rotation
        pdf.save(target)


def _share_fonts(form: pikepdf.Object, fonts: dict[str, pikepdf.Object]) -> None:
    """Point the form's fonts at the first copy of the same font (by name): every text-only
    page from tesseract carries the same small glyphless font."""
    used = form.get("/Resources", pikepdf.Dictionary()).get("/Font")
    if used is None:
        return
    for key in list(used.keys()):
        name = str(used[key].get("/BaseFont", key))
        if name in fonts:
            used[key] = fonts[name]
        else:
            fonts[name] = used[key]


def _replace_with_picture(
    pdf: pikepdf.Pdf, page: pikepdf.Page, picture: Path, box: list[float], rotation: int
) -> None:
    from PIL import Image

    with Image.open(picture) as shown:
        width, height, mode = shown.width, shown.height, shown.mode
    image = pdf.make_stream(
        picture.read_bytes(),
        Type=pikepdf.Name.XObject,
        Subtype=pikepdf.Name.Image,
        Width=width,
        Height=height,
        ColorSpace=pikepdf.Name.DeviceGray if mode == "L" else pikepdf.Name.DeviceRGB,
        BitsPerComponent=8,
        Filter=pikepdf.Name.DCTDecode,
    )
    page.obj.Contents = pdf.make_stream(b"")
    page.obj.Resources = pikepdf.Dictionary()
    _draw(pdf, page, image, placement(box, rotation, 1.0, 1.0), "Im")
