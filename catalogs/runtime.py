"""Where long per-orbit jobs run: one place that turns a ``scheduler`` argument into a dask
client (shared by batch inference and climatology builds).

``scheduler``: ``None`` → a ``LocalCluster`` of ``n_workers`` single-threaded processes (closed
afterwards); a scheduler address (``tcp://host:8786``, e.g. a dask-jobqueue SLURM cluster); or
an existing ``distributed.Client`` (left open).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager


@contextmanager
def dask_client(scheduler=None, n_workers: int = 2):
    from distributed import Client, LocalCluster

    cluster = None
    own = False
    if scheduler is None:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR)
        client, own = Client(cluster), True
    elif isinstance(scheduler, str):
        client, own = Client(scheduler), True
    else:
        client = scheduler
    try:
        yield client
    finally:
        if own:
            client.close()
        if cluster is not None:
            cluster.close()
