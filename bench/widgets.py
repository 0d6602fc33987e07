"""Comm messages the jobs panel sends under a flood: 100 jobs x 10,000 progress updates.

Counted with a recording comm (what would go to the browser). Prints human lines, then as the
last line ``{"comm_msgs_per_s": M, "final_values_exact": true|false}``. Goal: M <= 100, exact.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipyjobs import JobManager
from tests.support.flood import JOBS, UPDATES, flood_panel


async def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        async with JobManager(home) as manager:
            started = time.monotonic()
            rate, exact, _ = await flood_panel(manager)
            took = time.monotonic() - started
    print(f"{JOBS} jobs x {UPDATES:,} updates in {took:.1f} s; panel sent {rate:.1f} msgs/s")
    print(json.dumps({"comm_msgs_per_s": round(rate, 1), "final_values_exact": exact}))


if __name__ == "__main__":
    anyio.run(main)
