"""Commands that share runs with collaborators: push and pull."""

from __future__ import annotations

import json
import sys

import click

from .._ids import short
from . import Context, cli, pass_context


@cli.command()
@click.argument("remote", required=False)
@click.option("--no-data", is_flag=True, help="Do not push outputs to the DVC remote.")
@click.option("--json", "as_json", is_flag=True, help="Print what was pushed as JSON.")
@pass_context
def push(obj: Context, remote: str | None, no_data: bool, as_json: bool) -> None:
    """Share runs: outputs to the DVC remote, the runs branch, code and notes to REMOTE.

    REMOTE is a git remote name (default: origin). When REMOTE has runs you do not have,
    nothing is overwritten: pull first. With no git remote, only the outputs are pushed.

    \b
    Example:
      gittrack push
      gittrack push lab --no-data
    """
    from ..ops.sync import push as push_runs

    progress = sys.stderr.isatty() and obj.verbosity >= 0
    summary = push_runs(obj.repo(), remote, data=not no_data, progress=progress)
    report = summary.data
    missing = list(getattr(report, "missing", []) or [])
    if as_json:
        data = summary.to_json_dict()
        out = dict(data["data"]) if isinstance(data["data"], dict) else {}
        if hasattr(report, "url"):
            out = {
                "remote": report.url,
                "copied": report.copied,
                "bytes": report.bytes,
                "already": report.already,
                "missing": [{"run": m.run, "output": m.name} for m in missing],
            }
        out["git"] = {
            "remote": summary.remote,
            "updated": summary.updated,
            "up_to_date": summary.up_to_date,
        }
        if summary.data_error:
            out["data_error"] = summary.data_error
        click.echo(json.dumps(out, indent=2))
    else:
        if report is not None:
            click.echo(_data_line(report))
            for ref in missing:
                click.echo(
                    f"Warning: output '{ref.name}' of run {short(ref.run)} is neither in the "
                    "local cache "
                    "nor on the remote; push it from the clone that recorded it.",
                    err=True,
                )
        if not summary.remote:
            click.echo(
                "No git remote: the runs stay in this repository (add one with 'git remote add "
                "origin URL')."
            )
        elif summary.updated:
            click.echo(f"Pushed runs to {summary.remote} ({summary.updated_line}).")
        else:
            click.echo(f"Runs: {summary.remote} is up to date.")
    if summary.data_error:
        raise click.ClickException(summary.data_error)
    if missing:
        sys.exit(1)


def _data_line(report: object) -> str:
    if hasattr(report, "copied") and hasattr(report, "url"):
        from ..model.values import human_size

        if not report.copied:
            return f"All outputs are already on the DVC remote {report.url}."
        return (
            f"Pushed {report.copied} object(s) ({human_size(getattr(report, 'bytes', 0))}) to "
            f"{report.url}; "
            f"{getattr(report, 'already', 0)} output(s) were there already."
        )
    return f"Outputs: {report}"


@cli.command()
@click.argument("remote", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print what was pulled as JSON.")
@pass_context
def pull(obj: Context, remote: str | None, as_json: bool) -> None:
    """Fetch a collaborator's runs from REMOTE and join them with yours.

    REMOTE is a git remote name (default: origin). Diverged runs branches are joined by a
    merge commit holding both sides' runs; a run that differs on both sides stops the pull.

    \b
    Example:
      gittrack pull
      gittrack pull lab --json
    """
    from ..ops.sync import pull as pull_runs

    summary = pull_runs(obj.repo(), remote)
    if as_json:
        click.echo(json.dumps(summary.to_json_dict(), indent=2))
        return
    text = {
        "nothing": f"{summary.remote} has no runs yet.",
        "up-to-date": "Already up to date.",
        "created": f"{len(summary.added)} run(s) from {summary.remote}.",
        "fast-forward": f"{len(summary.added)} new run(s) from {summary.remote} (fast-forward).",
        "merge": f"{len(summary.added)} new run(s) from {summary.remote}, joined with yours "
        "by a merge commit.",
    }[summary.kind]
    click.echo(text)
    if summary.removed:
        click.echo(
            f"{len(summary.removed)} run(s) removed on {summary.remote} were removed here too."
        )
    for path in summary.kept_ours:
        click.echo(f"Warning: {path} was changed on both sides; kept yours.", err=True)
