"""A loopback HTTP/1.1 file server for tests and benchmarks that can misbehave on demand.

Why this exists: the model downloader must cope with what real CDNs and mirrors do — resumable
byte ranges, validators (ETag / Last-Modified / If-Range), throttling (429/503 + Retry-After),
connections that reset or end early, stalls and corrupted bodies. Mocked httpx transports cannot
reproduce socket-level behaviour (a half-sent body, a TCP reset, a read timeout), so this server
speaks real HTTP on 127.0.0.1 and injects faults deterministically, per URL path, in order.

It uses only the standard library. File bodies go out with ``os.sendfile`` in large chunks, so a
1 GB file is served at loopback speed and benchmarks measure the client, not this server. Only the
``wrong_bytes`` fault (and TLS, which must encrypt) touches body bytes in Python.

Every real model host is HTTPS, and some redirect to another host: ``LoopbackServer(tls=ca)``
serves TLS with a certificate from a ``trustme.CA`` (clients trust it through ``SSL_CERT_FILE``,
see :func:`trust`), and ``add_redirect`` answers ``302`` to a URL of another server. A file can
be served with another ``Content-Type`` (an HTML login page) or without ``Content-Length``
(the body then ends when the connection closes).

Typical use::

    with LoopbackServer() as server:
        url = server.add_file("/model.bin", tmp_path / "model.bin")
        server.add_fault("/model.bin", Fault("drop", after_bytes=100_000))
        ...  # download url with the code under test
        assert server.bytes_sent("/model.bin") == expected
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, NamedTuple, get_args
from urllib.parse import urlsplit

try:  # Linux/BSD only; used to let a reset connection deliver its data first (see "drop").
    import fcntl
    import termios

    _TIOCOUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - non-Unix platforms
    _TIOCOUTQ = None

if TYPE_CHECKING:
    import ssl

    import trustme

__all__ = ["Fault", "FaultKind", "LoopbackServer", "RequestRecord", "trust"]

logger = logging.getLogger(__name__)

FaultKind = Literal["drop", "status", "ignore_range", "stall", "short", "wrong_bytes"]
_FAULT_KINDS = frozenset(get_args(FaultKind))

# Bytes per os.sendfile() call: large enough that syscall overhead is negligible at loopback
# speed, small enough that bytes_sent() moves visibly during a long transfer.
_SENDFILE_CHUNK = 8 << 20
# Only wrong_bytes copies through Python; it does not need to be fast, just not silly.
_COPY_CHUNK = 1 << 20
_FLIP = bytes(255 - i for i in range(256))
# How long a "drop" waits for the client to take the bytes already sent before resetting.
_DRAIN_TIMEOUT = 2.0
# How long close() waits for handler threads after it has aborted their connections.
_JOIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class Fault:
    """One misbehaviour to apply to the next request(s) for a path.

    ``after_bytes`` counts body bytes of the response being faulted (so for a 206 it is relative
    to the start of the range), and is clamped to the body length.

    Kinds:

    * ``"drop"`` — send ``after_bytes`` of the body, then abort the connection with a TCP reset
      (``SO_LINGER`` 0), like a network failure. The server first waits (up to 2 s) for the client
      to take the bytes already sent, so on Linux the client reliably receives exactly
      ``after_bytes`` and then gets ``ECONNRESET`` (httpx: ``ReadError``).
    * ``"short"`` — declare the full ``Content-Length`` but send only ``after_bytes``, then close
      cleanly (FIN), like a truncated response (httpx: ``RemoteProtocolError``).
    * ``"status"`` — reply ``status`` (e.g. 500/503/429/408/404) with a short text body and,
      if ``retry_after`` is set, a ``Retry-After`` header (seconds, or an HTTP-date string).
    * ``"ignore_range"`` — reply 200 with the whole file even if ``Range`` was sent, like a
      server or proxy without range support.
    * ``"stall"`` — send ``after_bytes``, go silent for ``seconds`` with the connection open,
      then send the rest normally. Continuing (rather than closing) lets one fault test both
      sides: a client whose read timeout is shorter than the stall fails with a timeout, a more
      patient client still gets a correct body. The wait ends early when the server closes.
    * ``"wrong_bytes"`` — send the right length, but every byte from ``after_bytes`` on is
      inverted (``b ^ 0xFF``), so the SHA-256 differs while sizes and headers look fine.

    ``times`` is how many requests the fault applies to before the next queued fault (or normal
    service) takes over; ``-1`` means forever. Only ``"status"`` faults are consumed by HEAD
    requests; the body faults wait for a GET, so a client's HEAD probe does not use them up.
    """

    kind: FaultKind
    after_bytes: int = 0
    status: int = 503
    retry_after: int | str | None = None
    seconds: float = 0.0
    times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {_FAULT_KINDS}")
        if self.after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        if self.seconds < 0:
            raise ValueError("seconds must be >= 0")
        if self.times == 0 or self.times < -1:
            raise ValueError("times must be a positive count or -1 (forever)")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")


class RequestRecord(NamedTuple):
    """What the server saw and answered for one request, for assertions in tests."""

    method: str
    range: str | None  # raw Range header, if any
    status: int  # status code actually sent
    fault: FaultKind | None  # fault applied to this request, if any
    if_range: str | None  # raw If-Range header, if any


@dataclass
class _QueuedFault:
    fault: Fault
    remaining: int  # -1 = forever


@dataclass
class _Route:
    """Everything the server knows about one URL path; guarded by ``LoopbackServer._lock``."""

    file: Path | None = None
    content_type: str = "application/octet-stream"
    send_length: bool = True
    redirect: str | None = None  # answer 302 with this Location instead of serving a file
    faults: deque[_QueuedFault] = field(default_factory=deque)
    bytes_sent: int = 0
    requests: list[RequestRecord] = field(default_factory=list)


class _RangeNotSatisfiable(Exception):
    """The Range header is valid but selects no byte of the file (answer 416)."""


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range into ``(start, end_exclusive)``.

    Returns None when the header should be ignored (malformed, multi-range or another unit);
    RFC 9110 allows a server to ignore Range and answer 200, which is also what clients must
    tolerate. Raises _RangeNotSatisfiable for a well-formed range outside the file.
    """
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if m is None:
        return None
    first, last = m.groups()
    if not first and not last:
        return None
    if not first:  # suffix range: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _RangeNotSatisfiable
        return max(size - suffix, 0), size
    start = int(first)
    if last and int(last) < start:
        return None  # invalid range-spec: ignore the header
    if start >= size:
        raise _RangeNotSatisfiable
    end = min(int(last) + 1, size) if last else size
    return start, end


