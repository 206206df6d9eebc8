"""Run a sweep's tasks on Dask: a given scheduler, a LocalCluster, or SLURM/PBS/SGE via dask-jobqueue.

Workers need not share a filesystem with the client. Each task carries the code commit (in a git
bundle scattered once to every worker) and its arguments; the worker runs the command in a
temporary checkout, pushes outputs to the DVC remote and sends the run's folder back, and the
client writes the commit. With a shared filesystem (`shared_fs=True`, the default for a
LocalCluster) the worker runs in the repository itself and commits directly (compare-and-swap).

A worker that dies mid-task leaves its run recorded as `died`: workers announce every run they
start, and a run announced but never finished is recorded from its staged record at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .. import store
from .._extras import require
from ..errors import UsageError
from ..model.record import RunRecord
from .executors import Interrupted, Result, Task

JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster"}
POLL_S = 0.05
CANCEL_POLL_S = 0.5
GRACE_S = 30.0  # how long Ctrl-C waits for running tasks to record themselves as interrupted
SETTLE_S = 3.0  # shared filesystem: how long a lost attempt's run may take to commit itself


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


# -- on the worker --------------------------------------------------------------------------


def execute(payload: dict[str, Any], bundle: bytes | None = None) -> dict[str, Any]:
    """Run one task on a Dask worker; returns the run (and in clone mode its folder's files)."""
    from distributed import Event, get_worker

    worker = get_worker()
    cancel = Event(payload["topic"] + "-cancel")
    workdir = None
    if payload["shared_repo"]:
        repo = store.find_repo(payload["shared_repo"])
    else:
        assert bundle is not None
        cache = Path(tempfile.gettempdir()) / f"gittrack-dask-{os.getuid()}"
        cache.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="task-", dir=cache))
        repo = store.clone_from_bundle(
            bundle, payload["code"], payload["settings"], workdir / "repo", cache
        )
    try:
        repo.make_dir(repo.state_dir)
        fd, name = tempfile.mkstemp(prefix="run-id-", dir=repo.state_dir)
        os.close(fd)
        id_file = Path(name)
        result_file = id_file.with_suffix(".result")
        env = {
            **os.environ,
            "GITTRACK_REPO": str(repo.root),
            "GITTRACK_DASK_ID_FILE": str(id_file),
            "GITTRACK_DASK_RESULT_FILE": str(result_file),
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "gittrack.execute.dask_executor",
                json.dumps(payload["task"]),
            ],
            cwd=repo.root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        stderr: list[bytes] = []
        reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        run_id, announced, last_check, signalled = "", False, 0.0, False
        while proc.poll() is None:
            if not run_id:
                run_id = id_file.read_text().strip()
            if run_id and not announced:
                with contextlib.suppress(OSError):
                    staged = (repo.state_dir / "running" / run_id / "run.toml").read_text()
                    worker.log_event(
                        payload["topic"], {"key": payload["key"], "run": run_id, "record": staged}
                    )
                    announced = True
            if not signalled and time.monotonic() - last_check > CANCEL_POLL_S:
                last_check = time.monotonic()
                with contextlib.suppress(Exception):
                    if cancel.is_set():  # once: a second Ctrl-C would cut its recording short
                        proc.send_signal(signal.SIGINT)
                        signalled = True
            time.sleep(POLL_S)
        run_id = run_id or id_file.read_text().strip()
        id_file.unlink()
        reported: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            reported = json.loads(result_file.read_text())
            result_file.unlink()
        if reported.get("reused"):
            return {
                "run": reported.get("run_id", ""),
                "status": reported.get("status", ""),
                "reused": True,
            }
        run_id = reported.get("run_id") or run_id
        reader.join(timeout=5)
        result: dict[str, Any] = {
            "run": run_id,
            "status": "error",
            "stderr": b"".join(stderr).decode(errors="replace")[-4000:],
        }
        data = store.read_record_bytes(repo, run_id) if run_id else None
        if data is None:
            return result
        record = RunRecord.from_toml(data, run_id)
        result["status"] = record.status
        if not payload["shared_repo"]:
            result["data"] = _push_outputs(repo)
            result["files"] = store.run_folder_contents(repo, run_id)
        return result
    finally:
        repo.close()
        if workdir is not None:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


