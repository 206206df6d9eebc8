"""Experiments: parameter sweeps, `gittrack.Experiment` and re-running a recorded run.

A sweep is the product of value lists given as `--opt a,b,c` or `--opt start:stop[:step]` (stop
excluded, as in Python); every grid point is one run recorded with `experiment = "<name>"`.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import math
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import CodeUnavailable, RunFailed, SweepSpecError, UsageError
from .executors import Interrupted, Result, Task, execute, get_executor

if TYPE_CHECKING:
    import click

    from .. import store
    from ..library.run import Run

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
RANGE = re.compile(rf"^({NUMBER}):({NUMBER})(?::({NUMBER}))?$")
MAX_RUNS = 100_000


# -- the grid ---------------------------------------------------------------------------------


def expand(spec: str) -> list[str]:
    """The values a sweep spec stands for: `a,b,c`, `start:stop[:step]`, or one literal."""
    match = RANGE.match(spec)
    if match:
        return _range(spec, *match.groups())
    if ":" in spec and re.match(rf"^{NUMBER}:", spec):
        raise SweepSpecError(spec, "a range needs numbers for start, stop and step")
    parts = re.split(r"(?<!\\),", spec)
    values = [p.replace("\\,", ",") for p in parts]
    if len(values) > 1 and any(v.strip() == "" for v in values):
        raise SweepSpecError(spec, "a list has an empty value")
    return values


def _range(spec: str, start: str, stop: str, step: str | None) -> list[str]:
    integral = all(re.match(r"^[-+]?\d+$", p) for p in (start, stop, step or "1"))
    if integral:
        if step is not None and int(step) == 0:
            raise SweepSpecError(spec, "the step is 0")
        values: list[Any] = list(range(int(start), int(stop), int(step or 1)))
    else:
        a, b, s = float(start), float(stop), float(step or 1)
        if s == 0:
            raise SweepSpecError(spec, "the step is 0")
        count = max(0, math.ceil((b - a) / s - 1e-9))
        values = [round(a + i * s, 12) for i in range(min(count, MAX_RUNS + 1))]
    if not values:
        raise SweepSpecError(spec, "the range is empty")
    return [repr(v) if isinstance(v, float) else str(v) for v in values]


@dataclass
class Axis:
    """One argument of a sweep: its option (or "" for a positional) and the values it takes."""

    option: str
    values: list[str]

    @property
    def param(self) -> str:
        return self.option.lstrip("-").replace("-", "_") if self.option else ""


def parse_grid(args: Iterable[str]) -> list[Axis]:
    """Split script arguments into axes; an option followed by another option is a flag."""
    args = list(args)
    axes: list[Axis] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            axes += [Axis("", [a]) for a in args[i + 1 :]]
            break
        if _is_option(token):
            if "=" in token and token.startswith("--"):
                option, _, value = token.partition("=")
                axes.append(Axis(option, expand(value)))
            elif i + 1 < len(args) and not _is_option(args[i + 1]):
                axes.append(Axis(token, expand(args[i + 1])))
                i += 1
            else:
                axes.append(Axis(token, []))  # a flag
        else:
            axes.append(Axis("", expand(token)))
        i += 1
    return axes


def _is_option(token: str) -> bool:
    return re.match(r"^--?[A-Za-z_]", token) is not None


def grid_points(axes: list[Axis]) -> list[tuple[list[str], dict[str, str]]]:
    """Every combination as (argument list, {varying param: value})."""
    choices: list[list[str | None]] = [list(a.values) or [None] for a in axes]
    total = math.prod(len(c) for c in choices)
    if total > MAX_RUNS:
        raise UsageError(
            f"The sweep has {total} runs, more than {MAX_RUNS}; split it into several sweeps."
        )
    points = []
    for combo in itertools.product(*choices):
        argv: list[str] = []
        varying: dict[str, str] = {}
        for axis, value in zip(axes, combo, strict=True):
            if axis.option:
                argv.append(axis.option)
            if value is not None and axis.values:
                argv.append(value)
                if len(axis.values) > 1:
                    varying[axis.param or f"arg{axes.index(axis)}"] = value
        points.append((argv, varying))
    return points


# -- sweeps -----------------------------------------------------------------------------------


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


def sweep(
    script: str,
    args: Iterable[str],
    *,
    name: str = "",
    jobs: int = 1,
    executor: str = "local",
    fail_fast: bool = False,
    force: bool = False,
    allow_failed: bool = False,
    repo: str | None = None,
    on_result: Callable[[Result], None] | None = None,
    executor_options: Mapping[str, Any] | None = None,
) -> SweepReport:
    """Run SCRIPT over the product grid of `args` (see `expand`); failures do not stop the rest."""
    from ..recording.context import current

    path, _, function = script.partition(":") if not Path(script).exists() else (script, "", "")
    script_path = Path(path).resolve()
    if not script_path.is_file():
        raise UsageError(f"Script {path} does not exist; check the path.")
    axes = parse_grid(args)
    points = grid_points(axes)
    check_arguments(script_path, function or None, [argv for argv, _ in points])
    name = name or default_name(script)
    parent = current()
    common = functools.partial(
        Task,
        script=str(script_path),
        function=function or None,
        experiment=name,
        force=force,
        allow_failed=allow_failed,
        parent=parent.id if parent else "",
        repo=repo,
        cwd=os.getcwd(),
    )
    tasks = [common(args=argv, params=varying) for argv, varying in points]
    varying_names = [a.param or f"arg{i}" for i, a in enumerate(axes) if len(a.values) > 1]
    report = SweepReport(name, varying_names)
    order = {id(t): i for i, t in enumerate(tasks)}
    runner = get_executor(executor, jobs=jobs, **dict(executor_options or {}))
    results = runner.run(tasks)
    try:
        for result in results:
            report.results.append(result)
            if on_result:
                on_result(result)
            if fail_fast and not result.ok:
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


# -- Experiment ---------------------------------------------------------------------------------


class Experiment:
    """Runs of a tracked command grouped under one experiment name, launched from Python.

    `exp.run("sim.py", temp=2.3)` (or `exp.run(main, temp=2.3)` with the command itself) runs in
    this process; inside a tracked command the runs become its children in the flow graph.
    `exp.sweep("sim.py", temp=[1, 2], seed=range(3), jobs=2)` runs a grid in worker processes.
    """

    def __init__(self, name: str, repo: str | os.PathLike[str] | None = None) -> None:
        if not name.strip():
            raise UsageError("An experiment needs a name, e.g. gittrack.Experiment('fine-scan').")
        self.name = name
        self.repo = os.fspath(repo) if repo is not None else None

    def run(
        self,
        target: str | os.PathLike[str] | click.Command,
        *,
        force: bool = False,
        allow_failed: bool = False,
        **params: Any,
    ) -> Run:
        """Run the command once with `params` (by parameter name); returns the recorded Run.

        Raises RunFailed (with `.run`) when the command raised or exited non-zero.
        """
        from ..library.run import Run

        command, script, function = _target(target)
        task = Task(
            script=script,
            args=to_args(command, params),
            function=function,
            experiment=self.name,
            force=force,
            allow_failed=allow_failed,
            repo=self._repo_path(),
            params={k: _plain(v) for k, v in params.items()},
        )
        result = execute(task, command=command)
        run = Run(result.run_id, self._repo_path()) if result.run_id else None
        if not result.ok:
            raise RunFailed(result, run)
        assert run is not None
        return run

    def sweep(
        self,
        target: str | os.PathLike[str] | click.Command,
        *,
        jobs: int = 1,
        executor: str = "local",
        fail_fast: bool = False,
        force: bool = False,
        **grid: Iterable[Any] | Any,
    ) -> SweepReport:
        """Run the product grid of `grid` (param name -> values); returns the SweepReport."""
        command, script, function = _target(target)
        args: list[str] = []
        for key, values in grid.items():
            items = list(values) if _iterable(values) else [values]
            option = _option_of(command, key)
            args += [option] if option else []
            args.append(",".join(str(_plain(v)).replace(",", "\\,") for v in items))
        return sweep(
            f"{script}:{function}" if function else script,
            args,
            name=self.name,
            jobs=jobs,
            executor=executor,
            fail_fast=fail_fast,
            force=force,
            repo=self._repo_path(),
        )

    @property
    def runs(self) -> Any:
        """The experiment's recorded runs as a RunSet, newest first."""
        from ..index.db import Index
        from ..library.run import open_repo
        from ..library.runset import RunSet

        repo = open_repo(self._repo_path())
        return RunSet(repo, Index(repo).select("experiment = ?", [self.name]))

    def _repo_path(self) -> str | None:
        return self.repo or os.environ.get("GITTRACK_REPO") or None

    def __repr__(self) -> str:
        return f"<Experiment {self.name}>"


