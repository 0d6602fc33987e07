"""The worker side of a call sent to a Dask cluster.

A call runs :func:`call` on a worker. There the job's token is a real
:class:`~ipyjobs.engine.InterruptToken`, shared by every call of that job in the worker process,
so ``ipyjobs.current_token().check()`` stays a local flag read. One watcher thread per job and
process keeps it current: it reads the job's ``distributed.Variable`` (``run``, ``pause`` or
``cancel``) every :data:`POLL` seconds (one scheduler round trip per poll, not per check),
sends the callbacks' newest values home (``Worker.log_event`` to the kernel's topic) and tells
the kernel when the job's work here parks for a pause or stops parking.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..engine.errors import Cancelled
from ..engine.token import InterruptToken, _current_token

log = logging.getLogger(__name__)

#: How often a worker reads the job's state and sends callbacks home, in seconds.
POLL = 0.1
#: A callback's newest value is sent at least this often (and always at the end of the call).
SEND_INTERVAL = 0.25


#: What a call that stopped for a cancel returns; the kernel raises ``Cancelled`` for it.
CANCELLED = "ipyjobs:cancelled"


@dataclass(frozen=True)
class CallSpec:
    """What a worker needs to know about the call besides ``fn`` and its arguments."""

    job_id: str
    call_id: str
    variable: str
    """The name of the job's ``distributed.Variable`` holding ``run``/``pause``/``cancel``."""
    topic: str
    """The kernel's event topic (``Client.subscribe_topic``)."""
    callbacks: tuple[int, ...] = ()
    """Positions of ``args`` that are callbacks home."""
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Model paths among the arguments, each with the catalog entries it holds."""
    kernel_home: str = ""
    mirror: str | None = None


class _Relay:
    """A callback on the worker: keeps the newest arguments, sends them home now and then."""

    def __init__(self, send: Callable[[dict], None], call_id: str, position: int) -> None:
        self._send = send
        self._call_id = call_id
        self._position = position
        self._lock = threading.Lock()
        self._pending: tuple | None = None
        self._sent_at = 0.0

    def __call__(self, *args: Any) -> None:
        with self._lock:
            self._pending = args
            due = time.monotonic() - self._sent_at >= SEND_INTERVAL
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            args, self._pending = self._pending, None
            if args is None:
                return
            self._sent_at = time.monotonic()
        self._send({"call": self._call_id, "callback": self._position, "args": list(args)})


class _JobLink:
    """The job as one worker process sees it: its token, its calls' relays, its watcher."""

    def __init__(self, spec: CallSpec) -> None:
        import distributed

        self.job_id = spec.job_id
        self.token = InterruptToken()
        self.users = 0
        self.relays: set[_Relay] = set()
        self._worker = distributed.get_worker()
        self._topic = spec.topic
        self._variable = distributed.Variable(spec.variable, client=distributed.get_client())
        self._parked = False
        self.apply(self._read())  # the first check of the first call sees the current state
        self._thread = threading.Thread(
            target=self._watch, name=f"ipyjobs watcher {spec.job_id}", daemon=True
        )
        self._thread.start()

    def send(self, message: dict) -> None:
        self._worker.log_event(self._topic, {"job": self.job_id, **message})

    def _read(self) -> str:
        try:
            return str(self._variable.get(timeout=5))
        except Exception as exc:  # the scheduler is unreachable: stop rather than run blind
            log.warning(
                "ipyjobs: cannot read the state of job %s (%s): cancelling", self.job_id, exc
            )
            return "cancel"

    def apply(self, state: str) -> None:
        token = self.token
        if state == "cancel" and not token.cancelled:
            token.request_cancel()
        elif state == "pause" and not token.paused:
            token.request_pause()
        elif state == "run" and token.paused:
            token.request_resume()

    def _watch(self) -> None:
        while True:
            time.sleep(POLL)
            with _links_lock:
                if self.users == 0:
                    del _links[self.job_id]
                    return
                relays = list(self.relays)
            self.apply(self._read())
            for relay in relays:
                relay.flush()
            parked = self.token.parked
            if parked != self._parked:
                self._parked = parked
                self.send({"parked": parked, "worker": self._worker.address})


_links: dict[str, _JobLink] = {}
_links_lock = threading.Lock()


def _acquire(spec: CallSpec) -> _JobLink:
    with _links_lock:
        link = _links.get(spec.job_id)
        if link is None:
            link = _links[spec.job_id] = _JobLink(spec)
        link.users += 1
        return link


def call(spec: CallSpec, fn: Callable[..., Any], args: tuple) -> Any:
    """Run ``fn(*args)`` for the job on this worker (what the kernel submits to the cluster).

    Callbacks are replaced by relays, model paths by this worker's own copies (downloaded and
    verified here when its data folder lacks them), and ``current_token()`` returns the job's
    token. A cancel raises ``Cancelled`` from the next ``check()``; a call that starts
    after the cancel raises it at once, so queued calls end without doing anything.
    """
    from .models import localize

    link = _acquire(spec)
    relays = [_Relay(link.send, spec.call_id, position) for position in spec.callbacks]
    with _links_lock:
        link.relays.update(relays)
    try:
        arguments = list(args)
        for relay, position in zip(relays, spec.callbacks, strict=True):
            arguments[position] = relay
        context = contextvars.copy_context()
        context.run(_current_token.set, link.token)
        link.token.check()
        arguments = context.run(localize, arguments, spec)
        return context.run(fn, *arguments)
    except Cancelled:
        return CANCELLED  # not a failure: the worker need not log it as one
    finally:
        for relay in relays:
            relay.flush()
        with _links_lock:
            link.relays.difference_update(relays)
            link.users -= 1
