"""Commands about run outputs: remote, checkout, push, rm, gc, status, verify."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .._ids import short
from ..model.values import human_size
from . import Context, cli, complete_run, pass_context


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@cli.group()
def remote() -> None:
    """Show or set the DVC remote where run outputs are pushed.

    \b
    Example:
      gittrack remote show
      gittrack remote set s3://bucket/path
    """


@remote.command("set")
@click.argument("url")
@pass_context
def remote_set(obj: Context, url: str) -> None:
    """Make URL the default DVC remote (committed on the runs branch, so clones know it).

    URL is any DVC remote: a local folder, s3://, ssh://, gs://, ... (cloud ones need DVC's
    plugin, e.g. `pip install dvc-s3`). Outputs already stored go there with `gittrack push`.

    \b
    Example:
      gittrack remote set /mnt/shared/gittrack-storage
    """
    from ..ops.data import set_remote

    stored = set_remote(obj.repo(), url)
    click.echo(f"DVC remote set to {stored}. 'gittrack push' copies existing outputs there.")


@remote.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_context
def remote_show(obj: Context, as_json: bool) -> None:
    """Print the default DVC remote's URL.

    \b
    Example:
      gittrack remote show
    """
    from ..ops.data import remote_url

    url = remote_url(obj.repo())
    if as_json:
        _echo_json({"url": url})
    else:
        click.echo(url or "(no remote: set one with 'gittrack remote set URL')")


@cli.command()
@click.argument("run_ref", metavar="RUN", shell_complete=complete_run)
@click.argument("names", nargs=-1, metavar="[OUTPUT]...")
@click.option(
    "--to", "to", type=click.Path(file_okay=False), help="Copy the outputs into this folder."
)
@click.option(
    "--force",
    "-f",
    is_flag=True,
    help="Replace files or folders in the way that differ from the outputs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the paths as JSON.")
@pass_context
def checkout(
    obj: Context,
    run_ref: str,
    names: tuple[str, ...],
    to: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Materialise a run's outputs, fetching them from the remote when needed.

    Without --to they appear in the run's output folder (.gittrack/outputs/<id>/);
    with --to they are copied into that folder as independent files. A file or folder
    already in the way is left alone unless it holds the same data or --force is given;
    nothing is ever written outside the target folder.

    \b
    Example:
      gittrack checkout 3f2a
      gittrack checkout 3f2a trajectory --to results/
    """
    from ..ops.data import checkout as do_checkout

    paths = do_checkout(obj.repo(), run_ref, names, to, progress=sys.stderr.isatty(), force=force)
    if as_json:
        _echo_json([str(p) for p in paths])
        return
    for path in paths:
        click.echo(str(path))


@cli.command()
@click.argument("run_refs", nargs=-1, metavar="[RUN]...", shell_complete=complete_run)
@click.option(
    "--where", "-w", default="", metavar="QUERY", help="Remove every run matching QUERY too."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for --where).")
@click.option("--json", "as_json", is_flag=True, help="Print the removed ids as JSON.")
@pass_context
def rm(obj: Context, run_refs: tuple[str, ...], where: str, yes: bool, as_json: bool) -> None:
    """Remove runs from the runs branch (git history keeps them).

    Their outputs stay in the cache until `gittrack gc`. A warning names runs that used
    a removed run as an input; their lineage shows it as removed. --where removes every
    matching run after listing them and asking (on a terminal; elsewhere give --yes).

    \b
    Example:
      gittrack rm 3f2a 9c1e
      gittrack rm 3f2a && gittrack gc
      gittrack rm --where "status = 'failed' and started < '2024-05-01'"
    """
    from ..errors import UsageError
    from ..library.listing import list_runs
    from ..ops.data import remove

    repo = obj.repo()
    refs = list(run_refs)
    if not refs and not where.strip():
        raise UsageError("Name the runs to remove, or give --where QUERY.")
    if where.strip():
        matched = [r["id"] for r in list_runs(repo, where=where, varying=False).rows]
        if not matched:
            click.echo(f"No run matches {where!r}; nothing removed.", err=True)
            if not refs:
                return
        elif not yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"{len(matched)} run(s) match; add --yes to remove them without a terminal."
                )
            shown = ", ".join(short(m) for m in matched[:10]) + (", …" if len(matched) > 10 else "")
            click.confirm(f"Remove {len(matched)} run(s): {shown}?", abort=True, err=True)
        refs += [m for m in matched if m not in refs]
    removed, users = remove(repo, refs)
    for run_id, dependent in users.items():
        shown = ", ".join(short(d) for d in dependent)
        click.echo(f"Warning: run {short(run_id)} was an input of run(s) {shown}.", err=True)
    if as_json:
        _echo_json({"removed": removed, "dependents": users})
    else:
        click.echo(f"Removed {len(removed)} run(s): {', '.join(short(r) for r in removed)}.")


