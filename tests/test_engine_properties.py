"""Property-based tests of the engine: random pause/resume/cancel over random job trees.

Each example builds a small forest of jobs (roots spawning owned children, some dispatching a
shared keyed job, some working in a worker thread, some waiting for a slot of a concurrency-limited
group), applies a random sequence of controls at random small delays, then releases whatever is
still paused and checks, over the whole run:

(a) endings are final: no lifecycle event follows a job's Completed/Failed/Cancelled, and its
    handle's state never changes afterwards;
(b) no job body runs after its ending (in particular after its cancel took effect), counting
    steps made in worker threads;
(c) every handle resolves;
(d) an owned child is never active once its parent ended;
(e) endings match what happened: a job fails only by its own error or a cancelled dependency,
    and is cancelled only if it or an owning ancestor was asked to stop.

Every example runs its own ``JobManager`` in its own ``anyio.run`` (in a thread of its own, so a
hang fails instead of blocking) with its own data folder. The manager's ``bus`` is replaced,
before it starts, by a subclass that notes each lifecycle event as it is published, which gives
exact orderings for (a), (b) and (d); a plain subscription checks (a) as subscribers see it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipyjobs import (
    Intent,
    InterruptToken,
    InvalidTransition,
    Job,
    JobCancelled,
    JobHandle,
    JobManager,
    JobState,
    current_token,
    events,
)

TERMINAL_EVENTS = (events.Completed, events.Failed, events.Cancelled)
EVENT_STATE = {
    events.Completed: JobState.COMPLETED,
    events.Failed: JobState.FAILED,
    events.Cancelled: JobState.CANCELLED,
}


class Boom(Exception):
    """A job's own failure."""


# -- what happened, in one global order --------------------------------------------------------