def _if_range_matches(value: str, etag: str, last_modified: str) -> bool:
    """Evaluate If-Range: honour the Range only if the client's validator is still current."""
    value = value.strip()
    if value.startswith("W/"):
        return False  # weak validators never match for ranges (RFC 9110 §13.1.5)
    if value.startswith('"'):
        return value == etag
    return value == last_modified


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that can abort its live connections, so close() is fast and sure."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, owner: LoopbackServer, tls: ssl.SSLContext | None) -> None:
        self.owner = owner
        self.tls = tls
        self.stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Thread] = {}
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can take
        # seconds on machines without DNS; we know the name already.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def get_request(self) -> tuple[socket.socket, object]:
        # Wrapped here, in the accepting thread, so the socket registered for abort_connections
        # is the one the handler uses; the handshake happens in the handler's thread.
        request, address = super().get_request()
        if self.tls is not None:
            request = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        return request, address

    def process_request(self, request: socket.socket, client_address: object) -> None:
        # Register the connection before its thread starts, so close() cannot miss it.
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"loopback-http-{client_address}",
            daemon=True,
        )
        with self._conn_lock:
            self._conns[request] = thread
        thread.start()

    def shutdown_request(self, request: socket.socket) -> None:
        with self._conn_lock:
            self._conns.pop(request, None)
        super().shutdown_request(request)

    def abort_connections(self, timeout: float) -> None:
        """Shut down every live connection and wait for their handler threads.

        ``shutdown(SHUT_RDWR)`` wakes a thread blocked in recv() (idle keep-alive) or in
        sendfile() (client not reading) at once; stalls wake through ``stopping``.
        """
        with self._conn_lock:
            conns = list(self._conns.items())
        for conn, _ in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _, thread in conns:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("handler thread %s did not exit on close", thread.name)

    def handle_error(self, request: object, client_address: object) -> None:
        # The default prints a traceback to stderr; clients vanishing is routine here.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            logger.debug("connection from %s ended: %r", client_address, exc)
        else:
            logger.exception("error while handling request from %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """Serves GET/HEAD for registered files, applying the path's queued faults."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers and httpx's pool expect
    disable_nagle_algorithm = True  # headers and body tails must not wait for delayed ACKs

    def setup(self) -> None:
        super().setup()
        # sendfile() below needs a blocking socket even if a test set a default timeout.
        self.connection.settimeout(None)
        if self.server.tls is not None:
            self.connection.do_handshake()  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    # -- request handling ------------------------------------------------------------------

    def _serve(self) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        is_get = self.command == "GET"
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        fault = owner._take_fault(path, self.command)
        fault_kind = fault.kind if fault else None

        def record(status: int) -> None:
            entry = RequestRecord(self.command, range_header, status, fault_kind, if_range)
            owner._record(path, entry)

        if fault is not None and fault.kind == "status":
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            record(fault.status)
            self._send_text(fault.status, "injected fault", headers)
            return

        route = owner._serving(path)
        if route.redirect is not None:
            record(302)
            self._send_text(302, "found", {"Location": route.redirect})
            return
        file = route.file
        try:
            if file is None:
                raise FileNotFoundError(path)
            fd = os.open(file, os.O_RDONLY)
        except FileNotFoundError:
            record(404)
            self._send_text(404, "no such file")
            return

        try:
            st = os.fstat(fd)
            size = st.st_size
            # Strong validator that changes when the file is rewritten or replaced (inode).
            etag = f'"{size:x}-{st.st_mtime_ns:x}-{st.st_ino:x}"'
            last_modified = formatdate(st.st_mtime, usegmt=True)
            span: tuple[int, int] | None = None
            # RFC 9110: Range is only for GET, and If-Range turns it off when stale.
            if (
                is_get
                and range_header is not None
                and fault_kind != "ignore_range"
                and (if_range is None or _if_range_matches(if_range, etag, last_modified))
            ):
                try:
                    span = _parse_range(range_header, size)
                except _RangeNotSatisfiable:
                    record(416)
                    self._send_text(
                        416, "range not satisfiable", {"Content-Range": f"bytes */{size}"}
                    )
                    return
            start, end = span if span is not None else (0, size)
            status = 206 if span is not None else 200

            self.send_response(status)
            self.send_header("Content-Type", route.content_type)
            if route.send_length:
                self.send_header("Content-Length", str(end - start))
            else:  # the body ends when the connection does
                self.send_header("Connection", "close")
                self.close_connection = True
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
            if span is not None:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            record(status)
            self.end_headers()
            if is_get:
                self._send_body(path, fd, start, end - start, fault)
        except OSError as exc:  # client went away, or close() aborted us
            logger.debug("%s %s aborted: %r", self.command, path, exc)
            self.close_connection = True
        finally:
            os.close(fd)

    def _send_text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        """Send a small text response; keeps the connection alive like a real server would."""
        body = b"" if status < 200 or status in (204, 304) else f"{status} {text}\n".encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_body(self, path: str, fd: int, start: int, length: int, fault: Fault | None) -> None:
        """Send ``length`` file bytes from ``start``, shaped by ``fault``."""
        kind = fault.kind if fault else None
        cut = min(fault.after_bytes, length) if fault else length
        if kind in ("drop", "short"):
            self._sendfile(path, fd, start, cut)
            self._close(reset=kind == "drop")
        elif kind == "stall":
            self._sendfile(path, fd, start, cut)
            assert fault is not None
            if self.server.stopping.wait(fault.seconds):
                self._close(reset=False)
                return
            self._sendfile(path, fd, start + cut, length - cut)
        elif kind == "wrong_bytes":
            self._sendfile(path, fd, start, cut)
            self._send_copied(path, fd, start + cut, length - cut, flip=True)
        else:
            self._sendfile(path, fd, start, length)

    def _sendfile(self, path: str, fd: int, offset: int, count: int) -> None:
        """Zero-copy send of ``count`` file bytes from ``offset`` (copied and encrypted for TLS)."""
        if self.server.tls is not None:
            self._send_copied(path, fd, offset, count, flip=False)
            return
        out = self.connection.fileno()
        while count > 0:
            chunk = min(count, _SENDFILE_CHUNK)
            with self._counting(path, chunk) as sent:
                sent[0] = os.sendfile(out, fd, offset, chunk)
            if sent[0] == 0:
                raise OSError(f"{path}: file shrank while being served")
            offset += sent[0]
            count -= sent[0]

    def _send_copied(self, path: str, fd: int, offset: int, count: int, *, flip: bool) -> None:
        """Send ``count`` file bytes from ``offset`` through Python, every bit inverted if
        ``flip``."""
        while count > 0:
            data = os.pread(fd, min(count, _COPY_CHUNK), offset)
            if not data:
                raise OSError(f"{path}: file shrank while being served")
            view = memoryview(data.translate(_FLIP) if flip else data)
            while view:
                with self._counting(path, len(view)) as sent:
                    sent[0] = self.connection.send(view)
                view = view[sent[0] :]
            offset += len(data)
            count -= len(data)

    @contextlib.contextmanager
    def _counting(self, path: str, attempt: int) -> Iterator[list[int]]:
        """Count ``attempt`` bytes before a send, then take back what was not sent.

        Counting first means a client can never have seen a byte the counter lacks, so tests may
        assert ``bytes_sent`` right after their response completes. The body sets ``sent[0]``;
        a send that raises sent nothing (Linux reports partial sends as a short count).
        """
        owner = self.server.owner
        owner._add_bytes(path, attempt)
        sent = [0]
        try:
            yield sent
        finally:
            owner._add_bytes(path, sent[0] - attempt)

    def _close(self, *, reset: bool) -> None:
        """Really close the connection now: FIN (clean) or RST (``reset``)."""
        sock = self.connection
        self.close_connection = True
        if reset:
            self._wait_until_delivered()
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # rfile holds a reference to the socket; the fd (and so the RST) is only released once
        # both are closed. finish()/shutdown_request() tolerate the already-closed socket.
        self.rfile.close()
        sock.close()

    def _wait_until_delivered(self) -> None:
        """Wait until the client has acknowledged everything sent, so a reset loses nothing.

        Without this, SO_LINGER=0 discards bytes still queued on our side and the client would
        see fewer than ``after_bytes`` — a nondeterministic resume offset in tests.
        """
        if _TIOCOUTQ is None:
            return
        deadline = time.monotonic() + _DRAIN_TIMEOUT
        buf = bytearray(4)
        while time.monotonic() < deadline and not self.server.stopping.is_set():
            try:
                fcntl.ioctl(self.connection.fileno(), _TIOCOUTQ, buf)
            except OSError:  # not supported for sockets here, or the client already went
                return
            if struct.unpack("i", buf)[0] == 0:
                return
            time.sleep(0.001)


class LoopbackServer:
    """HTTP/1.1 server on 127.0.0.1 (free port) serving real files with injectable faults,
    over TLS when given a test CA, and redirects to other servers.

    Use it as a context manager (or call ``start()`` / ``close()``). ``close()`` returns quickly
    even while clients are mid-stall or mid-transfer: it ends stalls, aborts live connections
    and joins the handler threads.

    Counters (``bytes_sent``, ``requests``) are per URL path and cover file-body bytes only;
    error and status-fault bodies are not counted. A byte counts once it is handed to the
    kernel (it is counted just before the send call), so by the time a client has read a byte
    it is counted and assertions need no waiting; while a transfer is in flight the count can
    run ahead of what the client has received, by up to the socket buffers plus one chunk.
    """

    def __init__(self, tls: trustme.CA | None = None) -> None:
        """``tls``: serve HTTPS with a certificate for 127.0.0.1 and localhost issued by this
        test CA."""
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}
        context = None
        if tls is not None:
            import ssl

            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self.scheme = "https" if tls is not None else "http"
        self._server = _Server(self, context)
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url_for(self, url_path: str) -> str:
        return self.url + _normalise(url_path)

    def start(self) -> LoopbackServer:
        """Start serving in a background thread (idempotent)."""
        if self._closed:
            raise RuntimeError("server is closed")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.01},  # bounds how long shutdown() waits
                name=f"loopback-http-server-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, end stalls, abort live connections and release the port."""
        if self._closed:
            return
        self._closed = True
        self._server.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.abort_connections(_JOIN_TIMEOUT)
        self._server.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- configuration ---------------------------------------------------------------------

    def add_file(
        self,
        url_path: str,
        file: Path | str,
        *,
        content_type: str = "application/octet-stream",
        send_length: bool = True,
    ) -> str:
        """Serve ``file`` at ``url_path`` and return its full URL.

        The file is opened per request, so rewriting or replacing it between requests changes
        the ETag/Last-Modified the next request sees — handy for "upstream changed" tests.
        ``send_length=False`` leaves out ``Content-Length`` (also of ranges) and closes the
        connection after the body, as some servers and proxies do.
        """
        file = Path(file)
        if not file.is_file():
            raise FileNotFoundError(file)
        with self._lock:
            route = self._route(url_path)
            route.file, route.redirect = file, None
            route.content_type, route.send_length = content_type, send_length
        return self.url_for(url_path)

    def add_redirect(self, url_path: str, location: str) -> str:
        """Answer requests for ``url_path`` with ``302 Found`` to ``location`` (another
        server's URL, as model hosts send their downloads to a CDN); return the URL."""
        with self._lock:
            route = self._route(url_path)
            route.file, route.redirect = None, location
        return self.url_for(url_path)

    def add_fault(self, url_path: str, fault: Fault) -> None:
        """Queue ``fault`` for ``url_path``; queued faults apply in the order added."""
        with self._lock:
            self._route(url_path).faults.append(_QueuedFault(fault, fault.times))

    def clear_faults(self, url_path: str | None = None) -> None:
        """Drop pending faults for one path, or for all paths."""
        with self._lock:
            routes = [self._route(url_path)] if url_path is not None else self._routes.values()
            for route in routes:
                route.faults.clear()

    # -- observation -----------------------------------------------------------------------

    def bytes_sent(self, url_path: str) -> int:
        """File-body bytes sent for ``url_path`` since start or the last ``reset_counters()``."""
        with self._lock:
            return self._route(url_path).bytes_sent

    def requests(self, url_path: str) -> list[RequestRecord]:
        """Requests answered for ``url_path``, oldest first (recorded when headers are sent)."""
        with self._lock:
            return list(self._route(url_path).requests)

    def reset_counters(self) -> None:
        """Zero ``bytes_sent`` and forget ``requests`` for every path (files and faults stay)."""
        with self._lock:
            for route in self._routes.values():
                route.bytes_sent = 0
                route.requests.clear()

    # -- used by the handler threads -------------------------------------------------------

    def _route(self, url_path: str) -> _Route:
        """Return (creating) the route; caller holds ``_lock``."""
        return self._routes.setdefault(_normalise(url_path), _Route())

    def _serving(self, url_path: str) -> _Route:
        """What to serve at ``url_path`` (a copy: the handler reads it without the lock)."""
        with self._lock:
            route = self._routes.get(url_path) or _Route()
            return _Route(route.file, route.content_type, route.send_length, route.redirect)

    def _take_fault(self, url_path: str, method: str) -> Fault | None:
        """Consume one use of the path's current fault, if it applies to ``method``."""
        with self._lock:
            route = self._routes.get(url_path)
            if route is None or not route.faults:
                return None
            queued = route.faults[0]
            if method != "GET" and queued.fault.kind != "status":
                return None
            if queued.remaining > 0:
                queued.remaining -= 1
                if queued.remaining == 0:
                    route.faults.popleft()
            return queued.fault

    def _record(self, url_path: str, record: RequestRecord) -> None:
        with self._lock:
            self._route(url_path).requests.append(record)

    def _add_bytes(self, url_path: str, count: int) -> None:
        with self._lock:
            self._route(url_path).bytes_sent += count


def trust(ca: trustme.CA, folder: Path) -> Path:
    """Write ``ca``'s certificate to ``folder`` as a PEM bundle for ``SSL_CERT_FILE``."""
    bundle = folder / "test-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return bundle


def _normalise(url_path: str) -> str:
    if "?" in url_path or "#" in url_path:
        raise ValueError(f"url_path must be a bare path, got {url_path!r}")
    return url_path if url_path.startswith("/") else "/" + url_path