@cli.command()
@click.option(
    "--remote", "on_remote", is_flag=True, help="Also delete unused objects on the DVC remote."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
def gc(obj: Context, on_remote: bool, as_json: bool) -> None:
    """Delete stored outputs that no run on the runs branch references any more.

    Only runs on this clone's branch count: `gittrack pull` before `gc --remote` on a
    shared remote, or collaborators' outputs are deleted.

    \b
    Example:
      gittrack rm 3f2a && gittrack gc
      gittrack gc --remote
    """
    from ..ops.data import gc as do_gc

    report = do_gc(obj.repo(), remote=on_remote)
    if as_json:
        _echo_json(report.__dict__)
        return
    click.echo(
        f"Freed {human_size(report.bytes)} locally ({report.objects} cache object(s), "
        f"{report.folders} output folder(s)"
        + (f", {report.temp_files} temp file(s)" if report.temp_files else "")
        + ")."
    )
    if on_remote:
        click.echo(
            f"Freed {human_size(report.remote_bytes)} on the remote"
            f" ({report.remote_objects} object(s))."
        )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_context
def status(obj: Context, as_json: bool) -> None:
    """Show outputs not yet pushed, and runs still running or whose process died.

    \b
    Example:
      gittrack status
    """
    from ..ops.data import status as do_status

    result = do_status(obj.repo())
    if as_json:
        _echo_json(
            {
                "remote": result.url,
                "remote_problem": result.remote_problem,
                "unpushed": [
                    {"run": u.run, "output": u.name, "size": u.output.size} for u in result.unpushed
                ],
                "runs": [{"run": r, "command": c, "state": s} for r, c, s in result.running],
            }
        )
        return
    if result.remote_problem:
        click.echo(f"Warning: {result.remote_problem}", err=True)
    if result.unpushed:
        total = sum(u.output.size for u in result.unpushed)
        click.echo(
            f"{len(result.unpushed)} output(s) not pushed ({human_size(total)}); 'gittrack push' "
            "sends them:"
        )
        for ref in result.unpushed:
            click.echo(f"  {short(ref.run)}  {ref.name}  {human_size(ref.output.size)}")
    else:
        click.echo(f"All outputs are on the remote {result.url}.")
    for run_id, command, state in result.running:
        click.echo(f"{state}: {short(run_id)}  {command}")


@cli.command()
@click.argument("run_refs", nargs=-1, metavar="[RUN]...", shell_complete=complete_run)
@click.option(
    "--remote", "on_remote", is_flag=True, help="Also re-hash the copies on the DVC remote."
)
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@pass_context
def verify(obj: Context, run_refs: tuple[str, ...], on_remote: bool, as_json: bool) -> None:
    """Re-hash stored outputs (of RUN, else of every run) and name any that do not match.

    Sizes and md5 hashes are compared with the records; --remote checks the DVC remote's
    copies as well (reading them all). Exits 1 when an output is missing, corrupted or partial.

    \b
    Example:
      gittrack verify
      gittrack verify 3f2a --remote
    """
    from ..ops.data import verify as do_verify

    checked, problems = do_verify(obj.repo(), run_refs, remote=on_remote)
    if as_json:
        _echo_json({"checked": checked, "problems": [p.__dict__ for p in problems]})
    else:
        for problem in problems:
            click.echo(f"{short(problem.run)} {problem.name}: {problem.message}")
        click.echo(f"{checked} output(s) checked, {len(problems)} problem(s).")
    if problems:
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@pass_context
def doctor(obj: Context, as_json: bool) -> None:
    """Repair gittrack's state: a runs branch naming missing objects, runs whose process died.

    Listing never writes; a died run stays staged until a run ends, a sweep, `push` or this
    command records it.

    \b
    Example:
      gittrack doctor
    """
    from ..ops.doctor import doctor as do_doctor

    report = do_doctor(obj.repo())
    if as_json:
        click.echo(json.dumps({"died": report.died, "actions": report.actions}, indent=2))
    else:
        for line in report.actions:
            click.echo(line)
        if not report.actions:
            click.echo("Nothing to repair.")
    if not report.healthy:
        sys.exit(1)
