"""Blocking calls in daemon threads, awaited from the event loop.

Why not ``anyio.to_thread``: its worker threads are stopped when the loop's root task ends and
are joined at interpreter exit. In a Jupyter kernel the root task (the host task of
``ipyjobs.jobs()``) never ends, so a kernel that had run a job's thread could not exit by itself:
a shutdown waited until the kernel manager killed the process, and the store's last write (an
``atexit`` hook) was lost with it. Daemon threads never hold up the exit; work they are doing at
that moment is cut off as by a crash, which the store and the downloader's part files survive.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

T = TypeVar("T")


async def run_in_thread(fn: Callable[..., T], /, *args: Any) -> T:
    """Run ``fn(*args)`` in a new daemon thread, in a copy of the caller's context variables,
    and return its result (or raise its exception).

    On cancel, this still waits until ``fn`` is done (stop it sooner through an interrupt
    token), then returns; the cancellation takes effect at the caller's next checkpoint.
    """
    loop = anyio.lowlevel.current_token()
    done = anyio.Event()
    outcome: list[tuple[bool, Any]] = []
    context = contextvars.copy_context()

    def call() -> None:
        try:
            outcome.append((True, context.run(fn, *args)))
        except BaseException as exc:
            outcome.append((False, exc))
        with contextlib.suppress(anyio.RunFinishedError):  # else the loop ended: nobody waits
            anyio.from_thread.run_sync(done.set, token=loop)

    name = f"ipyjobs {getattr(fn, '__qualname__', 'call')}"
    threading.Thread(target=call, name=name, daemon=True).start()
    with anyio.CancelScope(shield=True):
        await done.wait()
    succeeded, value = outcome[0]
    if succeeded:
        return value  # type: ignore[no-any-return]
    raise value
