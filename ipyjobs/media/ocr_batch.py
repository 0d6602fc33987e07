"""One run of the OCR job over its documents: a page (or a single image) per free worker,
progress in pages over the whole batch, pause between pages, and a document's outputs put
together by the worker that finished its last page."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from ..engine import Intent, JobContext
from ..engine.handle import error_text
from .batch import run_file, take_slot
from .documents import assemble
from .executor import Executor, ExecutorLost, failing_with_the_loss, workers_of
from .outputs import FileOutcome
from .pages import Document, FileTask, PageResult, PageTask, Settings, ocr_file, ocr_page


async def run_batch(
    ctx: JobContext,
    settings: Settings,
    executor: Executor | None,
    workers: int | None,
    todo: list[Document],
    skipped: list[Document],
) -> dict[str, Any]:
    """Do the documents in ``todo``; returns the counts (documents ``done``, ``failed``,
    ``skipped``; ``pages`` read by this run) and ``outputs``.

    Cancel: running tesseracts are killed; the work folders of the documents not finished are
    removed (a cancel, unlike an interruption, leaves nothing to resume). A lost executor
    (:class:`ExecutorLost`) fails the job with that reason; as after an interruption, the
    documents and pages done are kept, so a new run does only the rest.
    """
    return await _Batch(ctx, settings, executor, workers).run(todo, skipped)


class _Batch:
    def __init__(
        self, ctx: JobContext, settings: Settings, executor: Executor | None, workers: int | None
    ) -> None:
        self.ctx = ctx
        self.settings = settings
        self.executor = executor or ctx.manager.executor
        self.workers = workers
        self.counts = {"done": 0, "failed": 0, "skipped": 0, "pages": 0}
        self.outputs: list[str] = []
        self.left: dict[Path, int] = {}
        self.failed_pages: dict[Path, int] = {}
        self.finished: set[Path] = set()
        self.busy: list[Document] = []
        self.progressed = 0
        self.total = 0

    async def run(self, todo: list[Document], skipped: list[Document]) -> dict[str, Any]:
        ctx = self.ctx
        size = self.workers or await workers_of(self.executor)
        self.counts["skipped"] = len(skipped)
        self.total = sum(d.pages for d in todo) + sum(d.pages for d in skipped)
        self.progressed = sum(d.pages for d in skipped)
        if skipped:
            ctx.log(f"{len(skipped)} files already done with these settings: skipped")
        work: list[tuple[Document, int | None]] = []  # page None: the whole document
        for document in todo:
            if document.error is not None:
                ctx.item_failed(document.path, document.error)
                self.counts["failed"] += 1
                self.progressed += 1
            elif document.kind == "image":
                work.append((document, None))
            else:
                work += await self._pages_to_do(document)
        ctx.progress(self.progressed, self.total, unit="pages")
        slots = anyio.Semaphore(size)
        try:
            # Then the images another job held: wait for each, and do it if still not done.
            for batch, wait in ((work, False), (self.busy, True)):
                with failing_with_the_loss():
                    async with anyio.create_task_group() as tg:
                        for item in list(batch):
                            document, index = item if isinstance(item, tuple) else (item, None)
                            await take_slot(ctx, slots, size)
                            ctx.progress(item=document.item(index or 0))
                            tg.start_soon(self._one, slots, document, index, wait)
            await ctx.checkpoint()
        finally:
            if ctx.handle.intent is Intent.CANCELLING:
                for document in todo:
                    if document.path not in self.finished and document.kind != "image":
                        shutil.rmtree(document.work, ignore_errors=True)
        return {**self.counts, "outputs": self.outputs}

    async def _pages_to_do(self, document: Document) -> list[tuple[Document, int | None]]:
        """The pages without a record (a document whose pages are all done: assemble it)."""
        done = await self.ctx.run_sync(document.done_pages)
        if not done:  # records of other settings, scratch of a killed run
            await self.ctx.run_sync(shutil.rmtree, document.work, True)
        self.progressed += len(done)
        self.left[document.path] = document.pages - len(done)
        self.failed_pages[document.path] = 0
        pending: list[tuple[Document, int | None]] = [
            (document, i) for i in range(document.pages) if i not in done
        ]
        return pending or [(document, None)]

    async def _one(
        self, slots: anyio.Semaphore, document: Document, index: int | None, wait: bool
    ) -> None:
        try:
            if document.kind == "image":
                await self._image(document, wait)
                return
            if index is not None:
                result = await self._call(ocr_page, PageTask(document, index, self.settings))
                self._page_done(document, index, result)
                if self.left[document.path]:
                    return
            outcome = await self._call(assemble, document, self.settings)
            self.finished.add(document.path)
            self._document_done(document, outcome)
        finally:
            slots.release()

    async def _image(self, document: Document, wait: bool) -> None:
        task = _file_task(document, self.settings)
        outcome = await run_file(self.ctx, self.executor, document.path, ocr_file, task, wait)
        if outcome.status == "busy":
            self.busy.append(document)
            return
        self.counts[outcome.status] += 1
        if outcome.status == "done":
            self.counts["pages"] += 1
            self.outputs.extend(outcome.outputs)
        self._advance()

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` through the executor. What the executor raises fails this item only
        (a worker lost), except a lost executor (:class:`ExecutorLost`), which fails the job;
        a cancel passes through."""
        try:
            return await self.executor.run(self.ctx, fn, *args)
        except ExecutorLost:
            raise
        except Exception as exc:  # a cancel (``Cancelled``, a BaseException) passes through
            if fn is ocr_page:
                return PageResult(error_text(exc))
            return FileOutcome("failed", error=error_text(exc))

    def _page_done(self, document: Document, index: int, result: PageResult) -> None:
        self.left[document.path] -= 1
        if result.error is None:
            self.counts["pages"] += 1
        else:
            self.failed_pages[document.path] += 1
            self.ctx.item_failed(document.item(index), result.error)
            if result.log:
                self.ctx.log(f"{document.item(index)}: the full error:\n{result.log}")
        self._advance()

    def _document_done(self, document: Document, outcome: FileOutcome) -> None:
        self.outputs.extend(outcome.outputs)
        if outcome.error is not None:
            self.ctx.item_failed(document.path, outcome.error)
        if outcome.status == "skipped":
            self.counts["skipped"] += 1
        elif outcome.status == "done" and not self.failed_pages[document.path]:
            self.counts["done"] += 1
        else:
            self.counts["failed"] += 1

    def _advance(self) -> None:
        self.progressed += 1
        self.ctx.progress(self.progressed, self.total)


def _file_task(document: Document, settings: Settings) -> FileTask:
    return FileTask(
        document.path,
        document.stem,
        document.fingerprint,
        1,
        settings.tessdata,
        settings.languages,
        settings.formats,
        settings.psm,
        settings.oem,
        settings.rotate_pages,
    )
