"""Parallel pieces of a download: where to cut the rest of a file, and running the streams.

Used by :mod:`.transfer` when one connection is too slow: the rest of a fresh download is cut
into pieces that several streams take in order, while the first request goes on up to where the
pieces begin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import anyio

from .diskio import ALIGN
from .partfile import Segment, Sidecar

if TYPE_CHECKING:
    from .download import RetryPolicy

#: Pieces per stream in parallel mode, and their size bounds: enough pieces that the streams
#: stay close together (the contiguous prefix, which is hashed, grows steadily), few enough that
#: requests cost nothing noticeable.
_PIECES_PER_STREAM = 8
_MIN_PIECE, _MAX_PIECE = 64 << 10, 32 << 20


def split(state: Sidecar, received: int, rate: float, policy: RetryPolicy) -> list[Segment]:
    """Cut the rest of a fresh download (one segment, of which one GET has ``received`` bytes so
    far at ``rate`` bytes/s) into pieces for more streams, and return them; none if one stream
    finishes within ``policy.parallel_after`` seconds anyway. ``state`` gets the pieces, and its
    first segment ends where they begin."""
    assert len(state.segments) == 1
    whole = state.segments[0]
    assert whole.end is not None
    piece = -(-(whole.end - received) // (policy.parallel_streams * _PIECES_PER_STREAM))
    piece = min(max(piece, _MIN_PIECE), _MAX_PIECE) // ALIGN * ALIGN
    cut = min(whole.end, (received + piece) // ALIGN * ALIGN)  # the first GET stops here
    if whole.end - cut <= rate * policy.parallel_after:
        return []  # one stream finishes soon enough; more would only cost CPU
    pieces = [Segment(at, min(at + piece, whole.end)) for at in range(cut, whole.end, piece)]
    whole.end = cut
    state.segments.extend(pieces)
    return pieces


async def run_until_done(
    tasks: Sequence[Callable[[], Awaitable[None]]],
    background: Sequence[Callable[[], Awaitable[None]]],
) -> None:
    """Run ``tasks`` concurrently, with ``background`` tasks that stop once ``tasks`` are done.
    The first error cancels everything else and is raised as it is (no exception group)."""
    errors: list[Exception] = []

    async def guarded(task: Callable[[], Awaitable[None]]) -> None:
        try:
            await task()
        except Exception as exc:
            errors.append(exc)
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for task in background:
            group.start_soon(guarded, task)
        async with anyio.create_task_group() as workers:
            for task in tasks:
                workers.start_soon(guarded, task)
        group.cancel_scope.cancel()
    if errors:
        raise errors[0]
