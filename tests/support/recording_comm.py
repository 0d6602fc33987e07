"""A comm that records what widgets would send to the front end, to count messages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import comm
from comm.base_comm import BaseComm


@dataclass
class Recorder:
    """Every message widgets published: (time, msg_type, data)."""

    messages: list[tuple[float, str, dict]] = field(default_factory=list)

    def updates(self, since: float = 0.0) -> int:
        """State updates (``comm_msg``) sent after ``since``."""
        return sum(1 for at, kind, _ in self.messages if kind == "comm_msg" and at >= since)

    def opened(self) -> int:
        return sum(1 for _, kind, _ in self.messages if kind == "comm_open")


class RecordingComm(BaseComm):
    recorder: Recorder

    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None,
                    buffers: Any = None, **keys: Any) -> None:  # fmt: skip
        self.recorder.messages.append((time.monotonic(), msg_type, data or {}))


@contextmanager
def recording_comms() -> Iterator[Recorder]:
    """Within the block, new widgets publish into the returned recorder."""
    recorder = Recorder()

    def create(*args: Any, **kwargs: Any) -> RecordingComm:
        created = RecordingComm.__new__(RecordingComm)
        created.recorder = recorder
        created.__init__(*args, **kwargs)
        return created

    original = comm.create_comm
    comm.create_comm = create
    try:
        yield recorder
    finally:
        comm.create_comm = original
