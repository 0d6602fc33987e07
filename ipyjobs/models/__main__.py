"""Fetch models from a terminal or a build script, through the same jobs the notebooks use.

::

    python -m ipyjobs.models tiny.en tessdata_fast/eng   # download (or reuse) and verify
    python -m ipyjobs.models --list                      # what is on disk, and the catalog

Each name is a catalog name (``tiny.en``, ``base``, ``turbo``, ``tessdata_fast/deu``,
``tesseract:fra``, or an entry you registered). A model already ready is not fetched again; a
copy in whisper's cache or the system's Tesseract data is reused; an interrupted download
resumes. Progress is printed every few seconds, one line per download. The exit status is 0
when every model is ready, 1 when one failed, 2 for a bad name.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import anyio

from ..engine import JobHandle, JobManager, JobState
from ..engine.text import format_amount, format_line
from .catalog import WHISPER, ModelEntry
from .ensure import DownloadModel
from .errors import ModelError
from .store import ModelStore


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ipyjobs.models",
        description="Download (or reuse) models into the ipyjobs data folder, verified.",
    )
    parser.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="catalog names: tiny.en, base, turbo, tessdata_fast/eng, tesseract:deu, ...",
    )
    parser.add_argument("--home", help="the data folder (default: $IPYJOBS_HOME or the platform's)")
    parser.add_argument(
        "--list", action="store_true", help="list the Whisper models and every model on disk"
    )
    parser.add_argument(
        "--verify", action="store_true", help="re-hash each model after fetching it"
    )
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between progress lines (default 2)"
    )
    return parser


def print_list(store: ModelStore) -> None:
    for info in store.list():
        if info.entry.family != WHISPER and info.status == "missing":
            continue
        size = format_amount(info.size, "bytes") if info.size else "?"
        where = str(info.path) if info.status == "ready" else ""
        print(f"{info.entry.id:28} {info.status:11} {size:>9}  {where}".rstrip())


async def _report(handles: Sequence[JobHandle], interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        for handle in handles:
            if not handle.done:
                print(format_line(handle), flush=True)


async def fetch(
    store: ModelStore, entries: Sequence[ModelEntry], *, verify: bool, interval: float
) -> int:
    """Fetch ``entries`` concurrently; print progress, then one line per model."""
    home = store.folder.parent
    failed = 0
    async with JobManager(home) as manager:
        handles = [manager.dispatch(DownloadModel(entry.id, str(home))) for entry in entries]
        async with anyio.create_task_group() as group:
            group.start_soon(_report, handles, interval)
            for handle in handles:
                await handle.join()
            group.cancel_scope.cancel()
        for entry, handle in zip(entries, handles, strict=True):
            if handle.state is not JobState.COMPLETED:
                failed += 1
                why = handle.error_text or handle.status
                print(f"failed: {entry.label}: {why}", file=sys.stderr)
                continue
            line = f"ready: {entry.label}: {handle.output}"
            if verify:
                ok = await store.verify(entry)
                line += " (verified)" if ok else " (CORRUPT: deleted, run again)"
                failed += not ok
            print(line, flush=True)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.models and not args.list:
        parser.error("name at least one model, or give --list")
    store = ModelStore.at(args.home)
    try:
        entries = list({store.entry(name).id: store.entry(name) for name in args.models}.values())
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list:
        print_list(store)
    if not entries:
        return 0
    try:
        return anyio.run(lambda: fetch(store, entries, verify=args.verify, interval=args.interval))
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
