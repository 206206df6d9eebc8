"""Sweeps: every grid point of a script's arguments run as one experiment.

A sweep is the product of value lists given as `--opt a,b,c` or `--opt start:stop[:step]` (stop
excluded, as in Python); every grid point is one run, member of experiment "<name>".
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import math
import os
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from .executors import Interrupted, Result, Task, get_executor
from .grid import MAX_RUNS, expand, grid_points, parse_grid


@dataclass
class SweepReport:
    """What a sweep did: its name, the varying params and one Result per run, in grid order."""

    name: str
    varying: list[str]
    results: list[Result] = field(default_factory=list)
    stopped: bool = False  # --fail-fast stopped it early
    interrupted: bool = False  # Ctrl-C stopped it: running runs interrupted, the rest cancelled

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if not r.ok]

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            key = "reused" if r.reused else r.status
            out[key] = out.get(key, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.name,
            "varying": self.varying,
            "stopped": self.stopped,
            "interrupted": self.interrupted,
            "counts": self.counts,
            "runs": [
                {
                    "id": r.run_id,
                    "status": r.status,
                    "reused": r.reused,
                    "params": r.task.params,
                    "metrics": r.metrics,
                    "error": r.error,
                    "duration_s": r.duration_s,
                }
                for r in self.results
            ],
        }


def default_name(script: str) -> str:
    """An experiment name for a sweep given none: script stem and start time."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{Path(script.partition(':')[0]).stem}-{stamp}"


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs: the same for a script's grid and for `gittrack exec`'s."""

    name: str = ""  # the experiment (default: the script or program and the start time)
    jobs: int = 1
    executor: str = "local"
    fail_fast: bool = False
    force: bool = False
    allow_failed: bool = False
    repo: str | None = None
    on_result: Callable[[Result], None] | None = None
    executor_options: Mapping[str, Any] | None = None


def sweep(script: str, args: Iterable[str], options: SweepOptions | None = None) -> SweepReport:
    """Run SCRIPT over the product grid of `args` (see `expand`); failures do not stop the rest."""
    from .. import store

    options = options or SweepOptions()
    path, _, function = script.partition(":") if not Path(script).exists() else (script, "", "")
    script_path = Path(path).resolve()
    if not script_path.is_file():
        raise UsageError(f"Script {path} does not exist; check the path.")
    axes = parse_grid(args)
    points = grid_points(axes)
    check_arguments(script_path, function or None, [argv for argv, _ in points])
    name = options.name or default_name(script)
    task = _tasks(options, name, script=str(script_path), function=function or None)
    tasks = [task(args=argv, params=varying) for argv, varying in points]
    varying_names = [a.param or f"arg{i}" for i, a in enumerate(axes) if len(a.values) > 1]
    repo = store.find_repo(options.repo or script_path.parent)
    return _run_tasks(tasks, name, varying_names, options, repo)


def _tasks(options: SweepOptions, name: str, **fields: Any) -> Callable[..., Task]:
    """What every Task of a sweep shares: its experiment, reuse flags, parent run, folders."""
    from ..recording.context import current

    parent = current()
    return functools.partial(
        Task,
        experiment=name,
        force=options.force,
        allow_failed=options.allow_failed,
        parent=parent.id if parent else "",
        repo=options.repo,
        cwd=os.getcwd(),
        **fields,
    )


def exec_grid(args: Iterable[str]) -> tuple[list[tuple[list[str], dict[str, str]]], list[str]]:
    """The grid of a `sweep --exec`: each `-p NAME=a,b,c` (or a range) is an axis.

    Returns (exec arguments, varying values) per point and the names of the varying params.
    Every point is parsed by exec itself before anything runs.
    """
    from ..recording.exec_run import exec_command
    from ..recording.exec_spec import exec_args

    args = list(args)
    try:
        ctx = exec_command.make_context("exec", list(args), resilient_parsing=False)
    except click.ClickException as exc:
        raise UsageError(
            f"The sweep cannot run exec {shlex.join(args)}: {exc.format_message()}"
        ) from exc
    axes: list[tuple[str, list[str]]] = []
    for text in ctx.params["params"]:
        name, _, spec = text.partition("=")
        axes.append((name, expand(spec)))
    p = ctx.params
    fixed = exec_args(
        [],
        p["outputs"],
        p["inputs"],
        p["cwd"],
        p["metrics_from"],
        p["engine_version"],
        p["command"],
    )
    total = math.prod(len(values) for _, values in axes)
    if total > MAX_RUNS:
        raise UsageError(
            f"The sweep has {total} runs, more than {MAX_RUNS}; split it into several sweeps."
        )
    points = []
    for combo in itertools.product(*(values for _, values in axes)):
        argv: list[str] = []
        varying: dict[str, str] = {}
        for (name, values), value in zip(axes, combo, strict=True):
            argv += ["-p", f"{name}={value}"]
            if len(values) > 1:
                varying[name.partition(":")[0]] = value
        points.append(([*argv, *fixed], varying))
    for argv, _ in points:
        try:
            exec_command.make_context("exec", list(argv), resilient_parsing=False).close()
        except click.ClickException as exc:
            raise UsageError(
                f"The sweep cannot run exec {shlex.join(argv)}: {exc.format_message()}"
            ) from exc
    varying_names = [n.partition(":")[0] for n, values in axes if len(values) > 1]
    return points, varying_names


def sweep_exec(args: Iterable[str], options: SweepOptions | None = None) -> SweepReport:
    """`gittrack exec` over the product grid of its `-p` values, as one experiment."""
    from .. import store

    options = options or SweepOptions()
    points, varying_names = exec_grid(args)
    command = points[0][0][points[0][0].index("--") + 1 :]
    name = options.name or default_name(Path(command[0]).name)
    task = _tasks(options, name, script="", kind="exec")
    tasks = [task(args=argv, params=varying) for argv, varying in points]
    return _run_tasks(tasks, name, varying_names, options, store.find_repo(options.repo))


def _run_tasks(
    tasks: list[Task], name: str, varying_names: list[str], options: SweepOptions, repo: Any
) -> SweepReport:
    """Run a sweep's tasks on an executor; the report lists them in grid order."""
    from ..recording.membership import join

    report = SweepReport(name, varying_names)
    order = {id(t): i for i, t in enumerate(tasks)}
    runner = get_executor(
        options.executor, jobs=options.jobs, **dict(options.executor_options or {})
    )
    results = runner.run(tasks)
    try:
        for result in results:
            report.results.append(result)
            if result.reused and result.run_id:  # joined where it ran; a remote worker cannot
                join(repo, result.run_id, name)
            if options.on_result:
                options.on_result(result)
            if options.fail_fast and not result.ok:
                report.stopped = len(report.results) < len(tasks)
                break
    except KeyboardInterrupt as exc:
        stop = exc if isinstance(exc, Interrupted) else _interrupt(results, exc)
        report.results += stop.results
        report.interrupted = True
        report.results.sort(key=lambda r: order.get(id(r.task), _grid_index(tasks, r.task)))
        stop.report = report
        raise stop from None
    finally:
        close = getattr(results, "close", None)
        if close:
            close()
    report.results.sort(key=lambda r: order.get(id(r.task), _grid_index(tasks, r.task)))
    return report


def _interrupt(results: Any, exc: KeyboardInterrupt) -> Interrupted:
    """Ctrl-C reached the sweep between two results: pass it to the executor to stop its tasks."""
    throw = getattr(results, "throw", None)
    if throw is not None:
        try:
            throw(exc)
        except Interrupted as stop:
            return stop
        except (KeyboardInterrupt, StopIteration):
            pass
    return Interrupted([])


def check_arguments(script: Path, function: str | None, argvs: list[list[str]]) -> None:
    """Parse every grid point with the command's own options before anything runs.

    A misspelt option or a value of the wrong type is refused up front with click's sentence,
    instead of failing once per task.
    """
    from ..recording.loader import find_command

    command = find_command(script, function)
    for argv in argvs:
        try:
            command.make_context(script.name, list(argv), resilient_parsing=False).close()
        except click.exceptions.Exit:
            continue  # --help or --version among the arguments: nothing to check
        except click.ClickException as exc:
            raise UsageError(
                f"The sweep cannot run {script.name} {shlex.join(argv)}: {exc.format_message()}"
            ) from exc


def _grid_index(tasks: list[Task], task: Task) -> int:
    for i, t in enumerate(tasks):
        if t.args == task.args:
            return i
    return len(tasks)
