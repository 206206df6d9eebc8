"""Where the runs of an experiment execute: one interface, local worker processes by default.

An executor takes `Task`s (a script, its arguments and run options, all plain data) and yields a
`Result` per task as runs end. `Task` and `Result` are the one task and result type of gittrack:
sweeps, Experiment, rerun and every executor (local, in-process, Dask, SLURM) use them.
`execute(task)` runs one task in the current process and is what
every executor calls in its workers; other modules register more executors (e.g. Dask) in
`EXECUTORS`. Closing the iterator early (fail-fast) stops the tasks not yet started and
interrupts the running ones, which are then recorded as interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from ..errors import UsageError

GRACE_S = 10.0  # how long Ctrl-C waits for a running task to record itself as interrupted


@dataclass
class Task:
    """One run to make: `script` invoked with `args`, plus the run's options.

    `script` is absolute, or relative to the repository root (Dask workers without a shared
    filesystem resolve it in their own checkout).
    """

    script: str
    args: list[str] = field(default_factory=list)
    function: str | None = None
    name: str = ""
    experiment: str = ""
    tags: list[str] = field(default_factory=list)
    note: str = ""
    force: bool = False
    allow_failed: bool = False
    parent: str = ""
    rerun_of: str = ""
    repo: str | None = None
    cwd: str | None = None
    pinned: dict[str, Any] = field(default_factory=dict)  # RunRef params fixed to recorded ids
    params: dict[str, Any] = field(default_factory=dict)  # the grid point, for reports only
    kind: str = "script"  # or "exec": `args` are those of `gittrack exec`, `script` is unused


@dataclass
class Result:
    """How a task ended: the run it recorded (or reused), or why no run was recorded.

    `status` is a run status, "error" when no run could start, or "cancelled" for a task that
    never started because the sweep was interrupted. With retries, `run_id` is the last
    attempt's run and `runs` every run recorded for the task (died attempts included).
    """

    task: Task
    run_id: str = ""
    status: str = "error"
    reused: bool = False
    error: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    attempts: int = 1
    runs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["task"] = asdict(self.task)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        return cls(**{**data, "task": Task(**data["task"])})


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped an executor; `results` says how each unfinished task ended.

    Running tasks are `interrupted` (their runs recorded so), queued ones `cancelled` (no run).
    Executors raise it from `run()` once every running task is recorded; `report` is set by the
    sweep that was interrupted.
    """

    def __init__(self, results: list[Result]) -> None:
        super().__init__("interrupted")
        self.results = results
        self.report: Any = None


def cancelled(task: Task) -> Result:
    """The Result of a task that never started because the sweep was interrupted."""
    return Result(task, status="cancelled", error="the sweep was interrupted before it started")


class Executor(Protocol):
    """Runs tasks and yields one Result per task, in the order they end.

    On Ctrl-C (KeyboardInterrupt, or thrown into the iterator) it cancels what has not started,
    lets the running tasks record themselves as interrupted and raises `Interrupted`.
    """

    def run(self, tasks: Iterable[Task]) -> Iterator[Result]: ...


def execute(
    task: Task, command: Any = None, on_start: Callable[[str], None] | None = None
) -> Result:
    """Run one task in this process: load the script (or use `command`), invoke it, report.

    `on_start` is told the run's id as soon as the run is staged (a worker announcing it).
    """
    import click

    from ..errors import GittrackError
    from ..recording import runref
    from ..recording.context import RunOptions
    from ..recording.invoke import invoke
    from ..recording.loader import find_command

    t0 = time.perf_counter()
    result = Result(task)
    previous = os.getcwd()
    token = runref.pinned.set(runref.Pins(task.pinned) if task.pinned else None)
    options = RunOptions(
        name=task.name,
        tags=list(task.tags),
        note=task.note,
        experiment=task.experiment,
        rerun_of=task.rerun_of,
        repo=task.repo,
        force=task.force,
        allow_failed=task.allow_failed,
        parent=task.parent,
        script=Path(task.script) if task.script and task.kind == "script" else None,
        on_start=on_start,
    )
    try:
        if task.cwd:
            os.chdir(task.cwd)
        if task.kind == "exec":
            from ..recording.exec_run import exec_command

            command = exec_command
        cmd = command or find_command(Path(task.script), task.function)
        invoke(cmd, task.args, options, Path(task.script).name or "command")
    except click.exceptions.Exit as exc:
        if exc.exit_code:
            result.error = f"exit code {exc.exit_code}"
    except click.ClickException as exc:
        result.error = exc.format_message()
    except GittrackError as exc:
        result.error = str(exc)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        runref.pinned.reset(token)
        os.chdir(previous)
    record = options.record
    if record is not None:
        result.run_id = record.id
        result.runs = [record.id]
        result.status = record.status
        result.metrics = dict(record.metrics)
        result.reused = options.reused
        if record.error and not result.error:
            result.error = f"{record.error.get('type', '')}: {record.error.get('message', '')}"
    result.duration_s = round(time.perf_counter() - t0, 3)
    return result


class InProcessExecutor:
    """Runs tasks one after another in this process (an experiment driver's children)."""

    def run(self, tasks: Iterable[Task]) -> Iterator[Result]:
        queue = deque(tasks)
        while queue:
            result = execute(queue.popleft())
            if result.status == "interrupted":  # Ctrl-C (or SIGTERM) reached this process
                raise Interrupted([result, *map(cancelled, queue)])
            yield result