def _die_with_parent() -> None:
    """In the child: die with the worker, so that a killed worker leaves no orphan run."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.setpgrp()  # Ctrl-C on the client's terminal reaches the client only


def _push_outputs(repo: store.Repo) -> Any:
    """Push the run's outputs from the worker's checkout to the DVC remote."""
    from ..ops.data import push_outputs

    result = push_outputs(repo)
    return result if isinstance(result, int | str | list | dict | None) else str(result)


def _announcer(path: str) -> Callable[[str], None] | None:
    """A callback writing the task's run id to `path`, for the worker to announce it."""
    if not path:
        return None

    def announce(run_id: str) -> None:
        Path(path + ".tmp").write_text(run_id)
        os.replace(path + ".tmp", path)

    return announce


def _main(argv: list[str]) -> int:
    """`python -m gittrack.execute.dask_executor TASK_JSON`: run one task in this process."""
    from . import executors

    task = Task(**json.loads(argv[0]))
    task.script = str(Path(task.script).resolve())
    task.repo, task.cwd = os.environ.get("GITTRACK_REPO"), os.getcwd()
    result = executors.execute(
        task, on_start=_announcer(os.environ.get("GITTRACK_DASK_ID_FILE", ""))
    )
    if path := os.environ.get("GITTRACK_DASK_RESULT_FILE"):
        Path(path).write_text(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "status": result.status,
                    "reused": result.reused,
                    "error": result.error,
                }
            )
        )
    if result.error and result.status == "error":
        print(result.error, file=sys.stderr)
    return 0 if result.ok else 1


# -- on the client --------------------------------------------------------------------------


