"""A short tour of the engine in a terminal: ``python -m ipyjobs.demo``.

Three "transcription" jobs each need the same model: they share one download job, shown nested
under each of them. One job is paused and resumed, one is cancelled while it waits (the shared
download goes on), and one hits a bad item and completes with a per-item error. Progress is
printed as a tree twice a second. The work is simulated with sleeps; the store is the real
SQLite file in the data folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio

from .engine import Job, JobCancelled, JobContext, JobManager, JobState
from .engine.text import format_tree


@dataclass
class SimulatedDownload(Job, kind="demo.download"):
    model: str
    size: int = 40_000_000

    @property
    def title(self) -> str:
        return f"Download model {self.model}"

    @property
    def key(self) -> str:
        return f"demo-model:{self.model}"

    async def run(self, ctx: JobContext) -> str:
        block = self.size // 40
        for done in range(block, self.size + 1, block):
            await ctx.checkpoint()
            await anyio.sleep(0.05)
            ctx.progress(done, self.size, unit="bytes")
        return f"/models/{self.model}.pt"


@dataclass
class SimulatedTranscription(Job, kind="demo.transcribe"):
    folder: str
    files: int = 8
    bad_file: int | None = None

    @property
    def title(self) -> str:
        return f"Transcribe {self.folder}"

    async def run(self, ctx: JobContext) -> dict:
        ctx.log("checking the model")
        model = await ctx.dispatch(SimulatedDownload("tiny.en"))
        ctx.log(f"model ready at {model}")
        done = 0
        for i in range(self.files):
            name = f"{self.folder}interview-{i:02d}.wav"
            await ctx.checkpoint()
            await anyio.sleep(0.1)
            if i == self.bad_file:
                ctx.item_failed(name, OSError("invalid data found when processing input"))
            else:
                done += 1
            ctx.progress(i + 1, self.files, item=name, unit="files")
        return {"done": done, "failed": ctx.handle.error_count}


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    async with JobManager() as manager:
        assert manager.store is not None
        print(f"job store: {manager.store.folder}")
        first = manager.dispatch(SimulatedTranscription("interviews/", bad_file=3))
        second = manager.dispatch(SimulatedTranscription("lectures/"))
        third = manager.dispatch(SimulatedTranscription("podcasts/"))

        async def show_until_done() -> None:
            while not all(h.done for h in (first, second, third)):
                print(format_tree(manager.roots()), end="\n\n")
                await anyio.sleep(0.5)

        async with anyio.create_task_group() as tg:
            tg.start_soon(show_until_done)
            await anyio.sleep(0.6)
            print("-> cancel 'podcasts/' while it waits: the shared download goes on\n")
            third.cancel()
            await anyio.sleep(0.6)
            print("-> pause 'lectures/'\n")
            second.pause()
            await anyio.sleep(1.6)
            print("-> resume 'lectures/'\n")
            second.resume()
        print(format_tree(manager.roots()))
        for handle in (first, second, third):
            try:
                print(f"{handle.title}: {await handle}")
            except JobCancelled:
                assert handle.state is JobState.CANCELLED
                print(f"{handle.title}: cancelled")


if __name__ == "__main__":
    anyio.run(main)
