"""``run_in_thread``: daemon threads, reused, awaited from the loop."""

from __future__ import annotations

import contextvars
import threading
import time

import anyio
import pytest

from ipyjobs.engine.threads import run_in_thread

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


async def test_result_exception_and_context_come_through() -> None:
    assert await run_in_thread(divmod, 17, 5) == (3, 2)
    with pytest.raises(ZeroDivisionError, match="by zero"):
        await run_in_thread(divmod, 1, 0)
    request_id.set("abc")
    assert await run_in_thread(request_id.get) == "abc"


async def test_threads_are_daemons_and_reused() -> None:
    def whoami() -> tuple[int, bool]:
        return threading.get_ident(), threading.current_thread().daemon

    first, second = await run_in_thread(whoami), await run_in_thread(whoami)
    assert first == second and first[1] is True
    assert first[0] != threading.get_ident()


async def test_a_cancelled_caller_waits_for_the_call_to_finish() -> None:
    finished: list[bool] = []

    def slow() -> None:
        time.sleep(0.3)
        finished.append(True)

    with anyio.move_on_after(0.05) as scope:
        await run_in_thread(slow)
        await anyio.sleep(10)  # the cancellation takes effect at the next checkpoint
    assert scope.cancelled_caught
    assert finished  # the call ran to its end before the cancelled scope was left
