"""`gittrack exec`: any program recorded as a run, through the same RunSession as click commands.

`EXEC` is a tracked click command whose options are exec's (`-p`, `-o`, `-i`, ...) and whose
arguments are the program's command line; it records the params given with `-p` (not its own
options), the substituted command line, the program's identity and the inputs named with `-i`.
Sweeps, rerun and the executors invoke it like any tracked command (a Task of kind "exec").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import ProgramFailed, UsageError
from . import programs, shell as shell_mod
from .command import TrackedCommand
from .context import current
from .exec_spec import (
    INPUTS_DIR,
    UNKEPT_DIR,
    InputSpec,
    exec_args,
    exec_options,
    parse_input,
    parse_metrics_from,
    parse_param,
    substitute,
    typed_value,
)
from .session import Invocation

if TYPE_CHECKING:
    from ..library.run import Run
    from .session import RunSession

# -- the command -------------------------------------------------------------------------------


class ExecCommand(TrackedCommand):
    """A tracked command recording a program's command line, params, identity and inputs."""

    def invocation(self, ctx: click.Context) -> Invocation | None:
        params = dict(parse_param(p) for p in ctx.params["params"])
        names = {s.name for s in map(parse_input, ctx.params["inputs"])}
        clash = sorted(names & set(params))
        if clash:
            raise UsageError(f"'{clash[0]}' is both a -p param and an -i input; rename one.")
        command = list(ctx.params["command"])
        shown = [substitute(a, params, {n: "{" + n + "}" for n in names}) for a in command]
        return Invocation(command=shown[0], params=params, argv=shown[1:], script=None)

    def record_inputs(self, session: RunSession, ctx: click.Context) -> None:
        prepare(session, ctx)


def prepare(session: RunSession, ctx: click.Context) -> None:
    """At the start: resolve inputs and files, identify the program, set the memo key."""
    from .context import allow_failed
    from .runref import check_usable, resolve_runs

    record = session.record
    repo = session.repo
    invoked = Path.cwd()
    specs = [parse_input(t) for t in ctx.params["inputs"]]
    resolved: dict[str, list[Run]] = {}
    pinned_args: list[str] = []
    for spec in specs:
        runs = resolve_runs(repo, spec.ref)
        if not allow_failed(session.options):
            check_usable(runs)
        for run in runs:
            if spec.output:
                output = run.record.outputs.get(spec.output)
                if output is None or not output.md5:
                    known = ", ".join(sorted(run.record.outputs)) or "none"
                    raise UsageError(
                        f"Run {run.short} has no stored output '{spec.output}' "
                        f"(its outputs: {known}); name one of those after the colon."
                    )
                session.add_input(run.id, run.commit, spec.output, output.md5)
            else:
                session.add_input(run.id, run.commit)
        resolved[spec.name] = runs
        ids = ",".join(r.id for r in runs)
        pinned_args += ["-i", f"{spec.name}={ids}" + (f":{spec.output}" if spec.output else "")]
    session.exec_inputs = (specs, resolved)  # type: ignore[attr-defined]
    command = list(ctx.params["command"])
    params = record.params
    placeholders = {s.name: "{" + s.name + "}" for s in specs}
    program = substitute(command[0], params, placeholders)
    identity = shell_mod.program_identity(program, invoked, repo.root, repo.state_dir / "cache")
    if ctx.params["engine_version"]:
        identity["version"] = ctx.params["engine_version"]
    identity["argv"] = [program, *record.argv]
    record.programs = [identity]
    files = _files_read(record.argv, invoked, repo.root)
    # code of the run: the program when it is in the repository, and the files it is given there
    code = [path for path in files if not os.path.isabs(path)]
    if identity.get("in_repo"):
        session.script = (invoked / program).absolute()
        code.append(identity["path"])
    session.code_files.add(code)
    try:
        cwd = invoked.resolve().relative_to(repo.root.resolve()).as_posix()
    except ValueError:
        cwd = str(invoked)  # started outside the repository (-C): rerun starts at its root
    p = ctx.params
    args = exec_args(
        p["params"], p["outputs"], [], p["cwd"], p["metrics_from"], p["engine_version"], command
    )
    record.exec = {
        "command": command,
        "cwd": cwd,
        "outputs": list(p["outputs"]),
        "metrics_from": list(p["metrics_from"]),
        "files": files,
        "args": [*pinned_args, *args],  # inputs pinned to the run ids they resolved to
    }
    if ctx.params["cwd"]:
        record.exec["run_in"] = ctx.params["cwd"]
    key = {
        "kind": "exec",  # code files are compared when a candidate is found (find_reusable)
        "params": params,
        "exec": {k: v for k, v in record.exec.items() if k != "args"},
        "inputs": [(i.run, i.output, i.md5) for i in record.inputs],
        "program": {
            k: identity.get(k, "") for k in ("sha256", "version", "package", "package_version")
        },
    }
    record.memo = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _files_read(argv: Sequence[str], cwd: Path, root: Path) -> dict[str, str]:
    """Existing files the command line names ({path: sha256}): code of the run when in the repo."""
    found: dict[str, str] = {}
    for arg in argv:
        if not arg or arg.startswith("-") or "{" in arg:
            continue
        path = cwd / arg
        try:
            if not path.is_file():
                continue
            digest = programs.sha256_of(path)
        except (OSError, ValueError):
            continue
        try:
            key = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            key = str(path.resolve())
        found[key] = digest
    return found


