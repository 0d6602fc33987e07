"""Download throughput against curl, and event-loop responsiveness during a download.

A 1 GB file of random bytes is served from the loopback test server. Each round downloads it
once with ``curl -s -o <file>`` and once with ipyjobs (a job calling ``fetch`` with the right
SHA-256: verification, fsync and the atomic rename included), interleaved, into the same
folder; each result file is deleted before the next download. While ipyjobs downloads, a task on
the same loop measures how late ``await anyio.sleep(0.01)`` wakes up.

vs_curl_ratio: median ipyjobs time / median curl time. loop_lag_p99_ms: p99 of the sleep
overshoot over all ipyjobs rounds. The last line printed is one JSON object.
Goals: vs_curl_ratio <= 1.0, loop_lag_p99_ms <= 20.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipyjobs import Job, JobContext, JobManager
from ipyjobs.models.download import Transfer, TransferResult, fetch
from tests.support.http_server import LoopbackServer

SIZE = 1 << 30
BLOCK = 64 << 20
ROUNDS = 5
LAG_PERIOD = 0.01


@dataclass
class BenchFetch(Job, kind="bench.fetch"):
    transfer: Transfer

    async def run(self, ctx: JobContext) -> TransferResult:
        return await fetch(self.transfer, ctx)


def make_source(folder: Path) -> tuple[Path, str]:
    """The file to serve, flushed to disk so its write-back does not run during the rounds."""
    path = folder / "source.bin"
    hasher = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(SIZE // BLOCK):
            block = os.urandom(BLOCK)
            hasher.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return path, hasher.hexdigest()


def curl_round(url: str, dest: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", str(dest), url], check=True)
    elapsed = time.perf_counter() - started
    if dest.stat().st_size != SIZE:
        raise RuntimeError(f"curl wrote {dest.stat().st_size} bytes")
    dest.unlink()
    return elapsed


async def ipyjobs_round(home: Path, transfer: Transfer, lags: list[float]) -> float:
    async with JobManager(home) as manager:
        done = anyio.Event()

        async def measure_lag() -> None:
            while not done.is_set():
                started = time.perf_counter()
                await anyio.sleep(LAG_PERIOD)
                lags.append(time.perf_counter() - started - LAG_PERIOD)

        async with anyio.create_task_group() as group:
            group.start_soon(measure_lag)
            started = time.perf_counter()
            result = await manager.dispatch(BenchFetch(transfer))
            elapsed = time.perf_counter() - started
            done.set()
    if result.size != SIZE or result.received != SIZE:
        raise RuntimeError(f"unexpected result {result}")
    transfer.dest.unlink()
    return elapsed


def main() -> None:
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed for the baseline")
    folder = Path(tempfile.mkdtemp(prefix="ipyjobs-bench-download-"))
    try:
        print(f"writing {SIZE >> 20} MiB of random bytes to {folder} ...", flush=True)
        source, sha256 = make_source(folder)
        curl_times: list[float] = []
        ipyjobs_times: list[float] = []
        lags: list[float] = []
        with LoopbackServer() as server:
            url = server.add_file("/model.bin", source)
            transfer = Transfer(url, folder / "out" / "model.bin", sha256, SIZE, "bench model")
            for round_ in range(1, ROUNDS + 1):
                curl_times.append(curl_round(url, folder / "curl.bin"))
                ipyjobs_times.append(anyio.run(ipyjobs_round, folder / "home", transfer, lags))
                print(
                    f"round {round_}: curl {curl_times[-1]:.3f} s, "
                    f"ipyjobs {ipyjobs_times[-1]:.3f} s (verified, fsynced, renamed)",
                    flush=True,
                )
        curl, ours = statistics.median(curl_times), statistics.median(ipyjobs_times)
        lags.sort()
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000
        print(f"curl    median {curl:.3f} s ({SIZE / curl / 1e9:.2f} GB/s)")
        print(f"ipyjobs median {ours:.3f} s ({SIZE / ours / 1e9:.2f} GB/s)")
        p50, worst = lags[len(lags) // 2] * 1000, lags[-1] * 1000
        print(
            f"loop lag, {len(lags)} sleeps: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms"
        )
        print(
            json.dumps({"vs_curl_ratio": round(ours / curl, 3), "loop_lag_p99_ms": round(p99, 2)})
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
