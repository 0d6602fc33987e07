"""Blocking calls in daemon threads, awaited from the event loop.

Why not ``anyio.to_thread``: its worker threads are stopped when the loop's root task ends and
are joined at interpreter exit. In a Jupyter kernel the root task (the host task of
``ipyjobs.jobs()``) never ends, so a kernel that had run a job's thread could not exit by itself:
a shutdown waited until the kernel manager killed the process, and the store's last write (an
``atexit`` hook) was lost with it. Daemon threads never hold up the exit; work they are doing at
that moment is cut off as by a crash, which the store and the downloader's part files survive.

Threads are reused, most recently idle first: libraries such as PyTorch keep per-thread state
(OpenMP thread teams, caches) that a fresh thread per call would rebuild every time.
"""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

T = TypeVar("T")

#: An idle thread ends after this many seconds.
MAX_IDLE = 30.0

_idle: list[_Worker] = []
_idle_lock = threading.Lock()


class _Worker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="ipyjobs worker", daemon=True)
        self._calls: queue.SimpleQueue[tuple[Callable[[], None], Callable[[], None]]] = (
            queue.SimpleQueue()
        )

    def submit(self, work: Callable[[], None], then: Callable[[], None]) -> None:
        self._calls.put((work, then))

    def run(self) -> None:
        while True:
            try:
                work, then = self._calls.get(timeout=MAX_IDLE)
            except queue.Empty:
                with _idle_lock:
                    if self in _idle:
                        _idle.remove(self)
                        return
                continue  # taken off the idle list just now: its call is on the way
            work()
            with _idle_lock:  # idle before the caller hears back, so its next call reuses this
                _idle.append(self)
            then()


def _start(work: Callable[[], None], then: Callable[[], None]) -> None:
    with _idle_lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        worker = _Worker()
        worker.start()
    worker.submit(work, then)


async def run_in_thread(fn: Callable[..., T], /, *args: Any) -> T:
    """Run ``fn(*args)`` in a daemon thread, in a copy of the caller's context variables, and
    return its result (or raise its exception).

    On cancel, this still waits until ``fn`` is done (stop it sooner through an interrupt
    token), then returns; the cancellation takes effect at the caller's next checkpoint.
    """
    loop = anyio.lowlevel.current_token()
    done = anyio.Event()
    outcome: list[tuple[bool, Any]] = []
    context = contextvars.copy_context()

    def work() -> None:
        try:
            outcome.append((True, context.run(fn, *args)))
        except BaseException as exc:
            outcome.append((False, exc))

    def report() -> None:
        with contextlib.suppress(anyio.RunFinishedError):  # else the loop ended: nobody waits
            anyio.from_thread.run_sync(done.set, token=loop)

    _start(work, report)
    with anyio.CancelScope(shield=True):
        await done.wait()
    succeeded, value = outcome[0]
    if succeeded:
        return value  # type: ignore[no-any-return]
    raise value