def _option_of(command: click.Command, key: str) -> str:
    """The long option for parameter `key` ("" for a positional argument)."""
    import click

    for param in command.params:
        if param.name == key:
            return max(param.opts, key=len) if isinstance(param, click.Option) else ""
    known = ", ".join(sorted(p.name for p in command.params if p.name)) or "none"
    raise UsageError(f"{command.name} has no parameter '{key}' (its parameters: {known}).")


def _iterable(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, str | bytes)


def _plain(value: Any) -> Any:
    if hasattr(value, "id") and hasattr(value, "record"):
        return value.id
    if hasattr(value, "item"):
        return value.item()
    return value


def _target(target: Any) -> tuple[click.Command, str, str | None]:
    """(command, script path, function name) for a script path, `path:function` or a command."""
    import click

    from ..recording.context import script_of
    from ..recording.loader import find_command

    if isinstance(target, click.Command):
        script = script_of(target)
        function = getattr(target.callback, "__name__", None)
        return target, str(script) if script else "", function
    text = os.fspath(target)
    path, _, function = text.partition(":") if not Path(text).exists() else (text, "", "")
    resolved = Path(path).resolve()
    return find_command(resolved, function or None), str(resolved), function or None


def to_args(command: click.Command, params: Mapping[str, Any]) -> list[str]:
    """Command-line arguments that give `command` the parameter values `params`."""
    import click

    by_name = {p.name: p for p in command.params if p.name}
    args: list[str] = []
    positional: list[str] = []
    for key, value in params.items():
        param = by_name.get(key)
        if param is None:
            known = ", ".join(sorted(n for n in by_name if n)) or "none"
            raise UsageError(f"{command.name} has no parameter '{key}' (its parameters: {known}).")
        values = list(value) if _iterable(value) and getattr(param, "multiple", False) else [value]
        if isinstance(param, click.Argument):
            positional += [str(_plain(v)) for v in (value if _iterable(value) else [value])]
            continue
        assert isinstance(param, click.Option)
        long = max(param.opts, key=len)
        if getattr(param, "is_bool_flag", False):
            if value:
                args.append(long)
            elif param.secondary_opts:
                args.append(max(param.secondary_opts, key=len))
            continue
        for item in values:
            item = _plain(item)
            if _iterable(item):
                item = ",".join(str(_plain(i)) for i in item)
            args += [long, str(item)]
    return args + positional


