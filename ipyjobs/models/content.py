"""Is what the server sent the model? Checks against what the catalog knows, and messages that
say what was sent instead.

Why: a wrong URL, an expired link or a login wall often answers ``200 OK`` with an HTML page.
Kept as a model it is "ready" until torch refuses to load it, and a hash mismatch alone reads
like a network glitch ("try again"). So a response is rejected as soon as it is clearly not the
model: an HTML content type, or a ``Content-Length`` other than the known size, before a byte is
stored; and after the body, a size other than the known one, or HTML that came under another
content type. The message says what the server sent (kind, type, size, the page's title).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx

from .errors import NotTheModel

if TYPE_CHECKING:
    from .download import Transfer

#: Body bytes read from an HTML answer to find its title (a page, never a model: small).
_PEEK = 16 << 10
#: Body bytes looked at after the download to recognise an HTML page.
SNIFF = 512
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_HTML_START = re.compile(rb"\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)\b", re.I | re.S)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)


def looks_like_html(start: bytes) -> bool:
    """Whether a body beginning with ``start`` is an HTML page (a BOM is allowed)."""
    return _HTML_START.match(start.removeprefix(b"\xef\xbb\xbf")) is not None


async def check_answer(response: httpx.Response, transfer: Transfer) -> None:
    """Reject the first answer of a download if its headers show it is not the model: an HTML
    page, or another size than the known one. Raises :class:`NotTheModel`."""
    content_type = response.headers.get("content-type", "")
    length = response.headers.get("content-length", "")
    size = int(length) if length.isdigit() else None
    if content_type.split(";")[0].strip().lower() in _HTML_TYPES:
        title = _title(await _peek(response))
        raise not_the_model(transfer, "an HTML page", content_type, size, title)
    if size is not None and transfer.size is not None and size != transfer.size:
        raise not_the_model(transfer, "a file of another size", content_type, size)


def check_body(transfer: Transfer, start: bytes, size: int) -> None:
    """Reject a received body (its first bytes and size) that is not the model."""
    if looks_like_html(start):
        raise not_the_model(transfer, "an HTML page", None, size, _title(start))
    if transfer.size is not None and size != transfer.size:
        raise not_the_model(transfer, "a file of another size", None, size)


def not_the_model(
    transfer: Transfer, kind: str, content_type: str | None, size: int | None, title: str = ""
) -> NotTheModel:
    """The error saying what was sent: ``the server sent an HTML page (text/html, 1,234 bytes,
    titled 'Sign in') instead of the model ...``."""
    facts = [content_type] if content_type else []
    facts.append(f"{size:,} bytes" if size is not None else "length not given")
    if title:
        facts.append(f"titled {title!r}")
    known = f" of {transfer.size:,} bytes" if transfer.size is not None else ""
    hint = (
        "a login or error page? Open the URL in a browser, or fix the entry's URL"
        if kind == "an HTML page"
        else "the URL may point to another file, or the entry's size is wrong"
    )
    return NotTheModel(
        f"could not download {transfer.label} from {transfer.url}: the server sent {kind} "
        f"({', '.join(facts)}) instead of the model{known}: {hint}. Nothing was kept."
    )


async def _peek(response: httpx.Response) -> bytes:
    """Up to ``_PEEK`` bytes of the body (never more: it might be large after all)."""
    start = b""
    try:
        async for chunk in response.aiter_raw():
            start += chunk
            if len(start) >= _PEEK:
                break
    except httpx.HTTPError:
        pass  # the title is a nicety; the answer is rejected either way
    return start[:_PEEK]


def _title(start: bytes) -> str:
    match = _TITLE.search(start)
    if match is None:
        return ""
    text = " ".join(match.group(1).decode("utf-8", "replace").split())
    return text[:80]
