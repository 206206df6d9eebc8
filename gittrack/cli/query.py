"""Commands that look runs up and annotate them: ls, diff, tag, untag, note."""

from __future__ import annotations

import json
import sys

import click

from .._ids import short
from . import Context, cli, complete_run, pass_context
from .table import no_color, render_runs, write_stream


@cli.command("ls")
@click.option(
    "--where",
    "-w",
    default="",
    metavar="QUERY",
    help="Only runs matching QUERY, e.g. \"params.temp >= 200 and status = 'completed'\".",
)
@click.option(
    "--columns",
    "-c",
    default="",
    metavar="LIST",
    help="Columns to show, e.g. id,params.temp,metrics.energy (params.* for all params).",
)
@click.option(
    "--sort",
    "-s",
    default="",
    metavar="KEYS",
    help="Sort by these fields, '-' for descending, e.g. -metrics.energy,params.temp.",
)
@click.option(
    "--limit", "-n", type=click.IntRange(min=1), default=None, help="Show at most this many runs."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "markdown"]),
    default="table",
    help="Output format (csv and json hold every param and metric).",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option(
    "--command",
    "command",
    default="",
    metavar="SCRIPT",
    help="Only runs of this command: a script (sim.py, all its functions) or sim.py:fit.",
)
@pass_context
def ls(
    obj: Context,
    where: str,
    columns: str,
    sort: str,
    limit: int | None,
    fmt: str,
    as_json: bool,
    command: str,
) -> None:
    """List recorded runs, newest first (the query language is in docs/query.md).

    The table shows the params and metrics that vary among the listed runs, the command when
    several are listed (--command shows one command's table). Runs still running, and runs
    whose process died, are listed too.

    \b
    Example:
      gittrack ls --where "params.temp >= 200 and (metrics.energy < -1.5 or status = 'failed')"
      gittrack ls --where "params.seed in (1, 3) and name like 'scan-%'"
      gittrack ls --sort=-metrics.energy --limit 10
      gittrack ls --columns id,params.temp,metrics.energy --format csv > table.csv
      gittrack ls --where "tags = 'reference'" --json
      gittrack ls --command sim.py
    """
    from ..library.listing import list_runs, stream_runs

    fmt = "json" if as_json else fmt
    if command.strip():
        where = _and(where, command_query(command.strip()))
    if fmt in ("json", "csv"):  # streamed: flat in memory at any number of runs
        stream = stream_runs(
            obj.repo(), where=where or None, limit=limit, sort=sort or None, columns=columns or None
        )
        write_stream(stream, fmt, stream.columns if columns else None)
        for problem in stream.problems:
            click.echo(f"Warning: {problem}", err=True)
        return
    listing = list_runs(
        obj.repo(),
        where=where or None,
        limit=limit,
        sort=sort or None,
        columns=columns or None,
        varying=fmt in ("table", "markdown"),
    )
    chosen = listing.columns if columns else None
    tty = sys.stdout.isatty()
    output = render_runs(listing, fmt, chosen, color=tty and not no_color(), fit=tty)
    if fmt == "csv":
        click.echo(output, nl=False)
    else:
        obj.emit(output, color=tty and not no_color())
    for problem in listing.problems:
        click.echo(f"Warning: {problem}", err=True)


def command_query(command: str) -> str:
    """The query for one command's runs: `sim.py` also matches its functions (`sim.py:fit`)."""
    quoted = command.replace("'", "''")
    if ":" in command:
        return f"command = '{quoted}'"
    like = quoted.replace("%", "").replace("_", "")  # like's wildcards cannot be escaped
    if like != quoted:
        return f"command = '{quoted}'"
    return f"(command = '{quoted}' or command like '{quoted}:%')"


def _and(where: str, clause: str) -> str:
    return f"({where}) and {clause}" if where.strip() else clause


