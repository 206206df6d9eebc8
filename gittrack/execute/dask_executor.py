"""Run a sweep's tasks on Dask: a scheduler, a LocalCluster, or SLURM/PBS/SGE (dask-jobqueue).

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
import logging
import sys
import threading
import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeGuard

from .. import store
from ..errors import RecordError, UsageError
from ..model.record import RunRecord
from ..model.schema import RUN_ID, safe_name
from .dask_cluster import JOBQUEUE, connect, jobqueue_cluster as jobqueue_cluster
from .dask_worker import execute
from .executors import Interrupted, Result, Task

GRACE_S = 30.0  # how long Ctrl-C waits for running tasks to record themselves as interrupted
SETTLE_S = 3.0  # shared filesystem: how long a lost attempt's run may take to commit itself


# -- on the client --------------------------------------------------------------------------


def _is_run_id(value: object) -> TypeGuard[str]:
    return type(value) is str and RUN_ID.fullmatch(value) is not None


def returned_folder(run_id: str, files: Any) -> tuple[RunRecord, dict[str, bytes]]:
    """The record and the other files of the run folder a worker sent back, checked as any
    input from elsewhere: plain file names, bytes, a readable run.toml of that run."""
    if type(files) is not dict or not all(
        type(name) is str and safe_name(name) and type(data) is bytes
        for name, data in files.items()
    ):
        raise RecordError(run_id, "its files are not plain files of one folder")
    files = dict(files)
    data = files.pop("run.toml", None)
    if data is None:
        raise RecordError(run_id, "run.toml is missing")
    return RunRecord.from_toml(data, run_id), files


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
        if type(message) is not dict:
            return
        key, run_id, staged = message.get("key"), message.get("run"), message.get("record")
        if type(key) is not str or not _is_run_id(run_id):
            return  # not a worker's announcement of a run: nothing to keep
        with self._lock:
            self._announced.setdefault(key, []).append(
                (run_id, staged if type(staged) is str else "")
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
                t["pinned"]
                or t["kind"] == "exec"  # -i inputs are earlier runs
                or _consumes_runs(self.repo.root / t["script"])
                for t in payloads
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
        try:  # a worker's answer is input from elsewhere: it costs only its own run
            if run_id and not _is_run_id(run_id):
                raise RecordError(str(run_id)[:64], "its run id is not one")
            if run_id and "files" in result:
                self._write_returned(*returned_folder(run_id, result["files"]))
        except RecordError as exc:
            reason = f"the worker sent back an unusable run folder: {exc.reason}"
            result, run_id = {"run": "", "status": "died", "error": reason}, ""
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

    def _write_returned(self, record: RunRecord, files: dict[str, bytes]) -> None:
        """Commit a run a worker recorded in its own checkout (no shared filesystem)."""
        if not self.shared_fs:  # recorded in a checkout of self.code: compare with HEAD
            self._code_against_head(record)
        if record.inputs:  # the worker's checkout knows the inputs' runs, not their commits
            from ..index.db import Index

            index = Index(self.repo)
            for item in record.inputs:
                row = index.get(item.run)
                item.commit = (row or {}).get("commit") or item.commit
        store.write_run(self.repo, record, files)

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
        """Record runs announced for `key` that never finished (and, if none can be read, the
        attempt)."""
        if always:
            time.sleep(0.2)  # let the worker's last announcement arrive
        with self._lock:
            announced = [a for a in self._announced.pop(key, []) if a[0] != keep]
        recorded = []
        unreadable = False
        for run_id, staged in announced:
            if self.shared_fs:  # the run may still be committing itself (e.g. interrupted)
                deadline = time.monotonic() + SETTLE_S
                while not self._has(run_id) and time.monotonic() < deadline:
                    time.sleep(0.1)
            if self._has(run_id):
                if run_id != keep:
                    recorded.append(run_id)
                continue
            try:
                record = RunRecord.from_toml(staged, run_id)
            except RecordError:  # an announcement that cannot be read: the attempt is, below
                unreadable = True
                continue
            recorded.append(self._write_lost(record, status, reason))
        if always and (not announced or (unreadable and not recorded)) and task is not None:
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
        return store.has_record(self.repo, run_id)

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