class DaskRunner:
    """Submits tasks to a Dask client, records what comes back, retries and reconciles."""

    def __init__(
        self,
        repo: store.Repo,
        client: Any,
        *,
        shared_fs: bool = False,
        retries: int = 0,
        progress: bool = True,
    ) -> None:
        self.repo = repo
        self.client = client
        self.shared_fs = shared_fs
        self.retries = retries
        self.progress = progress
        self.topic = "gittrack-" + store.secrets_token()
        self._announced: dict[str, list[tuple[str, str]]] = {}  # key -> [(run id, staged toml)]
        self._lock = threading.Lock()

    def _on_event(self, event: Any) -> None:
        message = event[1] if isinstance(event, tuple) else event
        with self._lock:
            self._announced.setdefault(message["key"], []).append(
                (message["run"], message["record"])
            )

    def run(self, tasks: Iterable[Task]) -> list[Result]:
        """Run every task; the results in the order of `tasks`."""
        items = list(tasks)
        order = {id(t): i for i, t in enumerate(items)}
        return sorted(self.iter_run(items), key=lambda r: order[id(r.task)])

    def iter_run(self, tasks: Iterable[Task]) -> Generator[Result, None, None]:
        """Run tasks, yielding each task's Result as it ends (after its last attempt).

        Ctrl-C, or closing the iterator early, cancels the queued tasks and interrupts the
        running ones, which are recorded as `interrupted`.
        """
        from distributed import Event, as_completed
        from tqdm import tqdm

        items = list(tasks)
        payloads = [self._payload(t) for t in items]
        results = [Result(t, status="pending", attempts=0) for t in items]
        base = {"topic": self.topic, "shared_repo": str(self.repo.root) if self.shared_fs else ""}
        bundle = None
        from ..recording.codefiles import SKIP, settings

        self.code = store.snapshot_worktree(self.repo, "dask-sweep", settings(self.repo)[1], SKIP)
        if not self.shared_fs:
            # runs consuming earlier runs (RunRef inputs) need the records in their checkout
            with_runs = any(
                t["pinned"] or _consumes_runs(self.repo.root / t["script"]) for t in payloads
            )
            base["settings"] = store.settings_commit(self.repo, with_runs=with_runs)
            base["code"] = self.code.commit
            data = store.make_bundle(
                self.repo, {"code": self.code.commit, "settings": base["settings"]}
            )
            bundle = self.client.scatter(data, broadcast=True)
        self.client.subscribe_topic(self.topic, self._on_event)
        cancel = Event(self.topic + "-cancel", client=self.client)
        futures: dict[Any, tuple[int, int]] = {}

        def submit(i: int, attempt: int) -> Any:
            key = f"{self.topic}-{i}-{attempt}"
            payload = {**base, "key": key, "task": payloads[i]}
            future = self.client.submit(execute, payload, bundle, key=key, pure=False, retries=0)
            futures[future] = (i, attempt)
            results[i].attempts = attempt
            return future

        if self.progress and getattr(self.client, "dashboard_link", None):
            print(f"Dask dashboard: {self.client.dashboard_link}", file=sys.stderr)
        bar = tqdm(
            total=len(items), unit="run", disable=not self.progress, file=sys.stderr, desc="sweep"
        )
        try:
            pending = as_completed([submit(i, 1) for i in range(len(items))])
            for future in pending:
                i, attempt = futures.pop(future)
                result = results[i]
                done = self._collect(future, result, f"{self.topic}-{i}-{attempt}")
                if done in ("failed", "died", "error") and attempt <= self.retries:
                    pending.add(submit(i, attempt + 1))
                    continue
                bar.update(1)
                bar.set_postfix_str(_counts(results), refresh=False)
                yield result
        except GeneratorExit:  # the consumer stopped early (fail-fast)
            self._interrupt(cancel, futures, results)
            raise
        except KeyboardInterrupt:
            stopped = self._interrupt(cancel, futures, results)
            raise Interrupted(stopped) from None
        finally:
            bar.close()
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(self.topic)

    def _payload(self, task: Task) -> dict[str, Any]:
        """The task as the worker gets it: the script relative to the repository root."""
        script = Path(task.script)
        if script.is_absolute():
            with contextlib.suppress(ValueError):
                script = script.resolve().relative_to(self.repo.root.resolve())
        return asdict(replace(task, script=script.as_posix(), repo=None, cwd=None))

    def _collect(self, future: Any, outcome: Result, key: str) -> str:
        """Record one finished attempt; returns its status."""
        result: dict[str, Any]
        try:
            result = future.result()
        except Exception as exc:  # KilledWorker, a lost connection: the attempt died
            result = {"run": "", "status": "died", "error": f"{type(exc).__name__}: {exc}"}
        run_id = result.get("run", "")
        if run_id and "files" in result:
            files = dict(result["files"])
            record = RunRecord.from_toml(files.pop("run.toml"), run_id)
            if not self.shared_fs:  # recorded in a checkout of self.code: compare with HEAD
                self._code_against_head(record)
            if record.inputs:  # the worker's checkout knows the inputs' runs, not their commits
                from ..index.db import Index

                index = Index(self.repo)
                for item in record.inputs:
                    row = index.get(item.run)
                    item.commit = (row or {}).get("commit") or item.commit
            store.write_run(self.repo, record, files)
        status: str = result.get("status", "error")
        outcome.reused = bool(result.get("reused"))
        if run_id and (data := store.read_record_bytes(self.repo, run_id)):
            record = RunRecord.from_toml(data, run_id)
            outcome.metrics, outcome.duration_s = dict(record.metrics), record.duration_s
        died = self._record_died(
            key,
            keep=run_id,
            task=outcome.task,
            reason=result.get("error", ""),
            always=status == "died" and not run_id,
        )
        outcome.runs.extend(died)
        if run_id:
            outcome.runs.append(run_id)
        outcome.run_id = run_id or (died[-1] if died else "")
        outcome.status = status
        outcome.error = result.get("error") or (
            result.get("stderr", "") if status == "error" else ""
        )
        return status

    def _code_against_head(self, record: RunRecord) -> None:
        """A worker's code record, made in a checkout of the sweep's snapshot, as of HEAD."""
        code = record.code
        found = self.repo.reader().read(f"{self.code.head}^{{tree}}")
        head_tree = found[0] if found else ""
        in_head = store.tree_blobs(self.repo, head_tree, code.files) if head_tree else {}
        for path, entry in code.files.items():
            entry.dirty = path not in in_head or in_head[path][1] != entry.blob
        code.dirty = any(f.dirty for f in code.files.values())
        code.head, code.branch, code.detached = self.code.head, self.code.branch, self.code.detached
        if not code.dirty and head_tree:
            code.commit, code.tree = self.code.head, head_tree

    def _record_died(
        self,
        key: str,
        *,
        keep: str = "",
        task: Task | None = None,
        reason: str = "",
        always: bool = False,
        status: str = "died",
    ) -> list[str]:
        """Record runs announced for `key` that never finished (and, if none, the attempt)."""
        if always:
            time.sleep(0.2)  # let the worker's last announcement arrive
        with self._lock:
            announced = [a for a in self._announced.pop(key, []) if a[0] != keep]
        recorded = []
        for run_id, staged in announced:
            if self.shared_fs:  # the run may still be committing itself (e.g. interrupted)
                deadline = time.monotonic() + SETTLE_S
                while not self._has(run_id) and time.monotonic() < deadline:
                    time.sleep(0.1)
            if self._has(run_id):
                if run_id != keep:
                    recorded.append(run_id)
                continue
            record = RunRecord.from_toml(staged, run_id)
            recorded.append(self._write_lost(record, status, reason))
        if always and not announced and task is not None:
            from ..recording.context import new_run_id, now

            record = RunRecord(
                id=new_run_id(),
                command=task.script,
                argv=list(task.args),
                started=now(),
                name=task.name,
                experiment=task.experiment,
                code=self.code,
            )
            recorded.append(
                self._write_lost(
                    record, status, reason or "the worker was lost before the run started"
                )
            )
        return recorded

    def _has(self, run_id: str) -> bool:
        return store.read_record_bytes(self.repo, run_id) is not None

    def _write_lost(self, record: RunRecord, status: str, reason: str) -> str:
        from ..recording.context import now

        record.status = status
        record.finished = record.finished or now()
        if record.started:
            record.duration_s = round((record.finished - record.started).total_seconds(), 3)
        record.error = {
            "type": "WorkerLost" if status == "died" else "Interrupted",
            "message": reason or status,
        }
        record.env.setdefault("executor", "dask")
        store.write_run(self.repo, record, {}, if_absent=True)
        return record.id

    def _interrupt(
        self, cancel: Any, futures: dict[Any, tuple[int, int]], results: list[Result]
    ) -> list[Result]:
        """Ctrl-C: cancel queued tasks, let running ones record `interrupted`, record the rest.

        Returns the Results of the tasks it stopped (interrupted or cancelled).
        """
        from distributed import wait

        logging.getLogger("distributed").setLevel(logging.ERROR)  # no warnings about cancelling
        stopped = [results[i] for i, _ in futures.values()]
        with contextlib.suppress(Exception):
            cancel.set()
        with self._lock:
            started = set(self._announced)
        queued = [f for f, (i, a) in futures.items() if f"{self.topic}-{i}-{a}" not in started]
        with contextlib.suppress(Exception):
            self.client.cancel(queued)
        for f in queued:
            cancelled = results[futures.pop(f)[0]]
            cancelled.status, cancelled.error = "cancelled", "sweep interrupted before it started"
        running = list(futures)
        with contextlib.suppress(Exception):
            wait(running, timeout=GRACE_S)
        for future in running:
            i, attempt = futures.pop(future)
            key = f"{self.topic}-{i}-{attempt}"
            if future.done() and future.status == "finished":
                self._collect(future, results[i], key)
            else:
                with contextlib.suppress(Exception):
                    future.cancel()
                results[i].runs += self._record_died(
                    key, status="interrupted", reason="sweep interrupted (Ctrl-C)"
                )
                results[i].run_id = results[i].runs[-1] if results[i].runs else ""
                results[i].status = "interrupted"
        return stopped


