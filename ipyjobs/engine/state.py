"""Job states and the transitions between them."""

from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    """Where a job is in its life.

    ``interrupted`` means the job was active when its manager closed or its process died; it is
    the only non-terminal state that no task is driving, and ``resume`` leaves it.
    """

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_terminal(self) -> bool:
        """Completed, failed and cancelled never change again."""
        return self in _TERMINAL

    @property
    def is_active(self) -> bool:
        """A task is driving the job (it may be waiting for a slot or parked)."""
        return self in _ACTIVE


class Intent(str, enum.Enum):
    """A control request recorded before the job is signalled, shown until it takes effect."""

    PAUSING = "pausing"
    CANCELLING = "cancelling"


_TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
_ACTIVE = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.PAUSED})

#: Every legal move. A paused job goes back to ``queued`` if it never started.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset(
        {JobState.RUNNING, JobState.PAUSED, JobState.CANCELLED, JobState.INTERRUPTED}
    ),
    JobState.RUNNING: frozenset(
        {
            JobState.PAUSED,
            JobState.COMPLETED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.INTERRUPTED,
        }
    ),
    # A paused job can still end: a job body may finish in one of its own tasks while another
    # is parked at a checkpoint.
    JobState.PAUSED: frozenset(
        {
            JobState.RUNNING,
            JobState.QUEUED,
            JobState.COMPLETED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.INTERRUPTED,
        }
    ),
    JobState.INTERRUPTED: frozenset({JobState.QUEUED}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def is_legal(current: JobState, new: JobState) -> bool:
    """Whether the engine may move a job from ``current`` to ``new``."""
    return new in TRANSITIONS[current]