class LocalExecutor:
    """`jobs` worker processes on this machine, each running tasks one after another."""

    def __init__(self, jobs: int = 1) -> None:
        if jobs < 1:
            raise UsageError(f"-j/--jobs must be at least 1, not {jobs}.")
        self.jobs = jobs

    def run(self, tasks: Iterable[Task]) -> Iterator[Result]:
        queue = deque(tasks)
        workers: list[_Worker] = []
        selector = selectors.DefaultSelector()
        try:
            for _ in range(min(self.jobs, len(queue))):
                worker = _Worker()
                workers.append(worker)
                worker.assign(queue.popleft())
                selector.register(worker.out, selectors.EVENT_READ, worker)
            busy = len(workers)
            while busy:
                for key, _ in selector.select():
                    worker = key.data
                    result = worker.receive()
                    if result is None:  # the worker died: report its task, start a new one
                        selector.unregister(worker.out)
                        result = _worker_died(worker.task, worker.proc.pid, worker.proc.wait())
                        worker = _Worker()
                        workers.append(worker)
                        selector.register(worker.out, selectors.EVENT_READ, worker)
                    worker.task = None
                    yield result  # first: a sweep stopping here (--fail-fast) started no more
                    if queue:
                        worker.assign(queue.popleft())
                    else:
                        busy -= 1
        except KeyboardInterrupt:
            stopped = [w.interrupt() for w in workers if w.task is not None]
            raise Interrupted([*stopped, *map(cancelled, queue)]) from None
        finally:
            for worker in workers:
                worker.stop(interrupt=worker.task is not None)
            selector.close()


def _worker_died(task: Task | None, pid: int, code: int) -> Result:
    """A worker ended mid-task: its run, if it started one, is recorded as died with `code`."""
    assert task is not None
    result = Result(task, error=f"worker process died (exit code {code})")
    from .. import store
    from ..errors import GittrackError
    from ..recording.context import RunOptions, repo_path
    from ..recording.died import record_died
    from ..store import staging

    script = Path(task.script) if task.script else None
    try:
        repo = store.find_repo(repo_path(RunOptions(repo=task.repo), script) or task.cwd)
        run_id = staging.run_of_process(repo, pid)
        if run_id and run_id in record_died(repo, exits={pid: code}):
            result.run_id, result.status, result.runs = run_id, "died", [run_id]
    except (GittrackError, OSError):
        pass  # the run is shown as died all the same, and committed by the next writer
    return result


class _Worker:
    """A `python -m gittrack.execute.executors` process: tasks in, results out, as JSON lines."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gittrack.execute.executors"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches the sweep only; it stops each worker once
        )
        assert self.proc.stdin and self.proc.stdout
        self.out: IO[str] = self.proc.stdout
        self.task: Task | None = None

    def assign(self, task: Task) -> None:
        self.task = task
        assert self.proc.stdin
        try:
            self.proc.stdin.write(json.dumps(asdict(task)) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # receive() reports the dead worker

    def receive(self) -> Result | None:
        line = self.out.readline()
        if not line:
            return None
        return Result.from_json(json.loads(line))

    def interrupt(self) -> Result:
        """SIGTERM the running task (it records itself as interrupted) and read its Result."""
        task = self.task
        assert task is not None
        self.task = None
        with contextlib.suppress(OSError):
            self.proc.send_signal(signal.SIGTERM)
        result = None
        with contextlib.suppress(OSError, ValueError):
            result = self.receive() if _readable(self.out, GRACE_S) else None
        if result is None:
            result = Result(task, status="interrupted", error="the worker was stopped")
        return result

    def stop(self, interrupt: bool) -> None:
        if interrupt and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(OSError):
            assert self.proc.stdin
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.out.close()


def _readable(stream: IO[str], timeout: float) -> bool:
    """Whether `stream` has a line to read within `timeout` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        return bool(selector.select(timeout))


def worker_main() -> None:
    """Worker loop: one task per line on stdin, one result per line on the original stdout.

    File descriptor 1 becomes /dev/null, and sys.stdout keeps writing to it: a run tees that
    descriptor into its stdout.log, with what its child processes print.
    """
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    for line in sys.stdin:
        if not line.strip():
            continue
        result = execute(Task(**json.loads(line)))
        protocol.write(json.dumps(result.to_json(), default=str) + "\n")


EXECUTORS: dict[str, Callable[..., Executor]] = {
    "local": LocalExecutor,
    "inprocess": InProcessExecutor,
}


# executors registered by a module imported on first use (it adds itself to EXECUTORS)
PLUGINS = {
    "dask": "dask_executor",
    "slurm": "dask_executor",
    "pbs": "dask_executor",
    "sge": "dask_executor",
}


def get_executor(name: str, **options: Any) -> Executor:
    """An executor by its registered name (`local`, or one a plugin added, e.g. `dask`)."""
    if name not in EXECUTORS and name in PLUGINS:
        import importlib

        importlib.import_module(f"{__package__}.{PLUGINS[name]}")
    if name not in EXECUTORS:
        known = ", ".join(sorted(set(EXECUTORS) | set(PLUGINS)))
        raise UsageError(f"Unknown executor '{name}'; choose one of: {known}.")
    factory = EXECUTORS[name]
    if name == "inprocess":
        options.pop("jobs", None)
    return factory(**options)


if __name__ == "__main__":
    worker_main()
