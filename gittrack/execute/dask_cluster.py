"""Dask clusters for sweeps: a scheduler, a LocalCluster, or SLURM/PBS/SGE via dask-jobqueue."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import store
from .._extras import require
from ..errors import UsageError

JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster"}


# -- clusters -------------------------------------------------------------------------------


def load_cluster_config(repo_root: Path, kind: str) -> dict[str, Any]:
    """Options for `kind` from gittrack.yaml (`cluster: {slurm: {...}}`) in the repository."""
    path = repo_root / "gittrack.yaml"
    if not path.exists():
        return {}
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    section = (data.get("cluster") or {}).get(kind) or {}
    if not isinstance(section, Mapping):
        raise UsageError(
            f"gittrack.yaml: 'cluster.{kind}' must be a mapping of dask-jobqueue options."
        )
    return dict(section)


def jobqueue_cluster(
    kind: str,
    *,
    cores: int | None = None,
    memory: str | None = None,
    walltime: str | None = None,
    queue: str | None = None,
    repo_root: Path | None = None,
    log_directory: str | None = None,
    **extra: Any,
) -> Any:
    """A dask-jobqueue cluster (SLURM, PBS or SGE) from flags, gittrack.yaml and dask's config.

    Flags win over gittrack.yaml, which wins over dask's own `jobqueue.<kind>` configuration;
    `log_directory` (where the worker jobs' output goes) is a default gittrack.yaml may change.
    Nothing is submitted until the cluster is scaled.
    """
    if kind not in JOBQUEUE:
        raise UsageError(f"Unknown cluster kind '{kind}'; use one of {', '.join(JOBQUEUE)}.")
    require(f"--executor {kind}", "cluster", "distributed", "dask_jobqueue")
    dask_jobqueue = _import_jobqueue()

    options: dict[str, Any] = {"log_directory": log_directory} if log_directory else {}
    options.update(load_cluster_config(repo_root, kind) if repo_root else {})
    flags = {"cores": cores, "memory": memory, "walltime": walltime, "queue": queue}
    options.update({k: v for k, v in flags.items() if v is not None})
    options.update(extra)
    cls = getattr(dask_jobqueue, JOBQUEUE[kind])
    try:
        return cls(**options)
    except ValueError as exc:
        # dask-jobqueue's message goes on with a code example: keep its first sentence
        reason = re.sub(r",?\s*for example:?$", "", str(exc).splitlines()[0]).rstrip(":, ")
        raise UsageError(
            f"Cannot configure the {kind} cluster: {reason} (give --cores and --memory, or set "
            f"them under cluster.{kind} in gittrack.yaml)."
        ) from exc


def _import_jobqueue() -> Any:
    """dask_jobqueue, without the SIGINT handler its `runner` module installs on import.

    That handler turns Ctrl-C into a silent `sys.exit()`: the sweep would end with exit 0 and
    record nothing about its running tasks.
    """
    previous = signal.getsignal(signal.SIGINT)
    import dask_jobqueue

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, previous)
    return dask_jobqueue


@contextlib.contextmanager
def connect(
    kind: str = "dask",
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    jobs: int | None = None,
    repo_root: Path | None = None,
    **cluster_options: Any,
) -> Any:
    """A Dask client for `kind`: the given scheduler, a LocalCluster, or a jobqueue cluster."""
    import warnings

    require(f"--executor {kind}", "dask" if kind == "dask" else "cluster", "distributed")
    from distributed import Client, LocalCluster

    # another Dask (or gittrack ui) holds port 8787: the dashboard moves, no need to warn
    warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)

    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise UsageError(
                f"Cannot reach the Dask scheduler at {scheduler} ({exc}); check the address "
                "and that 'dask scheduler' is running."
            ) from exc
        with client:
            yield client
        return
    if kind == "dask":
        n = workers or os.cpu_count() or 1
        with (
            LocalCluster(  # worker threads: Ctrl-C reaches this process only (each run is a
                n_workers=n,  # subprocess in its own process group, interrupted via an Event)
                threads_per_worker=1,
                processes=False,
                dashboard_address="127.0.0.1:0",
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    from .batch import check_scheduler, try_submit

    check_scheduler(kind)  # in seconds: sbatch missing, or SLURM not answering
    if repo_root is not None:  # the worker jobs' logs, out of the working tree
        logs = store.find_repo(repo_root).state_dir / "jobs"
        logs.mkdir(parents=True, exist_ok=True)
        cluster_options["log_directory"] = str(logs)
    cluster = jobqueue_cluster(kind, repo_root=repo_root, **cluster_options)
    try:
        if kind == "slurm":
            try_submit(cluster.job_script())
        cluster.scale(jobs=jobs or 1)
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()
