"""The job engine: jobs, their manager, tokens, progress, events and the store.

It imports nothing from the rest of ipyjobs (nor ipywidgets), so it serves scripts, tests and
terminals as well as notebooks.
"""

from . import events
from .context import JobContext
from .errors import (
    Cancelled,
    InvalidTransition,
    JobCancelled,
    JobError,
    JobInterrupted,
    JobNotFound,
    ManagerClosed,
    NotResumable,
    UnknownJobKind,
)
from .executor import Executor, LocalExecutor
from .functions import ItemFailed, MapResults, track
from .handle import ItemError, JobHandle
from .job import Job, job_class, registered_kinds
from .kernel import jobs
from .manager import JobManager
from .paths import data_home
from .progress import ProgressSnapshot
from .state import Intent, JobState
from .store import JobRecord
from .token import InterruptToken, current_token

__all__ = [
    "Cancelled",
    "Executor",
    "Intent",
    "InterruptToken",
    "InvalidTransition",
    "ItemError",
    "ItemFailed",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobHandle",
    "JobInterrupted",
    "JobManager",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "LocalExecutor",
    "ManagerClosed",
    "MapResults",
    "NotResumable",
    "ProgressSnapshot",
    "UnknownJobKind",
    "current_token",
    "data_home",
    "events",
    "job_class",
    "jobs",
    "registered_kinds",
    "track",
]
