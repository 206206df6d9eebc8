"""Commands about recording and reading runs: init, run, show (ls lives in query.py)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from .._ids import short
from . import Context, cli, complete_run, pass_context

MAX_IDS_SHOWN = 8  # a param holding more run ids than this shows the first ones and "…"


@cli.command()
@click.option(
    "--git", "make_git", is_flag=True, help="Run 'git init' first when this is no git repository."
)
@pass_context
def init(obj: Context, make_git: bool) -> None:
    """Prepare this repository for gittrack (safe to run again).

    Creates the `gittrack/runs` branch and ignores gittrack's working folder through
    .git/info/exclude; your branch, index and files are not touched.

    \b
    Example:
      gittrack init
    """
    from ..ops.setup import initialise

    repo, created = initialise(obj.repo_path, make_git=make_git)
    if created:
        click.echo(f"Initialised gittrack in {repo.root} (runs branch gittrack/runs).")
    else:
        click.echo(f"gittrack is already initialised in {repo.root}.")


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--name", default="", help="A human name for the run, usable wherever an id is.")
@click.option("--tag", "tags", multiple=True, help="Tag the run (repeatable).")
@click.option("--note", default="", help="A free-text note stored with the run.")
@click.option("--experiment", default="", help="Record the run as part of this experiment.")
@click.option(
    "--force", is_flag=True, help="Record a new run even when an identical completed run exists."
)
@click.option("--allow-failed", is_flag=True, help="Accept failed or died runs as RunRef inputs.")
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_context
def run(
    obj: Context,
    name: str,
    tags: tuple[str, ...],
    note: str,
    experiment: str,
    force: bool,
    allow_failed: bool,
    script: str,
    args: tuple[str, ...],
) -> None:
    """Run SCRIPT's tracked command with ARGS and record the run.

    SCRIPT may name the command as SCRIPT:FUNCTION when the file defines several.
    `python SCRIPT ARGS` records the run just the same. A run with the same code, params and
    inputs as an earlier completed run reuses it (prints its id, "reused"); --force records anew.

    \b
    Example:
      gittrack run sim.py --temp 300
      gittrack run --name baseline analysis.py:fit --sim latest
    """
    from ..recording.context import RunOptions
    from ..recording.invoke import run_script

    cwd = os.getcwd()
    if obj.repo_path:
        os.chdir(obj.repo_path)  # as if started there, like git -C
    path, _, function = script.partition(":") if not Path(script).exists() else (script, "", "")
    options = RunOptions(
        name=name,
        tags=list(tags),
        note=note,
        experiment=experiment,
        repo=obj.repo_path,
        force=force,
        allow_failed=allow_failed,
    )
    try:
        record = run_script(Path(path), list(args), function or None, options)
        if record is not None and record.status == "failed":  # e.g. ctx.exit(3), a full disk
            raise click.exceptions.Exit(record.exit_code or 1)
    except (click.ClickException, click.exceptions.Exit):
        raise
    except (KeyboardInterrupt, click.Abort):  # click turns Ctrl-C into Abort; the run is recorded
        sys.exit(130)
    except SystemExit as exc:
        raise click.exceptions.Exit(exc.code if isinstance(exc.code, int) else 1) from exc
    except Exception as exc:
        from ..errors import GittrackError

        if isinstance(exc, GittrackError):
            raise
        # the simulation's own error: it is recorded; show it as Python would
        from ..recording.tracebacks import user_traceback

        click.echo(user_traceback(exc), err=True)
        sys.exit(1)
    finally:
        os.chdir(cwd)


@cli.command()
@click.argument("run_ref", metavar="RUN", shell_complete=complete_run)
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@pass_context
def show(obj: Context, run_ref: str, as_json: bool) -> None:
    """Show a run's whole record.

    RUN is an id, a unique prefix of 4+ characters, a name (the newest run with that name),
    or `latest`.

    \b
    Example:
      gittrack show 3f2a
      gittrack show latest --json
    """
    from ..errors import RunNotFound
    from ..library import Run, named, staged_run
    from ..library.runview import run_details

    repo = obj.repo()
    try:
        data = Run(run_ref, repo).to_json()
    except RunNotFound:
        staged = staged_run(repo, run_ref)  # running, or died and not committed yet
        if staged is None:
            raise
        data = staged
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    text = format_record(data, run_details(repo, data))
    if data.get("name") == run_ref.strip() and len(same := named(repo, run_ref)) > 1:
        first, _, rest = text.partition("\n")
        where = f"name = '{data['name']}'".replace('"', '\\"')
        text = (
            f"{first}\n  (the newest of {len(same)} runs named {data['name']!r}; "
            f'gittrack ls --where "{where}" lists them)\n{rest}'
        )
    obj.emit(text)


def format_record(data: dict[str, Any], details: Any = None) -> str:
    """A run's record as readable text, one section per table; `details` (library.browse's
    RunDetails) adds the input runs' names, where outputs are on disk and the logs' tails."""
    from ..model.values import collapsed_text, human_size, is_run_id, visible

    lines = [f"run {data['id']}"]
    for key in (
        "name",
        "status",
        "command",
        "argv",
        "experiment",
        "experiments",
        "parent",
        "rerun_of",
        "started",
        "finished",
        "duration_s",
        "exit_code",
        "tags",
        "note",
        "commit",
    ):
        value: Any = data.get(key)
        if value in (None, "", [], {}) and key not in ("status",):
            continue
        if key == "argv":
            value = " ".join(value)
        elif key in ("tags", "experiments"):
            value = ", ".join(value)
        lines.append(f"  {key + ':':<12} {value}")
    for section in ("params", "metrics", "code", "env"):
        values = data.get(section) or {}
        if not values:
            continue
        lines.append(f"{section}:")
        for key, value in values.items():
            if section == "code" and key == "files" and isinstance(value, dict):
                lines.append("  files:")
                for path, entry in value.items():
                    changed = " (differs from HEAD)" if entry.get("dirty") else ""
                    lines.append(f"    {str(entry.get('blob', ''))[:10]}  {path}{changed}")
                continue
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items())
            elif isinstance(value, list) and value and all(is_run_id(v) for v in value):
                shown = ", ".join(short(v) for v in value[:MAX_IDS_SHOWN])
                more = ", …" if len(value) > MAX_IDS_SHOWN else ""
                value = f"{collapsed_text(value)}: {shown}{more}"
            elif is_run_id(value):
                value = short(str(value))
            if value == "" and (section == "env" or key == "incomplete"):
                continue  # e.g. no USER in the environment; code known in full
            lines.append(f"  {key + ':':<12} {visible(value)}")
    if files := data.get("input_files"):
        lines.append("input files:")
        lines.extend(f"  {str(md5)[:10]}  {path}" for path, md5 in files.items())
    for program in data.get("programs") or []:
        if program is data["programs"][0]:
            lines.append("programs:")
        lines.append(f"  {shlex.join(program.get('argv') or [program.get('path', '?')])}")
        for key in ("path", "version", "package", "package_version", "sha256", "exit_code"):
            if program.get(key) not in (None, ""):
                lines.append(f"    {key + ':':<16} {program[key]}")
    outputs = data.get("outputs") or {}
    if outputs:
        where = f" (in {details.outputs_dir})" if details is not None else ""
        lines.append(f"outputs{where}:")
        for name, output in outputs.items():
            parts = [human_size(int(output.get("size") or 0)), str(output.get("kind", ""))]
            if output.get("nfiles"):
                parts.append(f"{output['nfiles']} files")
            if output.get("error"):
                parts.append(f"not stored: {output['error']}")
            elif details is not None:
                parts.append(
                    "on disk"
                    if details.on_disk.get(name)
                    else f"not on disk: gittrack checkout {short(data['id'])} {name}"
                )
            if output.get("pushed"):
                parts.append("pushed")
            lines.append(f"  {name + ':':<12} {', '.join(p for p in parts if p)}")
    inputs = data.get("inputs") or []
    if inputs:
        lines.append("inputs:")
        known = details.inputs if details is not None else {}
        for item in inputs:
            info = known.get(item["run"]) or {}
            label = info.get("name") or ""
            what = f"output {item['output']}" if item.get("output") else "the whole run"
            extra = f"({info['command']}, {what})" if info else f"({what}, not in this clone)"
            lines.append(f"  {short(item['run'])}  {label}  {extra}".replace("    ", "  "))
    if err := data.get("error"):
        lines.append("error:")
        lines.extend(
            "  " + line for line in err.get("traceback", err.get("message", "")).splitlines()
        )
    logs = data.get("logs") or {}
    if details is not None:
        for stream, tail in details.log_tails.items():
            cut = " (cut when recorded)" if logs.get(f"{stream}_truncated") else ""
            lines.append(f"{stream} (last lines){cut}:")
            lines.extend("  " + line for line in tail)
    return "\n".join(lines)
