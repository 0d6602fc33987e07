"""The exceptions the engine raises.

Everything derives from :class:`JobError`, so ``except ipyjobs.JobError`` catches any engine
problem while a job's own exceptions (``ValueError``, ``OSError``, ...) reach ``await handle``
unchanged.
"""

from __future__ import annotations


class JobError(Exception):
    """Base class of every error the engine itself raises."""


class JobCancelled(JobError):
    """The job was cancelled.

    Raised inside the job by ``await ctx.checkpoint()`` or ``token.check()`` once a cancel was
    requested, and by ``await handle`` for a job that ended cancelled.
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