class Recorder:
    """Body steps and published lifecycle events, each stamped with a global sequence number.

    ``next()`` on ``itertools.count`` is atomic under the GIL, so steps taken in worker threads
    and events published on the loop share one order: a step numbered after an event happened
    after that event was published.
    """

    def __init__(self) -> None:
        self._seq = itertools.count()
        self.steps: list[tuple[str, int, float]] = []
        self.published: list[tuple[int, float, events.JobEvent]] = []
        self.violations: list[str] = []
        self.shared_of: dict[str, str] = {}
        """dispatcher job id -> id of the shared job its ``ctx.dispatch`` returned"""
        self.in_threads: collections.Counter[str] = collections.Counter()
        """job id -> how many of its worker-thread bodies are running right now"""
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def in_thread(self, job_id: str) -> Iterator[None]:
        with self._lock:
            self.in_threads[job_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_threads[job_id] -= 1

    def step(self, job_id: str) -> None:
        self.steps.append((job_id, next(self._seq), time.monotonic()))

    def stamp(self) -> int:
        return next(self._seq)


class RecordingBus(events.EventBus):
    """The manager's bus, noting every lifecycle event at the moment it is published."""

    def __init__(self, recorder: Recorder, manager: JobManager) -> None:
        super().__init__()
        self._recorder = recorder
        self._manager = manager
        self._ended: dict[str, events.JobEvent] = {}

    def publish(self, event: events.JobEvent) -> None:
        if isinstance(event, events.LIFECYCLE):
            self._check(event)
            self._recorder.published.append((self._recorder.stamp(), time.monotonic(), event))
        super().publish(event)

    def _check(self, event: events.JobEvent) -> None:
        violations = self._recorder.violations
        ended = self._ended.get(event.job_id)
        if ended is not None:
            violations.append(f"(a) {event!r} published after {ended!r}")
        if not isinstance(event, TERMINAL_EVENTS):
            return
        self._ended[event.job_id] = event
        if self._recorder.in_threads[event.job_id]:
            violations.append(f"(b) {event!r} published while its worker thread still runs")
        handle = self._manager.get(event.job_id)
        if handle.state is not EVENT_STATE[type(event)]:
            violations.append(f"(a) {event!r} published while the handle is {handle.state}")
        for child in handle.children:
            if child.owned and not child.done:
                violations.append(
                    f"(d) job {handle.id} ended {handle.state.value} while its owned child "
                    f"{child.id} is {child.state.value}"
                )


# -- the jobs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One node of a job tree."""

    steps: int
    delay: float
    threaded: bool
    shared: str | None = None
    """Dispatch (and await) the shared job with this name before working."""
    fail_at: int | None = None
    """Raise ``Boom`` at this step."""
    join_children: bool = False
    """Join the owned children explicitly (else the engine joins them after ``run``)."""
    children: tuple[Spec, ...] = ()
    limited: bool = False
    """Of the concurrency-limited group (leaves only: an owner holding a slot while its
    limited children wait for one could deadlock by design)."""


def work_in_thread(
    recorder: Recorder, job_id: str, token: InterruptToken, spec: Spec, steps: int
) -> None:
    with recorder.in_thread(job_id):
        if current_token() is not token:
            recorder.violations.append(f"current_token() in {job_id}'s worker is not its token")
        for i in range(steps):
            current_token().check()
            recorder.step(job_id)
            if spec.fail_at == i:
                raise Boom(job_id)
            time.sleep(spec.delay)


async def work_on_loop(recorder: Recorder, ctx: Any, spec: Spec, steps: int) -> None:
    for i in range(steps):
        await ctx.checkpoint()
        recorder.step(ctx.job_id)
        if spec.fail_at == i:
            raise Boom(ctx.job_id)
        ctx.progress(i + 1, steps)
        await anyio.sleep(spec.delay)


@dataclass
class Node(Job, kind="test.properties.node"):
    spec: Spec
    recorder: Recorder = field(repr=False, compare=False)

    async def run(self, ctx: Any) -> str:
        spec, recorder = self.spec, self.recorder
        recorder.step(ctx.job_id)
        children = [ctx.spawn(node(child, recorder)) for child in spec.children]
        if spec.shared is not None:
            shared = ctx.dispatch(Shared(spec.shared, recorder))
            recorder.shared_of[ctx.job_id] = shared.id
            await shared
            recorder.step(ctx.job_id)
        if spec.threaded:
            await ctx.run_sync(work_in_thread, recorder, ctx.job_id, ctx.token, spec, spec.steps)
        else:
            await work_on_loop(recorder, ctx, spec, spec.steps)
        recorder.step(ctx.job_id)
        if spec.join_children:
            for child in children:
                await child.join()
                recorder.step(ctx.job_id)
        return ctx.job_id


class LimitedNode(Node, kind="test.properties.limited"):
    """A node of the concurrency-limited group: it may wait for a slot while queued."""

    group = "test.properties.limited"


LIMITS = {LimitedNode.group: 2}


def node(spec: Spec, recorder: Recorder) -> Node:
    return (LimitedNode if spec.limited else Node)(spec, recorder)


#: Shared jobs by name: "loop" checkpoints on the loop, "thread" works in a worker thread.
SHARED = {
    "loop": Spec(steps=6, delay=0.004, threaded=False),
    "thread": Spec(steps=6, delay=0.004, threaded=True),
}


@dataclass
class Shared(Job, kind="test.properties.shared"):
    name: str
    recorder: Recorder = field(repr=False, compare=False)

    @property
    def key(self) -> str:
        return f"test.properties.shared/{self.name}"

    async def run(self, ctx: Any) -> str:
        spec = SHARED[self.name]
        self.recorder.step(ctx.job_id)
        if spec.threaded:
            await ctx.run_sync(work_in_thread, self.recorder, ctx.job_id, ctx.token, spec, 6)
        else:
            await work_on_loop(self.recorder, ctx, spec, 6)
        self.recorder.step(ctx.job_id)
        return self.name


# -- strategies --------------------------------------------------------------------------------


def specs(
    children: st.SearchStrategy[tuple[Spec, ...]], limited: st.SearchStrategy[bool]
) -> st.SearchStrategy[Spec]:
    return st.builds(
        Spec,
        steps=st.integers(1, 6),
        delay=st.sampled_from([0.0, 0.002, 0.005, 0.01, 0.02]),
        threaded=st.booleans(),
        shared=st.none() | st.sampled_from(sorted(SHARED)),
        fail_at=st.none() | st.none() | st.integers(0, 5),
        join_children=st.booleans(),
        children=children,
        limited=limited,
    )


leaves = specs(st.just(()), limited=st.booleans())
middles = specs(st.lists(leaves, max_size=2).map(tuple), limited=st.just(False))
roots = specs(st.lists(middles | leaves, max_size=3).map(tuple), limited=st.booleans()).map(
    lambda spec: dataclasses.replace(spec, limited=False) if spec.children else spec
)
forests = st.lists(roots, min_size=1, max_size=3)

#: An operation: after a wait, one to three controls on one job in the same loop iteration (a
#: double click); the wait is ``None`` for none at all, so it lands in the same iteration as
#: the previous operation, while ``0.0`` lets the jobs take one step.
Operation = tuple[float | None, int, tuple[str, ...]]
ACTIONS = ("pause", "resume", "cancel")
DELAYS = [None, 0.0, 0.002, 0.005, 0.01, 0.02]
SAME_JOB = -1
operations = st.lists(
    st.tuples(
        st.sampled_from(DELAYS),
        # which job, modulo the jobs that exist then; SAME_JOB: the previous operation's
        st.just(SAME_JOB) | st.just(SAME_JOB) | st.integers(0, 30),
        st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=3).map(tuple),
    ),
    max_size=12,
)


# -- one example -------------------------------------------------------------------------------


