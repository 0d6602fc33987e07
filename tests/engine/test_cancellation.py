"""A cancel nothing can swallow: what the job sees is ``Cancelled`` (a BaseException) and
level-triggered; what ``await handle`` raises is the public ``JobCancelled``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import anyio
import pytest

from ipyjobs import Cancelled, Job, JobCancelled, JobContext, JobError, JobManager, JobState
from ipyjobs import current_token as token_of_job

from .test_states import wait_until

pytestmark = pytest.mark.anyio


@dataclass
class Swallower(Job, kind="test.swallower"):
    """Processes items one by one, swallowing per-item errors in one of the ways users do.

    ``steps`` records (monotonic time) every item whose work ran.
    """

    pattern: str
    items: int = 10_000
    steps: list = field(default_factory=list, repr=False)

    def work(self) -> None:
        self.steps.append(time.monotonic())
        time.sleep(0.002)

    async def run(self, ctx: JobContext) -> int:
        errors = 0
        for _ in range(self.items):
            if self.pattern == "except Exception around checkpoint":
                try:
                    await ctx.checkpoint()
                    self.work()
                    await anyio.sleep(0.002)
                except Exception:
                    errors += 1
            elif self.pattern == "except Exception around run_sync":
                try:
                    await ctx.run_sync(self.work)
                except Exception:
                    errors += 1
            elif self.pattern == "bare except":
                try:
                    await ctx.checkpoint()
                    self.work()
                    await anyio.sleep(0.002)
                except:  # noqa: E722 (the pattern under test)
                    errors += 1
            elif self.pattern == "thread catching Exception around check":
                await ctx.run_sync(self.thread_loop)
        return errors

    def thread_loop(self) -> None:
        token = token_of_job()
        assert token is not None
        for _ in range(self.items):
            try:
                token.check()
                self.work()
            except Exception:
                pass


PATTERNS = [
    "except Exception around checkpoint",
    "except Exception around run_sync",
    "bare except",
    "thread catching Exception around check",
]


@pytest.mark.parametrize("pattern", PATTERNS)
async def test_a_swallowing_job_ends_cancelled_and_stops(
    manager: JobManager, pattern: str, caplog: pytest.LogCaptureFixture
) -> None:
    job = Swallower(pattern)
    handle = manager.dispatch(job)
    await wait_until(lambda: len(job.steps) >= 5)
    asked = time.monotonic()
    handle.cancel()
    with anyio.fail_after(2):
        state = await handle.join()
    took = time.monotonic() - asked
    assert state is JobState.CANCELLED
    assert took < 2.0
    # No item's work started after the job was reported cancelled (one may have been under way
    # in a thread when the cancel came: a thread stops at its next check).
    reported = time.monotonic()
    await anyio.sleep(0.1)
    assert not [t for t in job.steps if t >= reported]
    late = [t for t in job.steps if t > asked]
    assert len(late) <= 1, f"{len(late)} items ran after the cancel"
    with pytest.raises(JobCancelled):
        await handle
    if pattern == "bare except":  # it returned after catching: the warning names the place
        assert any("caught the cancellation in run (" in w for w in handle.warnings)
        assert "test_cancellation.py" in handle.warnings[0]
        assert any("caught the cancellation" in r.getMessage() for r in caplog.records)
    else:
        assert handle.warnings == []


async def test_cancelled_is_a_base_exception_and_level_triggered(manager: JobManager) -> None:
    caught: list[BaseException] = []

    @dataclass
    class CatchesTwice(Job, kind="test.catches_twice"):
        async def run(self, ctx: JobContext) -> str:
            while True:
                try:
                    await ctx.checkpoint()
                    await anyio.sleep(0.005)
                except BaseException as exc:
                    caught.append(exc)
                    if len(caught) == 1:
                        continue  # catching once does not help: the next checkpoint raises
                    raise

    handle = manager.dispatch(CatchesTwice())
    await wait_until(lambda: handle.state is JobState.RUNNING)
    await anyio.sleep(0.02)
    handle.cancel()
    assert await handle.join() is JobState.CANCELLED
    assert len(caught) == 2
    assert not isinstance(caught[-1], Exception)
    assert isinstance(caught[-1], (Cancelled, anyio.get_cancelled_exc_class()))
    assert issubclass(JobCancelled, JobError) and issubclass(JobCancelled, Exception)
    assert not issubclass(Cancelled, Exception)


async def test_a_job_that_returns_after_its_cancel_is_cancelled_not_completed(
    manager: JobManager,
) -> None:
    @dataclass
    class ReturnsAnyway(Job, kind="test.returns_anyway"):
        async def run(self, ctx: JobContext) -> str:
            try:
                while True:
                    await ctx.checkpoint()
                    await anyio.sleep(0.005)
            except BaseException:
                return "finished anyway"

    handle = manager.dispatch(ReturnsAnyway())
    await wait_until(lambda: handle.state is JobState.RUNNING)
    handle.cancel()
    assert await handle.join() is JobState.CANCELLED
    assert handle.output is None
    assert len(handle.warnings) == 1
    assert "returned after it was cancelled" in handle.warnings[0]
