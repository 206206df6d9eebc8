"""`gittrack.Experiment`: runs of a tracked command grouped under one name, from Python."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RunFailed, UsageError
from .executors import Task, execute
from .sweep import SweepOptions, SweepReport, sweep, sweep_exec

if TYPE_CHECKING:
    import click

    from ..library.run import Run


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
            SweepOptions(
                name=self.name,
                jobs=jobs,
                executor=executor,
                fail_fast=fail_fast,
                force=force,
                repo=self._repo_path(),
            ),
        )

    def exec(
        self,
        command: Iterable[str | os.PathLike[str]],
        *,
        outputs: Iterable[str] = (),
        inputs: Mapping[str, str] | None = None,
        metrics_from: Iterable[str] = (),
        force: bool = False,
        **params: Any,
    ) -> Run:
        """Run a program as `gittrack exec` would, in this experiment; returns the Run.

        `params` are substituted as `{NAME}`; `inputs` maps names to `RUN[:OUTPUT]`. Raises
        RunFailed (with `.run`) when the program exited non-zero.
        """
        from ..library.run import Run
        from ..recording.exec_spec import exec_args

        args = exec_args(
            [_param_arg(k, [v]).replace("\\,", ",") for k, v in params.items()],
            list(outputs),
            [f"{k}={v}" for k, v in (inputs or {}).items()],
            None,
            list(metrics_from),
            "",
            [os.fspath(c) for c in command],
        )
        task = Task(
            script="",
            kind="exec",
            args=args,
            experiment=self.name,
            force=force,
            repo=self._repo_path(),
            cwd=os.getcwd(),
            params={k: _plain(v) for k, v in params.items()},
        )
        result = execute(task)
        run = Run(result.run_id, self._repo_path()) if result.run_id else None
        if not result.ok:
            raise RunFailed(result, run)
        assert run is not None
        return run

    def sweep_exec(
        self,
        command: Iterable[str | os.PathLike[str]],
        *,
        outputs: Iterable[str] = (),
        jobs: int = 1,
        executor: str = "local",
        force: bool = False,
        **grid: Iterable[Any] | Any,
    ) -> SweepReport:
        """`gittrack sweep --exec` over the product grid of `grid` (param name -> values)."""
        from ..recording.exec_spec import exec_args

        values = [_param_arg(k, _as_list(vs)) for k, vs in grid.items()]
        args = exec_args(values, list(outputs), [], None, [], "", [os.fspath(c) for c in command])
        return sweep_exec(
            args,
            SweepOptions(
                name=self.name, jobs=jobs, executor=executor, force=force, repo=self._repo_path()
            ),
        )

    @property
    def runs(self) -> Any:
        """The experiment's recorded runs as a RunSet, newest first."""
        from ..index.db import Index
        from ..library.run import open_repo
        from ..library.runset import RunSet

        repo = open_repo(self._repo_path())
        members = "runs.rid IN (SELECT run FROM members WHERE experiment = ?)"
        return RunSet(repo, Index(repo).select(members, [self.name]))

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


def _param_text(value: Any) -> str:
    value = _plain(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _param_arg(name: str, values: list[Any]) -> str:
    """`-p` text for `name` taking `values`, keeping strings strings (`NAME:str=...`)."""
    kind = ":str" if any(isinstance(_plain(v), str) for v in values) else ""
    return f"{name}{kind}=" + ",".join(_param_text(v).replace(",", "\\,") for v in values)


def _as_list(values: Any) -> list[Any]:
    return list(values) if _iterable(values) else [values]


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