@dataclass
class Outcome:
    recorder: Recorder
    handles: list[JobHandle]
    stream: list[events.JobEvent]
    states_before_close: dict[str, JobState]
    cancel_requested: set[str]


async def run_example(forest: list[Spec], ops: list[Operation], probe: dict[str, Any]) -> Outcome:
    recorder = Recorder()
    cancel_requested: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="ipyjobs-prop-") as home:
        manager = JobManager(home, limits=LIMITS, tick=0.01, store_interval=0.05)
        manager.bus = RecordingBus(recorder, manager)
        probe.update(manager=manager, loop=asyncio.get_running_loop())
        # Lifecycle events are never dropped, so the subscription is read once, at the end.
        with manager.bus.subscribe() as subscription:
            async with manager:
                for spec in forest:
                    manager.dispatch(node(spec, recorder))

                handle = manager.handles[0]
                for delay, index, actions in ops:
                    if delay is not None:
                        await anyio.sleep(delay)
                    if index != SAME_JOB:
                        handles = manager.handles
                        handle = handles[index % len(handles)]
                    for action in actions:
                        try:
                            if action == "cancel":
                                if handle.cancel():
                                    cancel_requested.add(handle.id)
                            else:
                                getattr(handle, action)()
                        except InvalidTransition:
                            if not handle.done:
                                raise

                # Nothing may wait forever: release whatever the operations left paused.
                for handle in manager.handles:
                    if not handle.done:
                        handle.resume()

                # (c) every handle resolves (shared jobs may outlive their dispatchers).
                with anyio.fail_after(JOIN_TIMEOUT):
                    while not all(handle.done for handle in manager.handles):
                        for handle in manager.handles:
                            await handle.join()
                states_before_close = {h.id: h.state for h in manager.handles}
                handles = manager.handles
            stream = []
            while (event := subscription.get_nowait()) is not None:
                if isinstance(event, events.LIFECYCLE):
                    stream.append(event)
    return Outcome(recorder, handles, stream, states_before_close, cancel_requested)


#: Generous: an example's jobs take well under a second.
JOIN_TIMEOUT = 10.0
#: Beyond this an example is declared hung; it may be stuck where cancellation cannot reach
#: (the manager waits for owned children in shielded scopes), hence a thread per example.
EXAMPLE_TIMEOUT = 20.0


def run_isolated(forest: list[Spec], ops: list[Operation]) -> Outcome:
    """Run one example on its own event loop in its own thread, so a hang fails the example
    (with a description of the stuck jobs) instead of hanging the test run."""
    probe: dict[str, Any] = {}
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["outcome"] = anyio.run(run_example, forest, ops, probe, backend="asyncio")
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, name="ipyjobs property example", daemon=True)
    thread.start()
    thread.join(EXAMPLE_TIMEOUT)
    if thread.is_alive():  # left behind, stuck: the test fails anyway
        raise AssertionError(f"(c) the example hung for {EXAMPLE_TIMEOUT:g} s\n{describe(probe)}")
    if "error" in result:
        error = result["error"]
        if isinstance(error, TimeoutError):
            raise AssertionError(f"(c) some job never ended\n{describe(probe)}") from error
        if not isinstance(error, AssertionError):
            # A bare CancelledError here means an error in one of the manager's own tasks
            # cancelled its task group (and the manager's exit lost that error).
            raise AssertionError(f"the example raised {error!r}\n{describe(probe)}") from error
        raise error
    return result["outcome"]


def describe(probe: dict[str, Any]) -> str:
    """The jobs and tasks of a stuck example (read from another thread: a best effort)."""
    lines = []
    manager: JobManager | None = probe.get("manager")
    for handle in manager.handles if manager is not None else []:
        token = handle.token
        lines.append(
            f"  job {handle.id} {handle.kind} {handle.state.value} intent={handle.intent} "
            f"parent={handle.parent_id} owned={handle.owned} paused={token.paused} "
            f"cancelled={token.cancelled} parked={token.parked} "
            f"children={[c.id for c in handle.children]}"
        )
    loop: asyncio.AbstractEventLoop | None = probe.get("loop")
    try:
        tasks = list(asyncio.all_tasks(loop)) if loop is not None else []
    except RuntimeError:  # the set changed meanwhile
        tasks = []
    for task in tasks:
        lines.append(f"  task {task.get_name()!r} at {' > '.join(awaiting(task.get_coro()))}")
    return "\n".join(lines)


def awaiting(coro: Any) -> list[str]:
    """Where a task's chain of coroutines stands, outermost first."""
    places = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            places.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return places


# -- the invariants ----------------------------------------------------------------------------