@click.command("exec", cls=ExecCommand, context_settings={"allow_interspersed_args": False})
@exec_options
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_command(**kwargs: Any) -> None:
    """Run the program of a `gittrack exec` run in its run folder and collect what it wrote."""
    session = current()
    assert session is not None
    run_program(session, kwargs)


def run_program(session: RunSession, options: dict[str, Any]) -> None:
    """Materialise inputs, run the program, keep its outputs, read its metrics."""
    record = session.record
    specs, resolved = session.exec_inputs  # type: ignore[attr-defined]
    run_dir = session.output_dir
    placed = _materialise(run_dir, specs, resolved)
    invoked = Path.cwd()
    where = Path(options["cwd"]).absolute() if options["cwd"] else run_dir
    command = [substitute(a, record.params, placed) for a in options["command"]]
    program = str(programs.resolve(command[0], invoked))
    argv = [program, *(_absolute(a, invoked) for a in command[1:])]
    env = {
        **os.environ,
        "GITTRACK_RUN_ID": session.id,
        "GITTRACK_RUN_DIR": str(run_dir),
    }
    started = record.started.timestamp() if record.started else 0.0
    done = shell_mod.run_streamed(argv, where, env)
    info = record.programs[0]
    info["exit_code"] = done.exit_code
    info["duration_s"] = done.duration_s
    _read_metrics(session, where, list(options["metrics_from"]))
    _keep_outputs(session, where, run_dir, list(options["outputs"]), started)
    if done.exit_code != 0:
        raise ProgramFailed(command[0], done.exit_code, "\n".join(done.tail))


def _absolute(arg: str, cwd: Path) -> str:
    """A relative path naming an existing file or folder, made absolute (the run folder is
    elsewhere); anything else as it is."""
    if not arg or arg.startswith("-") or os.path.isabs(arg):
        return arg
    path = cwd / arg
    try:
        return str(path.absolute()) if path.exists() else arg
    except (OSError, ValueError):
        return arg


def _materialise(
    run_dir: Path, specs: list[InputSpec], resolved: dict[str, list[Run]]
) -> dict[str, str]:
    """Link each input into `.inputs/NAME/` of the run folder; {NAME: the path to substitute}."""
    from ..library.outputs import output_path

    placed: dict[str, str] = {}
    for spec in specs:
        runs = resolved[spec.name]
        base = run_dir / INPUTS_DIR / spec.name
        base.mkdir(parents=True, exist_ok=True)
        for run in runs:
            folder = base / run.short if len(runs) > 1 else base
            folder.mkdir(parents=True, exist_ok=True)
            names = [spec.output] if spec.output else sorted(run.record.outputs)
            for name in names:
                if not run.record.outputs[name].md5:
                    continue
                source = output_path(run, name)
                run._consumed(name)
                link = folder / source.name
                if not link.exists():
                    os.symlink(source, link)
                if spec.output and len(runs) == 1:
                    placed[spec.name] = str(link)
        placed.setdefault(spec.name, str(base))
    return placed


def _keep_outputs(
    session: RunSession, where: Path, run_dir: Path, globs: list[str], started: float
) -> None:
    """Outputs: what matches `globs`, else everything the program wrote."""
    if where.resolve() == run_dir.resolve():
        if not globs:
            return  # everything left in the run folder is kept
        matched = shell_mod.collect_outputs(session, run_dir, globs)
        tops = {m.relative_to(run_dir).parts[0] for m in matched}
        for entry in list(run_dir.iterdir()):
            if entry.name.startswith(".") or entry.name in tops:
                continue
            aside = run_dir / UNKEPT_DIR
            aside.mkdir(exist_ok=True)
            shutil.move(str(entry), str(aside / entry.name))
        return
    if globs:
        shell_mod.collect_outputs(session, where, globs)
        return
    written = []
    for path in where.rglob("*"):
        parts = path.relative_to(where).parts
        if any(p.startswith(".") for p in parts) or not path.is_file():
            continue
        with contextlib.suppress(OSError):
            if path.stat().st_mtime >= started - 1:
                written.append(path.relative_to(where).as_posix())
    shell_mod.collect_outputs(session, where, written)


def _read_metrics(session: RunSession, where: Path, specs: list[str]) -> None:
    """Each FILE:REGEX: the named groups of the last match become metrics."""
    import sys

    for spec in specs:
        file, pattern = parse_metrics_from(spec)
        if file in ("stdout", "stderr"):
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            path = session.folder / f"{file}.log"
        else:
            path = where / file
        try:
            text = path.read_text(errors="replace")
        except OSError:
            click.echo(
                f"Warning: --metrics-from: {file} was not written; no metrics from it.", err=True
            )
            continue
        last = None
        for last in pattern.finditer(text):  # noqa: B007  (the last match counts)
            pass
        if last is None:
            click.echo(
                f"Warning: --metrics-from: nothing in {file} matches {pattern.pattern!r}.",
                err=True,
            )
            continue
        for key, value in last.groupdict().items():
            if value is not None:
                session.record.metrics[key] = typed_value(value)


def run_exec(args: Sequence[str], options: Any) -> Any:
    """Invoke `exec_command` with exec's `args`; returns the RunOptions, with the record in."""
    from .invoke import invoke

    return invoke(exec_command, list(args), options, "exec")