def _consumes_runs(script: Path) -> bool:
    """Whether a script may take earlier runs as inputs (it mentions RunRef)."""
    try:
        return "RunRef" in script.read_text(errors="replace")
    except OSError:
        return True


def _counts(outcomes: list[Result]) -> str:
    counts: dict[str, int] = {}
    for o in outcomes:
        if o.status != "pending":
            counts[o.status] = counts.get(o.status, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def run_tasks(
    repo: store.Repo,
    tasks: Iterable[Task],
    *,
    kind: str = "dask",
    scheduler: str | None = None,
    client: Any = None,
    shared_fs: bool | None = None,
    retries: int = 0,
    progress: bool = True,
    workers: int | None = None,
    **cluster_options: Any,
) -> list[Result]:
    """Run tasks on Dask and record every run on the branch; the results in task order.

    `shared_fs` defaults to True for a LocalCluster (same machine) and False otherwise.
    """
    if shared_fs is None:
        shared_fs = client is None and scheduler is None and kind == "dask"
    if client is not None:
        return DaskRunner(
            repo, client, shared_fs=shared_fs, retries=retries, progress=progress
        ).run(tasks)
    with connect(
        kind, scheduler=scheduler, workers=workers, repo_root=repo.root, **cluster_options
    ) as dask_client:
        runner = DaskRunner(
            repo, dask_client, shared_fs=shared_fs, retries=retries, progress=progress
        )
        return runner.run(tasks)


# -- behind the executors interface (gittrack sweep --executor dask|slurm|pbs|sge) ----------


class DaskExecutor:
    """The `dask` (and `slurm`, `pbs`, `sge`) executor: runs a sweep's tasks through Dask."""

    def __init__(
        self,
        jobs: int = 1,
        *,
        kind: str = "dask",
        scheduler: str | None = None,
        retries: int = 0,
        shared_fs: bool | None = None,
        progress: bool = False,
        workers: int | None = None,
        **cluster_options: Any,
    ) -> None:
        if kind not in ("dask", *JOBQUEUE):
            raise UsageError(
                f"Unknown Dask cluster kind '{kind}'; use dask, {', '.join(JOBQUEUE)}."
            )
        if retries < 0:
            raise UsageError(f"--retries must be 0 or more, not {retries}.")
        self.kind, self.scheduler, self.retries, self.progress = kind, scheduler, retries, progress
        self.shared_fs = shared_fs
        self.workers = workers or (jobs if jobs > 1 else None)
        self.jobs = jobs
        self.cluster_options = {k: v for k, v in cluster_options.items() if v is not None}
        if kind in JOBQUEUE and not scheduler:
            from .batch import check_scheduler

            check_scheduler(kind)  # before importing Dask: a missing sbatch is said at once

    def run(self, tasks: Iterable[Task]) -> Iterator[Result]:
        items = list(tasks)
        if not items:
            return
        repo = store.find_repo(items[0].repo or items[0].cwd or None)
        shared = self.shared_fs
        if shared is None:
            shared = self.scheduler is None and self.kind == "dask"
        options = dict(self.cluster_options)
        if self.kind in JOBQUEUE:
            options.setdefault("jobs", self.jobs)
        with connect(
            self.kind,
            scheduler=self.scheduler,
            workers=self.workers,
            repo_root=repo.root,
            **options,
        ) as client:
            runner = DaskRunner(
                repo, client, shared_fs=shared, retries=self.retries, progress=self.progress
            )
            with contextlib.closing(runner.iter_run(items)) as results:
                yield from results


def _register() -> None:
    """Add `dask`, `slurm`, `pbs` and `sge` to the executor registry."""
    import functools

    from . import executors

    for kind in ("dask", *JOBQUEUE):
        executors.EXECUTORS.setdefault(kind, functools.partial(DaskExecutor, kind=kind))


_register()

if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