def check(outcome: Outcome) -> None:
    recorder, handles = outcome.recorder, outcome.handles
    by_id = {h.id: h for h in handles}
    problems = list(recorder.violations)

    # (a) through a subscriber's eyes: nothing after the ending, one ending per job, and the
    # handle keeps the state its ending announced (also through the manager's close).
    endings: dict[str, events.JobEvent] = {}
    for event in outcome.stream:
        if event.job_id in endings:
            problems.append(f"(a) subscriber got {event!r} after {endings[event.job_id]!r}")
        if isinstance(event, TERMINAL_EVENTS):
            endings[event.job_id] = event
        if isinstance(event, events.Interrupted):
            problems.append(f"(a) {event!r}: every job had ended before the manager closed")
    for handle in handles:
        ending = endings.get(handle.id)
        if ending is None:
            problems.append(f"(c) job {handle.id} never published an ending ({handle.state})")
            continue
        if handle.state is not EVENT_STATE[type(ending)]:
            problems.append(f"(a) job {handle.id} is {handle.state} after {ending!r}")
        if outcome.states_before_close[handle.id] is not handle.state:
            problems.append(f"(a) closing the manager changed job {handle.id}'s state")

    # (b) no body step after the job's ending was published (cancelled or otherwise).
    ended_at = {
        event.job_id: seq
        for seq, _, event in recorder.published
        if isinstance(event, TERMINAL_EVENTS)
    }
    for job_id, seq, _ in recorder.steps:
        if job_id in ended_at and seq > ended_at[job_id]:
            problems.append(
                f"(b) job {job_id} ({by_id[job_id].state.value}) stepped after its ending"
            )

    # (e) each ending has a cause.
    def stop_reason(handle: JobHandle) -> bool:
        """It, or an owning ancestor, was asked to cancel, or an owning ancestor stopped early
        (an owned child does not outlive its owner)."""
        current: JobHandle | None = handle
        while current is not None:
            if current.id in outcome.cancel_requested:
                return True
            if current is not handle and current.state is not JobState.COMPLETED:
                return True
            if not current.owned:
                return False
            current = current.parent
        return False

    for handle in handles:
        state, error = handle.state, handle.error
        if state is JobState.CANCELLED and not stop_reason(handle):
            problems.append(f"(e) job {handle.id} was cancelled, but nobody cancelled it")
        if state is JobState.FAILED:
            spec: Spec | None = getattr(handle.job, "spec", None)
            own_failure = (
                isinstance(error, Boom)
                and spec is not None
                and spec.fail_at is not None
                and spec.fail_at < spec.steps
            )
            shared_id = outcome.recorder.shared_of.get(handle.id)
            dependency_cancelled = (
                isinstance(error, JobCancelled)
                and shared_id is not None
                and by_id[shared_id].state is JobState.CANCELLED
            )
            if not (own_failure or dependency_cancelled):
                problems.append(
                    f"(e) job {handle.id} failed with {error!r} "
                    f"(cancel requested: {stop_reason(handle)})"
                )

    running = {job_id: n for job_id, n in recorder.in_threads.items() if n}
    if running:
        problems.append(f"(b) worker threads still running after every job ended: {running}")

    assert not problems, "\n".join(problems)


# Normally a few seconds. On a hang, each shrinking step may wait EXAMPLE_TIMEOUT; Hypothesis
# stops shrinking after 5 minutes, so the timeout leaves room for the report.
@pytest.mark.timeout(600)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forest=forests, ops=operations)
def test_random_controls_keep_the_engine_invariants(
    forest: list[Spec], ops: list[Operation]
) -> None:
    check(run_isolated(forest, ops))


# -- found by the property test, kept as plain regression tests --------------------------------


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("started", "threaded"),
    [(False, False), (True, False), (True, True)],
    ids=["paused-while-queued", "paused-on-loop", "paused-in-thread"],
)
async def test_resume_does_not_undo_a_cancel(
    manager: JobManager, started: bool, threaded: bool
) -> None:
    """pause, cancel, resume in one go (a double click): the job still ends cancelled.

    Resume used to clear the ``cancelling`` intent: a started job then ended failed with
    JobCancelled, and one paused while queued went from queued to failed, an illegal move
    that crashed the manager's task group.
    """
    handle = manager.dispatch(Node(Spec(steps=200, delay=0.01, threaded=threaded), Recorder()))
    if started:
        await wait_for(lambda: handle.state is JobState.RUNNING)
    assert handle.pause()
    await wait_for(lambda: handle.state is JobState.PAUSED)
    assert handle.cancel()
    assert handle.resume() is False
    assert handle.intent is Intent.CANCELLING
    with anyio.fail_after(5):
        assert await handle.join() is JobState.CANCELLED
    assert handle.error is None
    with pytest.raises(JobCancelled):
        await handle
    # The manager goes on serving.
    after = manager.dispatch(Node(Spec(steps=1, delay=0.0, threaded=False), Recorder()))
    with anyio.fail_after(5):
        assert await after == after.id
