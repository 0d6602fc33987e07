"""Module-level functions for map tests: importable, so a map of them resumes from the store."""

from __future__ import annotations

import os
import time

import ipyjobs

#: The items that fail in :func:`square_or_fail`.
FAILING = {13, 500, 987}


def square_or_fail(x: int) -> int:
    if x in FAILING:
        raise ValueError(f"item {x} is bad\n(a second line that item errors leave out)")
    return x * x


def logged_square(x: int) -> int:
    """Appends ``x`` to ``$MAP_LOG`` (one line per call), sleeping 10 ms."""
    time.sleep(0.01)
    with open(os.environ["MAP_LOG"], "a") as log:
        log.write(f"{x}\n")
    return x * x


def steps(n: int, delay: float) -> int:
    """``n`` steps of ``delay`` s, through ipyjobs.track (pause waits, cancel raises)."""
    total = 0
    for i in ipyjobs.track(range(n)):
        time.sleep(delay)
        total += i
    return total


def sleep_ms(_: object) -> None:
    time.sleep(0.001)


def slow_item(x: int) -> int:
    """Four seconds of 20 ms steps through ipyjobs.track."""
    for _ in ipyjobs.track(range(200)):
        time.sleep(0.02)
    return x
