"""Commands recording programs that are not click commands: exec and notebook."""

from __future__ import annotations

import sys

import click

from ..recording.exec_spec import exec_options
from . import Context, cli, pass_context


@cli.command("exec", context_settings={"allow_interspersed_args": False})
@exec_options
@click.option("--name", default="", help="A human name for the run, usable wherever an id is.")
@click.option("--tag", "tags", multiple=True, help="Tag the run (repeatable).")
@click.option("--note", default="", help="A free-text note stored with the run.")
@click.option(
    "--force", is_flag=True, help="Record a new run even when an identical completed run exists."
)
@click.option("--allow-failed", is_flag=True, help="Accept failed or died runs as -i inputs.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_context
def exec_(
    obj: Context,
    params: tuple[str, ...],
    outputs: tuple[str, ...],
    inputs: tuple[str, ...],
    cwd: str | None,
    metrics_from: tuple[str, ...],
    engine_version: str,
    name: str,
    tags: tuple[str, ...],
    note: str,
    force: bool,
    allow_failed: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND (any program) and record it as a run.

    COMMAND runs in a fresh run folder (or --cwd) with every {NAME} replaced by the value of
    `-p NAME=VALUE` or the path of input `-i NAME=RUN[:OUTPUT]`; relative paths of existing
    files are made absolute. What it writes there becomes the run's outputs (or only what
    matches -o). The program's path, sha256, version and package are recorded; an identical
    earlier run (same build, params, inputs and files) is reused unless --force.

    \b
    Example:
      gittrack exec -p temp=300 -p steps=1000 -o 'dump.*' -- lmp -in in.melt -var T {temp}
      gittrack exec -i sim=5c1e0a2f:dump -- ./analyse.sh {sim}
    """
    from ..errors import GittrackError, ProgramFailed
    from ..recording.context import RunOptions
    from ..recording.exec_run import run_exec
    from ..recording.exec_spec import exec_args

    options = RunOptions(
        name=name,
        tags=list(tags),
        note=note,
        repo=obj.repo_path,
        force=force,
        allow_failed=allow_failed,
    )
    args = exec_args(params, outputs, inputs, cwd, metrics_from, engine_version, command)
    try:
        run_exec(args, options)
    except ProgramFailed as exc:
        record = options.record
        short = record.short if record else "?"
        click.echo(
            f"Error: {exc.program} exited with code {exc.exit_code}; run {short} is recorded "
            f"as failed ('gittrack show {short}' has the end of its output).",
            err=True,
        )
        sys.exit(exc.exit_code if 0 < exc.exit_code < 256 else 1)
    except (KeyboardInterrupt, click.Abort):
        sys.exit(130)
    except GittrackError:
        raise


@cli.command()
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option(
    "-p",
    "--param",
    "params",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="A param injected by papermill (typed: int, float, bool, else string).",
)
@click.option("-k", "--kernel", default="", help="The kernel (default: the notebook's, python3).")
@click.option(
    "--cwd",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Execute in this folder instead of the run folder.",
)
@click.option("--name", default="", help="A human name for the run, usable wherever an id is.")
@click.option("--tag", "tags", multiple=True, help="Tag the run (repeatable).")
@click.option("--note", default="", help="A free-text note stored with the run.")
@pass_context
def notebook(
    obj: Context,
    notebook: str,
    params: tuple[tuple[str, str], ...],
    kernel: str,
    cwd: str | None,
    name: str,
    tags: tuple[str, ...],
    note: str,
) -> None:
    """Execute NOTEBOOK with papermill and record it as a run.

    Params are injected after the cell tagged `parameters`. It executes in the run folder (or
    --cwd): the executed notebook and the files it saves (figures) are the run's outputs; runs
    it reads through gittrack.Run or gittrack.runs are its inputs. Needs `pip install
    'gittrack[notebook]'`.

    \b
    Example:
      gittrack notebook analysis.ipynb -p temp 300 -p sims "params.steps = 1000"
    """
    from ..errors import NotebookFailed
    from ..recording.context import RunOptions
    from ..recording.notebook import parse_values, run_notebook

    values = parse_values(params)
    options = RunOptions(name=name, tags=list(tags), note=note, repo=obj.repo_path)
    try:
        run_notebook(notebook, values, options, kernel=kernel, cwd=cwd)
    except NotebookFailed as exc:
        short = options.record.short if options.record else "?"
        click.echo(f"Error: {exc}; run {short} is recorded as failed.", err=True)
        sys.exit(1)