@cli.command()
@click.argument("run_a", metavar="A", shell_complete=complete_run)
@click.argument("run_b", metavar="B", required=False, shell_complete=complete_run)
@click.option("--no-code", is_flag=True, help="Leave out the code diff.")
@click.option(
    "--worktree", is_flag=True, help="Diff A's code against the working tree instead (no B)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
@click.option(
    "--color/--no-color", default=None, help="Colour the output (default: on a terminal)."
)
@pass_context
def diff(
    obj: Context,
    run_a: str,
    run_b: str | None,
    no_code: bool,
    worktree: bool,
    as_json: bool,
    color: bool | None,
) -> None:
    """Show what differs between runs A and B: params, metrics, env, outputs and code.

    The code part is `git diff` between the commits the two runs executed. With --worktree,
    the `git diff` between A's code and your working tree (tracked files): what changed since.

    \b
    Example:
      gittrack diff 3f2a 9c1e
      gittrack diff baseline latest --no-code
      gittrack diff 3f2a 9c1e --json
      gittrack diff baseline --worktree
    """
    from ..errors import UsageError
    from ..library.diff import diff_runs, format_diff, worktree_diff

    colour = (sys.stdout.isatty() and not no_color()) if color is None else color
    if worktree:
        if run_b is not None:
            raise UsageError("--worktree compares one run with the working tree; drop B.")
        run_id, commit, text = worktree_diff(obj.repo(), run_a, color=colour and not as_json)
        if as_json:
            click.echo(json.dumps({"run": run_id, "code": commit, "diff": text}, indent=2))
        elif not text:
            click.echo(f"The working tree has the code of run {short(run_id)} ({commit[:10]}).")
        else:
            obj.emit(text.rstrip("\n"), color=colour)
        return
    if run_b is None:
        raise UsageError("Give two runs to compare (A B), or one with --worktree.")
    result = diff_runs(obj.repo(), run_a, run_b, code=not no_code, color=colour and not as_json)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False, default=str))
        return
    obj.emit(format_diff(result, color=colour), color=colour)


@cli.command()
@click.argument("run_ref", metavar="RUN", shell_complete=complete_run)
@click.argument("tags", nargs=-1, required=True)
@pass_context
def tag(obj: Context, run_ref: str, tags: tuple[str, ...]) -> None:
    """Tag RUN with one or more TAGS (kept as a git note on its commit).

    Find tagged runs with `gittrack ls --where "tags = 'reference'"`.

    \b
    Example:
      gittrack tag 3f2a reference
      gittrack tag latest checked paper-figure-2
    """
    from ..ops.tags import add_tags

    run_id, now = add_tags(obj.repo(), run_ref, tags)
    click.echo(f"Run {short(run_id)} tags: {', '.join(now) or '(none)'}")


@cli.command()
@click.argument("run_ref", metavar="RUN", shell_complete=complete_run)
@click.argument("tags", nargs=-1, required=True)
@pass_context
def untag(obj: Context, run_ref: str, tags: tuple[str, ...]) -> None:
    """Remove TAGS from RUN (also tags given when it ran).

    \b
    Example:
      gittrack untag 3f2a reference
    """
    from ..ops.tags import remove_tags

    run_id, now = remove_tags(obj.repo(), run_ref, tags)
    click.echo(f"Run {short(run_id)} tags: {', '.join(now) or '(none)'}")


@cli.command()
@click.argument("run_ref", metavar="RUN", shell_complete=complete_run)
@click.argument("text")
@pass_context
def note(obj: Context, run_ref: str, text: str) -> None:
    """Attach a note TEXT to RUN, replacing its note ("" removes it).

    \b
    Example:
      gittrack note 3f2a "energy drift after step 5000; rerun with smaller dt"
    """
    from ..ops.tags import set_note

    run_id = set_note(obj.repo(), run_ref, text)
    click.echo(f"Run {short(run_id)} note {'set' if text.strip() else 'removed'}.")
