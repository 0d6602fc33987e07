"""HTTP plumbing for downloads: the client, its timeouts, response headers, error messages."""

from __future__ import annotations

import email.utils
import functools
import os
import random
import ssl
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import anyio
import httpx

from .body import read_bodies_directly

if TYPE_CHECKING:
    from .download import RetryPolicy


class Retry(Exception):
    """A failed request worth another one; ``retry_after`` is the server's wish, in seconds."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class StartOver(Exception):
    """The server did not send the bytes asked for: the file changed, or ranges are ignored."""


RETRYABLE = (
    Retry,
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


def new_client(policy: RetryPolicy) -> httpx.AsyncClient:
    """A client for one download: redirects followed, proxy variables honoured (httpx's
    ``trust_env``), timeouts from ``policy``, bodies read straight from the socket."""
    verify = _ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    client = httpx.AsyncClient(follow_redirects=True, timeout=timeout_for(policy), verify=verify)
    read_bodies_directly(client)
    return client


@functools.lru_cache(maxsize=4)
def _ssl_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """httpx's default context (it reads these variables), made once: loading the CA bundle
    takes tens of milliseconds."""
    return httpx.create_ssl_context()


def timeout_for(policy: RetryPolicy) -> httpx.Timeout:
    """Per-request timeouts: a read timeout is exactly "no byte for ``stall_timeout``"."""
    stall = policy.stall_timeout
    return httpx.Timeout(connect=policy.connect_timeout, read=stall, write=stall, pool=None)


async def close(response: httpx.Response) -> None:
    with anyio.CancelScope(shield=True):
        await response.aclose()


def content_range(value: str) -> tuple[int | None, int | None, int | None]:
    """``(first, last, total)`` from ``bytes 100-199/1000``; ``None`` where absent or ``*``."""
    unit, _, spec = value.strip().partition(" ")
    span, _, total = spec.partition("/")
    first, _, last = span.partition("-")
    if unit != "bytes" or not first.isdigit() or not last.isdigit():
        return None, None, int(total) if total.isdigit() else None
    return int(first), int(last), int(total) if total.isdigit() else None


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def untrusted_certificate(exc: BaseException) -> bool:
    """Whether a request failed because the server's TLS certificate is not trusted (no retry
    can fix that)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def describe(exc: BaseException, policy: RetryPolicy) -> str:
    """What went wrong with a request, for messages: ``"no data for 30 s (stalled)"``."""
    if untrusted_certificate(exc):
        return (
            f"the server's certificate is not trusted ({exc}). If your network inspects HTTPS "
            "with its own certificate authority, point SSL_CERT_FILE at that authority's "
            "certificate (a PEM file), or set IPYJOBS_MODEL_MIRROR to a mirror you trust"
        )
    if isinstance(exc, httpx.ReadTimeout):
        return f"no data for {policy.stall_timeout:g} s (stalled)"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within {policy.connect_timeout:g} s"
    text = str(exc)
    if isinstance(exc, httpx.HTTPError) or not text:
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text


def human_size(count: float) -> str:
    """``75.6 MB``: decimal units, as download tools show them."""
    units = ("B", "kB", "MB", "GB", "TB")
    step = 0
    while count >= 1000 and step < len(units) - 1:
        count, step = count / 1000, step + 1
    return f"{count:.0f} B" if step == 0 else f"{count:.1f} {units[step]}"


def backoff_delay(policy: RetryPolicy, failures: int, retry_after: float | None) -> float:
    """Seconds before the next attempt: the server's ``Retry-After`` if it sent one, else
    exponential backoff with up to 25 % jitter; at most ``max_backoff`` either way."""
    if retry_after is not None:
        return min(retry_after, policy.max_backoff)
    delay = policy.backoff * 2 ** (failures - 1)
    return min(policy.max_backoff, delay * (1 + random.uniform(0, 0.25)))
