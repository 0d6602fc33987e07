"""Small real jobs the engine tests dispatch."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import anyio

from ipyjobs import Job, JobContext, current_token


@dataclass
class Steps(Job, kind="test.steps"):
    """Counts ``n`` steps of ``delay`` seconds, with a checkpoint before each."""

    n: int = 10
    delay: float = 0.01
    name: str = "steps"

    @property
    def title(self) -> str:
        return self.name

    async def run(self, ctx: JobContext) -> int:
        for i in range(self.n):
            await ctx.checkpoint()
            ctx.progress(i + 1, self.n)
            await anyio.sleep(self.delay)
        return self.n


@dataclass
class Limited(Steps, kind="test.limited"):
    """Steps in the concurrency group ``limited``, recording how many run at once."""

    group = "limited"
    running: list = field(default_factory=list, repr=False)
    started: list = field(default_factory=list, repr=False)

    async def run(self, ctx: JobContext) -> int:
        self.started.append(self.name)
        self.running.append(1)
        try:
            return await super().run(ctx)
        finally:
            self.running.append(-1)


@dataclass
class Shared(Job, kind="test.shared"):
    """A keyed job: concurrent dispatches with the same ``shared_key`` share one run."""

    shared_key: str
    n: int = 10
    delay: float = 0.01
    runs: list = field(default_factory=list, repr=False)

    @property
    def key(self) -> str:
        return self.shared_key

    async def run(self, ctx: JobContext) -> str:
        self.runs.append(ctx.job_id)
        for i in range(self.n):
            await ctx.checkpoint()
            ctx.progress(i + 1, self.n)
            await anyio.sleep(self.delay)
        return f"result of {self.shared_key}"


@dataclass
class WaitFor(Job, kind="test.wait_for"):
    """Dispatches (or joins) a shared job, waits for it, then returns its output."""

    shared: Shared

    def params(self) -> dict:
        return {}

    async def run(self, ctx: JobContext) -> str:
        return await ctx.dispatch(self.shared)


@dataclass
class Parent(Job, kind="test.parent"):
    """Spawns owned children of ``n`` steps each and waits for them."""

    children: int = 2
    n: int = 100
    delay: float = 0.01

    async def run(self, ctx: JobContext) -> list[int]:
        handles = [
            ctx.spawn(Steps(self.n, self.delay, name=f"child {i}")) for i in range(self.children)
        ]
        return [await h for h in handles]


@dataclass
class Fails(Job, kind="test.fails"):
    message: str = "the input was bad"

    async def run(self, ctx: JobContext) -> None:
        await ctx.checkpoint()
        raise ValueError(self.message)


@dataclass
class Threaded(Job, kind="test.threaded"):
    """Blocking work in a worker thread that checks its token every ``check_every`` seconds."""

    n: int = 50
    check_every: float = 0.02
    ticks: list = field(default_factory=list, repr=False)

    async def run(self, ctx: JobContext) -> int:
        return await ctx.run_sync(self._work, ctx)

    def _work(self, ctx: JobContext) -> int:
        token = current_token()
        assert token is ctx.token
        for i in range(self.n):
            token.check()
            self.ticks.append(time.monotonic())
            ctx.progress(i + 1, self.n)
            time.sleep(self.check_every)
        return self.n


@dataclass
class Items(Job, kind="test.items"):
    """Processes ``n`` items of which those in ``bad`` fail."""

    n: int = 500
    bad: tuple = (7, 123, 499)

    async def run(self, ctx: JobContext) -> int:
        done = 0
        for i in range(self.n):
            await ctx.checkpoint()
            try:
                if i in self.bad:
                    raise OSError(f"cannot read item-{i}.wav: file is truncated")
                done += 1
            except OSError as exc:
                ctx.item_failed(f"item-{i}.wav", exc)
            ctx.progress(i + 1, self.n, item=f"item-{i}.wav")
        return done


@dataclass
class Resumable(Job, kind="test.resumable"):
    """Counts to ``n``, appending each step to ``log_path`` and checkpointing after it."""

    resumable = True
    n: int = 100
    delay: float = 0.02
    log_path: str = ""

    async def run(self, ctx: JobContext) -> int:
        start = (ctx.saved_state or {}).get("next", 0)
        for i in range(start, self.n):
            with open(self.log_path, "a") as log:
                log.write(f"{i}\n")
            ctx.progress(i + 1, self.n)
            await anyio.sleep(self.delay)
            await ctx.checkpoint({"next": i + 1})
        return self.n