# -- rerun ------------------------------------------------------------------------------------


@dataclass
class RerunReport:
    """The original run, the new one, and per output / metric whether they agree."""

    original: str
    rerun: str
    status: str
    outputs: dict[str, str]  # name -> identical / differs / missing / new
    metrics: dict[str, dict[str, Any]]  # name -> {before, after, delta?, same}
    error: str = ""

    @property
    def identical(self) -> bool:
        return all(v == "identical" for v in self.outputs.values()) and all(
            m["same"] for m in self.metrics.values()
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "original": self.original,
            "rerun": self.rerun,
            "status": self.status,
            "identical": self.identical,
            "outputs": self.outputs,
            "metrics": self.metrics,
            "error": self.error,
        }


def compare(before: Any, after: Any) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Outputs (by md5) and metrics of two records side by side."""
    outputs: dict[str, str] = {}
    for name in sorted(set(before.outputs) | set(after.outputs)):
        old, new = before.outputs.get(name), after.outputs.get(name)
        if old is None:
            outputs[name] = "new"
        elif new is None:
            outputs[name] = "missing"
        else:
            outputs[name] = "identical" if old.md5 and old.md5 == new.md5 else "differs"
    metrics: dict[str, dict[str, Any]] = {}
    for name in sorted(set(before.metrics) | set(after.metrics)):
        old, new = before.metrics.get(name), after.metrics.get(name)
        entry: dict[str, Any] = {"before": old, "after": new, "same": old == new}
        numeric = (int, float)
        if isinstance(old, numeric) and isinstance(new, numeric) and not isinstance(old, bool):
            entry["delta"] = new - old
        metrics[name] = entry
    return outputs, metrics


def rerun(repo: store.Repo, ref: str) -> RerunReport:
    """Run `ref` again from its exact code commit (a temporary worktree), params and inputs."""
    from .. import store
    from ..library.run import Run
    from .executors import LocalExecutor

    original = Run(ref, repo)
    record = original.record
    code = record.code
    if not code.commit or not code.script:
        raise CodeUnavailable(
            record.id, code.commit or "?", "the record names no code commit or script"
        )
    if repo.reader().read(f"{code.commit}^{{commit}}") is None:
        raise CodeUnavailable(record.id, code.commit, "the commit is not in this repository")
    inputs = {i.run for i in record.inputs}
    pins: dict[str, list[str]] = {}
    for key, value in record.params.items():
        ids = value if isinstance(value, list) else [value]
        if ids and all(isinstance(i, str) and i in inputs for i in ids):
            pins[key] = list(ids)
    _, _, function = record.command.partition(":")
    try:
        with store.temporary_worktree(repo, code.commit) as tree:
            task = Task(
                script=str(tree / code.script),
                args=list(record.argv),
                function=function or None,
                experiment=record.experiment,
                force=True,
                allow_failed=True,
                rerun_of=record.id,
                repo=str(tree),
                cwd=str(tree),
                pinned=pins,
            )
            result = next(iter(LocalExecutor(1).run([task])))
    except store.GitError as exc:
        raise CodeUnavailable(record.id, code.commit, str(exc)) from exc
    if not result.run_id:
        raise RunFailed(result, None)
    new = Run(result.run_id, repo)
    outputs, metrics = compare(record, new.record)
    return RerunReport(record.id, new.id, new.status, outputs, metrics, result.error)
