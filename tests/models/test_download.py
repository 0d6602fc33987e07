"""The HTTP transfer engine (``fetch``), inside real jobs, against the faulty loopback server.

Every fault must end in a verified file or a clear error, never in a file at ``dest`` that is not
the right one. Files are a few MB of random bytes; parallel pieces are exercised by lowering
``parallel_min_size`` and ``parallel_after`` (loopback is too fast to need them otherwise).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, replace
from email.utils import formatdate
from pathlib import Path

import anyio
import pytest

from ipyjobs import Job, JobContext, JobManager, JobState
from ipyjobs.engine import diskspace
from ipyjobs.models.download import RetryPolicy, Transfer, TransferResult, fetch, partial_size
from ipyjobs.models.errors import ChecksumMismatch, DownloadError, NotEnoughSpace
from tests.engine.test_states import wait_until
from tests.support.http_server import Fault, LoopbackServer

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
SIZE = 3 * 1024 * 1024 + 7  # odd, so off-by-one range bugs show
PATH = "/models/blob.bin"
# Short waits for tests; one stream unless a test asks for pieces.
FAST = RetryPolicy(
    attempts=4, backoff=0.01, max_backoff=5, connect_timeout=5, stall_timeout=10, parallel_streams=1
)
PARALLEL = replace(FAST, parallel_min_size=256 * 1024, parallel_streams=3, parallel_after=0)


@dataclass
class FetchJob(Job, kind="test.models.fetch"):
    transfer: Transfer
    policy: RetryPolicy = FAST

    async def run(self, ctx: JobContext) -> TransferResult:
        return await fetch(self.transfer, ctx, policy=self.policy)


@pytest.fixture
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def transfer(tmp_path: Path, server: LoopbackServer, data: bytes) -> Transfer:
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    url = server.add_file(PATH, source)
    dest = tmp_path / "store" / "whisper" / "blob.bin"
    return Transfer(url, dest, hashlib.sha256(data).hexdigest(), SIZE, "test model blob")


def leftovers(dest: Path) -> list[str]:
    """Files next to ``dest`` other than the lock file."""
    if not dest.parent.exists():
        return []
    return sorted(p.name for p in dest.parent.iterdir() if p.suffix != ".lock")


def sent_after(server: LoopbackServer, mark: int) -> int:
    return server.bytes_sent(PATH) - mark


async def test_a_download_is_verified_and_leaves_only_the_file(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    handle = manager.dispatch(FetchJob(transfer))
    result = await handle
    assert result == TransferResult(transfer.dest, transfer.sha256, SIZE, SIZE, 0)
    assert transfer.dest.read_bytes() == data
    assert leftovers(transfer.dest) == ["blob.bin"]
    assert server.bytes_sent(PATH) == SIZE and len(server.requests(PATH)) == 1
    progress = handle.progress
    assert (progress.unit, progress.done, progress.total) == ("bytes", SIZE, SIZE)


async def test_without_an_expected_hash_it_is_computed(
    manager: JobManager, transfer: Transfer
) -> None:
    result = await manager.dispatch(FetchJob(replace(transfer, sha256=None, size=None)))
    assert result.sha256 == transfer.sha256 and result.size == SIZE


async def test_a_dropped_connection_resumes_with_a_range(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    server.add_fault(PATH, Fault("drop", after_bytes=SIZE // 2))
    result = await manager.dispatch(FetchJob(transfer))
    assert transfer.dest.read_bytes() == data and result.received == SIZE
    first, second = server.requests(PATH)
    assert first.fault == "drop"
    assert second.range == f"bytes={SIZE // 2}-{SIZE - 1}" and second.status == 206
    assert second.if_range and second.if_range.startswith('"')  # the ETag of the first answer
    assert sent_after(server, SIZE // 2) < 0.6 * SIZE


async def test_a_short_body_is_resumed(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    server.add_fault(PATH, Fault("short", after_bytes=SIZE // 3))
    await manager.dispatch(FetchJob(transfer))
    assert transfer.dest.read_bytes() == data
    assert [r.range for r in server.requests(PATH)][1] == f"bytes={SIZE // 3}-{SIZE - 1}"
    assert server.bytes_sent(PATH) == SIZE


async def test_503_with_retry_after_waits_as_told(
    manager: JobManager,
    server: LoopbackServer,
    transfer: Transfer,
    data: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.add_fault(PATH, Fault("status", status=503, retry_after=1))
    started = time.monotonic()
    await manager.dispatch(FetchJob(transfer))
    assert time.monotonic() - started >= 1.0
    assert [r.status for r in server.requests(PATH)] == [503, 200]
    assert transfer.dest.read_bytes() == data
    [record] = [r for r in caplog.records if r.name.startswith("ipyjobs.models")]
    assert record.levelname == "WARNING"
    assert "retry 1 in 1.0 s: HTTP 503 Service Unavailable" in record.getMessage()


async def test_retry_after_as_an_http_date(
    manager: JobManager, server: LoopbackServer, transfer: Transfer
) -> None:
    server.add_fault(PATH, Fault("status", status=503, retry_after=formatdate(time.time() + 2)))
    started = time.monotonic()
    await manager.dispatch(FetchJob(transfer))
    assert time.monotonic() - started >= 1.0  # the date has whole seconds: 1 to 2 s from now


async def test_429_and_500_are_retried(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    server.add_fault(PATH, Fault("status", status=429))
    server.add_fault(PATH, Fault("status", status=500))
    await manager.dispatch(FetchJob(transfer))
    assert [r.status for r in server.requests(PATH)] == [429, 500, 200]
    assert transfer.dest.read_bytes() == data


async def test_404_fails_at_once_naming_the_status(
    manager: JobManager, server: LoopbackServer, transfer: Transfer
) -> None:
    server.add_fault(PATH, Fault("status", status=404, times=-1))
    with pytest.raises(DownloadError) as error:
        await manager.dispatch(FetchJob(transfer))
    message = str(error.value)
    assert "HTTP 404" in message and transfer.url in message and transfer.label in message
    assert len(server.requests(PATH)) == 1
    assert leftovers(transfer.dest) == []


async def test_it_gives_up_after_the_attempts_with_the_last_error(
    manager: JobManager, server: LoopbackServer, transfer: Transfer
) -> None:
    server.add_fault(PATH, Fault("status", status=502, times=-1))
    with pytest.raises(DownloadError, match=r"HTTP 502 .*gave up after 4 attempts"):
        await manager.dispatch(FetchJob(transfer))
    assert len(server.requests(PATH)) == FAST.attempts


async def test_a_server_ignoring_ranges_makes_it_start_over(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    server.add_fault(PATH, Fault("drop", after_bytes=SIZE // 2))
    server.add_fault(PATH, Fault("ignore_range"))
    result = await manager.dispatch(FetchJob(transfer))
    assert transfer.dest.read_bytes() == data and result.sha256 == transfer.sha256
    statuses = [(r.range is not None, r.status) for r in server.requests(PATH)]
    assert statuses[1] == (True, 200)  # the range was ignored: that answer was not used
    assert statuses[-1] == (False, 200)  # started over with the whole file


async def cancel_at_half(manager: JobManager, server: LoopbackServer, transfer: Transfer) -> None:
    """Cancel a download stalled after half the file: the partial file stays."""
    server.add_fault(PATH, Fault("stall", after_bytes=SIZE // 2, seconds=30))
    handle = manager.dispatch(FetchJob(transfer))
    await wait_until(lambda: handle.progress.done >= SIZE // 2)
    handle.cancel()
    assert await handle.join() is JobState.CANCELLED


async def test_a_changed_file_makes_it_start_over(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, tmp_path: Path
) -> None:
    await cancel_at_half(manager, server, transfer)
    new = os.urandom(SIZE)
    (tmp_path / "source.bin").write_bytes(new)  # new ETag: If-Range no longer matches
    server.clear_faults()
    new_sha = hashlib.sha256(new).hexdigest()
    result = await manager.dispatch(FetchJob(replace(transfer, sha256=new_sha)))
    assert transfer.dest.read_bytes() == new and result.resumed_from == 0


async def test_a_stall_is_retried_after_the_stall_timeout(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    server.add_fault(PATH, Fault("stall", after_bytes=SIZE // 3, seconds=20))
    started = time.monotonic()
    await manager.dispatch(FetchJob(transfer, replace(FAST, stall_timeout=0.5)))
    assert 0.5 <= time.monotonic() - started < 5
    assert [r.range for r in server.requests(PATH)][1] == f"bytes={SIZE // 3}-{SIZE - 1}"
    assert transfer.dest.read_bytes() == data


async def test_wrong_bytes_raise_checksum_mismatch_and_keep_nothing(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    server.add_fault(PATH, Fault("wrong_bytes", after_bytes=1000))
    with pytest.raises(ChecksumMismatch) as error:
        await manager.dispatch(FetchJob(transfer))
    served = data[:1000] + bytes(b ^ 0xFF for b in data[1000:])
    message = str(error.value)
    assert transfer.label in message and transfer.url in message
    assert transfer.sha256 in message and hashlib.sha256(served).hexdigest() in message
    assert "nothing was kept" in message
    assert leftovers(transfer.dest) == []
    assert partial_size(transfer.dest) == 0


async def test_a_cancelled_download_resumes_from_the_partial_file(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    await cancel_at_half(manager, server, transfer)
    assert partial_size(transfer.dest) == SIZE // 2
    assert leftovers(transfer.dest) == ["blob.bin.part", "blob.bin.part.json"]

    server.clear_faults()
    mark = server.bytes_sent(PATH)
    result = await manager.dispatch(FetchJob(transfer))
    assert (result.resumed_from, result.received) == (SIZE // 2, SIZE - SIZE // 2)
    assert sent_after(server, mark) < 0.6 * SIZE
    assert transfer.dest.read_bytes() == data
    assert leftovers(transfer.dest) == ["blob.bin"]


async def test_pause_closes_the_connection_and_resume_continues(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    server.add_fault(PATH, Fault("stall", after_bytes=SIZE // 2, seconds=0.5))
    handle = manager.dispatch(FetchJob(transfer))
    await wait_until(lambda: handle.progress.done >= SIZE // 2)
    handle.pause()
    await wait_until(lambda: handle.state is JobState.PAUSED)
    paused_at = partial_size(transfer.dest)
    assert SIZE // 2 <= paused_at < SIZE  # synced when it parked
    await anyio.sleep(0.2)
    assert len(server.requests(PATH)) == 1  # nothing asked while paused
    handle.resume()
    result = await handle
    assert transfer.dest.read_bytes() == data and result.received == SIZE
    second = server.requests(PATH)[1]
    assert second.range == f"bytes={paused_at}-{SIZE - 1}" and second.status == 206


async def test_parallel_pieces_make_the_right_file(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    result = await manager.dispatch(FetchJob(transfer, PARALLEL))
    assert transfer.dest.read_bytes() == data and result.sha256 == transfer.sha256
    first, *pieces = server.requests(PATH)
    assert (first.range, first.status) == (
        None,
        200,
    )  # the whole file, cut short where pieces begin
    spans = [tuple(map(int, r.range.removeprefix("bytes=").split("-"))) for r in pieces]
    assert len(spans) > PARALLEL.parallel_streams and {r.status for r in pieces} == {206}
    spans.sort()
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(spans)) and spans[-1][1] == SIZE - 1
    assert leftovers(transfer.dest) == ["blob.bin"]


async def test_a_fast_large_download_stays_on_one_connection(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    # Loopback is fast: one stream finishes well within parallel_after, so no pieces.
    policy = replace(PARALLEL, parallel_after=30.0)
    await manager.dispatch(FetchJob(transfer, policy))
    assert [(r.range, r.status) for r in server.requests(PATH)] == [(None, 200)]
    assert server.bytes_sent(PATH) == SIZE and transfer.dest.read_bytes() == data


async def test_parallel_pieces_resume_after_cancel(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    server.add_fault(PATH, Fault("stall", after_bytes=40_000, seconds=30, times=-1))
    handle = manager.dispatch(FetchJob(transfer, PARALLEL))
    await wait_until(lambda: handle.progress.done >= 40_000 * PARALLEL.parallel_streams)
    handle.cancel()
    assert await handle.join() is JobState.CANCELLED
    sidecar = json.loads((transfer.dest.parent / "blob.bin.part.json").read_text())
    started = [s for s in sidecar["segments"] if s[2] > 0]
    assert len(started) == PARALLEL.parallel_streams  # each stream kept its piece's bytes
    present = partial_size(transfer.dest)
    assert present == sum(s[2] for s in started)

    server.clear_faults()
    mark = server.bytes_sent(PATH)
    result = await manager.dispatch(FetchJob(transfer, PARALLEL))
    assert result.resumed_from == present and result.received == SIZE - present
    assert sent_after(server, mark) == SIZE - present
    assert transfer.dest.read_bytes() == data


async def test_a_slow_large_download_opens_more_connections(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    # One second in, the first GET has 200 kB (stalled): the rest would take far longer than
    # parallel_after, so it is cut into pieces for more streams; the first GET stops where
    # they begin.
    server.add_fault(PATH, Fault("stall", after_bytes=200_000, seconds=1.5))
    result = await manager.dispatch(FetchJob(transfer, replace(PARALLEL, parallel_after=2.0)))
    assert transfer.dest.read_bytes() == data and result.received == SIZE
    first, *pieces = server.requests(PATH)
    assert (first.range, first.status) == (None, 200)
    assert len(pieces) > 1 and {r.status for r in pieces} == {206}


async def test_without_direct_io_it_writes_through_the_page_cache(
    manager: JobManager,
    server: LoopbackServer,
    transfer: Transfer,
    data: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(os, "O_DIRECT", raising=False)  # as on file systems that refuse it
    server.add_fault(PATH, Fault("drop", after_bytes=SIZE // 3))
    result = await manager.dispatch(FetchJob(transfer, PARALLEL))
    assert transfer.dest.read_bytes() == data and result.sha256 == transfer.sha256


@pytest.mark.parametrize("size_known", [True, False])
async def test_not_enough_space_names_needed_and_available(
    manager: JobManager,
    server: LoopbackServer,
    transfer: Transfer,
    monkeypatch: pytest.MonkeyPatch,
    size_known: bool,
) -> None:
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 1_234_567)
    job = FetchJob(transfer if size_known else replace(transfer, size=None))
    with pytest.raises(NotEnoughSpace) as error:
        await manager.dispatch(job)
    message = str(error.value)
    assert f"1,234,567 bytes free, {SIZE:,} needed" in message
    assert isinstance(error.value, diskspace.NoSpaceLeft)
    assert str(transfer.dest.parent) in message and transfer.label in message
    assert len(server.requests(PATH)) == (0 if size_known else 1)
    assert leftovers(transfer.dest) == []


async def test_a_verified_file_is_not_downloaded_again(
    manager: JobManager, server: LoopbackServer, transfer: Transfer
) -> None:
    await manager.dispatch(FetchJob(transfer))
    server.reset_counters()
    result = await manager.dispatch(FetchJob(transfer))
    assert (result.received, result.resumed_from, result.sha256) == (0, 0, transfer.sha256)
    assert server.bytes_sent(PATH) == 0 and server.requests(PATH) == []


async def test_a_wrong_existing_file_is_replaced(
    manager: JobManager, server: LoopbackServer, transfer: Transfer, data: bytes
) -> None:
    transfer.dest.parent.mkdir(parents=True)
    transfer.dest.write_bytes(b"not the model")
    result = await manager.dispatch(FetchJob(transfer))
    assert result.received == SIZE and transfer.dest.read_bytes() == data


async def test_two_jobs_of_one_process_download_once(
    manager: JobManager, server: LoopbackServer, transfer: Transfer
) -> None:
    server.add_fault(PATH, Fault("stall", after_bytes=SIZE // 2, seconds=0.5))
    results = [await h for h in [manager.dispatch(FetchJob(transfer)) for _ in range(2)]]
    assert sorted(r.received for r in results) == [0, SIZE]
    assert server.bytes_sent(PATH) == SIZE


CHILD = textwrap.dedent(
    """
    import json, sys
    from dataclasses import dataclass
    from pathlib import Path
    import anyio
    from ipyjobs import Job, JobManager
    from ipyjobs.models.download import RetryPolicy, Transfer, fetch

    @dataclass
    class Fetch(Job, kind="test.models.fetch.child"):
        transfer: Transfer
        async def run(self, ctx):
            return await fetch(self.transfer, ctx, policy=RetryPolicy(backoff=0.05))

    async def main():
        url, dest, sha256, size, home = sys.argv[1:]
        transfer = Transfer(url, Path(dest), sha256, int(size), "test model blob")
        async with JobManager(home, tick=0.02) as manager:
            result = await manager.dispatch(Fetch(transfer))
        print(json.dumps({"path": str(result.path), "received": result.received}))

    anyio.run(main)
    """
)


async def test_two_processes_download_once(
    server: LoopbackServer, transfer: Transfer, data: bytes, tmp_path: Path
) -> None:
    # The stall keeps the first process's download going while the second one starts.
    server.add_fault(PATH, Fault("stall", after_bytes=SIZE // 2, seconds=1.5))
    args = [transfer.url, str(transfer.dest), transfer.sha256, str(SIZE)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, *args, str(tmp_path / f"home{i}")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    for child in children:
        out, err = await anyio.to_thread.run_sync(child.communicate, None, 60)
        assert child.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert {o["path"] for o in outputs} == {str(transfer.dest)}
    assert sorted(o["received"] for o in outputs) == [0, SIZE]
    assert server.bytes_sent(PATH) == SIZE
    assert transfer.dest.read_bytes() == data
