"""The exceptions the engine raises.

Everything derives from :class:`JobError`, so ``except ipyjobs.JobError`` catches any engine
problem while a job's own exceptions (``ValueError``, ``OSError``, ...) reach ``await handle``
unchanged.
"""

from __future__ import annotations


class JobError(Exception):
    """Base class of every error the engine itself raises."""


class Cancelled(BaseException):
    """What a cancel raises *inside* the job: ``await ctx.checkpoint()``, ``token.check()`` in
    its worker threads, and ``ctx.run_sync`` once the job is being cancelled.

    Like ``trio.Cancelled`` and ``asyncio.CancelledError`` it derives from ``BaseException``, so
    an ``except Exception`` around per-item work lets it through. It is level-triggered: catching
    it does not undo the cancel, the next checkpoint raises it again. Let it propagate (clean up
    in ``finally``). Code outside the job sees the public :class:`JobCancelled` instead.
    """


class JobCancelled(JobError):
    """The job was cancelled: what ``await handle`` raises for a job that ended cancelled.

    Inside the cancelled job itself, checkpoints raise :class:`Cancelled` instead.
    """


class JobInterrupted(JobError):
    """The job stopped because its manager closed (or its process died) while it was active.

    An interrupted job keeps its last checkpoint; ``manager.resume(job_id)`` continues it.
    """


class InvalidTransition(JobError):
    """A control request that the job's current state does not allow, such as resuming a job
    that already completed."""


class UnknownJobKind(JobError):
    """A stored job names a kind that no imported ``Job`` subclass registered."""


class JobNotFound(JobError):
    """No job with this id exists in the manager or its store."""


class NotResumable(JobError):
    """The job cannot be rebuilt from its record (its kind is not resumable, or it ended)."""


class ManagerClosed(JobError):
    """The manager was closed; it accepts no more jobs."""
