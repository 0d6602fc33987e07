"""Scale-out: a job's blocking work on a Dask ``distributed`` cluster.

The engine's seam is :class:`ipyjobs.engine.executor.Executor`; this package adds the Dask one
and the worker side (tokens, progress, models). ``distributed`` is imported only when a
cluster is used (``pip install 'ipyjobs[dask]'``)::

    jobs = ipyjobs.jobs()
    jobs.use_dask()                        # a LocalCluster of processes on this machine
    jobs.use_dask("tcp://scheduler:8786")  # or any cluster: dask-gateway, dask-jobqueue...
"""

from __future__ import annotations

from typing import Any

from .dask import DaskExecutor, SchedulerLost, WorkerLost

__all__ = ["DaskExecutor", "SchedulerLost", "WorkerLost", "dask_executor", "local_cluster"]


def local_cluster(
    n_workers: int | None = None,
    *,
    threads_per_worker: int = 1,
    host: str = "127.0.0.1",
    dashboard_address: str | None = ":0",
    **options: Any,
) -> Any:
    """A ``distributed.Client`` of a new ``LocalCluster`` of worker processes on this machine.

    One single-threaded worker process per core by default: whisper and tesseract do their
    own threading badly under the GIL, and a process per file scales as OCRmyPDF does.
    ``dashboard_address=":0"`` takes a free port (``None``: no dashboard).
    """
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "Dask is not installed: pip install 'ipyjobs[dask]' (or distributed)"
        ) from exc
    cluster = distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        host=host,
        dashboard_address=dashboard_address,
        **options,
    )
    return distributed.Client(cluster)


def dask_executor(client_or_address: Any = None, **cluster_options: Any) -> DaskExecutor:
    """The executor for ``manager.use_dask``: an address, a client, or a new local cluster."""
    if client_or_address is None:
        return DaskExecutor(local_cluster(**cluster_options), owned=True)
    if cluster_options:
        raise TypeError(
            "cluster options are for a new LocalCluster (use_dask() with no client): "
            f"got {sorted(cluster_options)} together with {client_or_address!r}"
        )
    return DaskExecutor(client_or_address)
