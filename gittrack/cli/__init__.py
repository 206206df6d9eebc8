"""The `gittrack` command line: a thin click group over the library.

Errors become exit codes here and only here: a GittrackError prints `Error: <sentence>` and
exits with its `exit_code` (2 for usage errors, 1 for the rest); anything unexpected prints one
line and the hint to rerun with --debug.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from .._version import __version__
from ..errors import GittrackError, UsageError, storage_fault


class Context:
    """What the root group passes down: where the repository is and whether to debug."""

    def __init__(self, repo: str | None, debug: bool) -> None:
        self.repo_path = repo
        self.debug = debug

    def repo(self) -> Any:
        from ..library.run import open_repo

        return open_repo(self.repo_path)


pass_context = click.make_pass_decorator(Context)


class UsageFailure(click.ClickException):
    """A usage error as click prints it (`Error: <sentence>`), exiting 2."""

    exit_code = 2


class GittrackGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except GittrackError as exc:
            if _debug(ctx):
                traceback.print_exc()
            failure = UsageFailure if exc.exit_code == 2 else click.ClickException
            raise failure(str(exc)) from exc
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except Exception as exc:
            if _debug(ctx):
                traceback.print_exc()
                ctx.exit(1)
            full = storage_fault(exc)
            if full is not None:
                raise click.ClickException(str(full)) from exc
            click.echo(
                f"Error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                err=True,
            )
            ctx.exit(1)


def check_folder(path: str) -> None:
    """Refuse, before any work, a file the user named (`-o`) in a folder that does not exist."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise UsageError(
            f"Cannot write {path}: the folder {folder} does not exist; create it first "
            f"(mkdir -p {folder}) or give another path."
        )


def write_file(path: str, data: bytes) -> None:
    """Write a file the user named (`-o`); a missing folder or a full disk is one sentence."""
    check_folder(path)
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise GittrackError(
            f"Cannot write {path} ({reason}); check the folder's permissions and free space."
        ) from exc


def _debug(ctx: click.Context) -> bool:
    obj = ctx.find_object(Context)
    return bool(obj and obj.debug) or "--debug" in sys.argv


@click.group(cls=GittrackGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-C",
    "--repo",
    "repo",
    envvar="GITTRACK_REPO",
    type=click.Path(file_okay=False),
    help="Run as if started in this repository (also GITTRACK_REPO).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of unexpected errors.")
@click.version_option(__version__, prog_name="gittrack")
@click.pass_context
def cli(ctx: click.Context, repo: str | None, debug: bool) -> None:
    """Record every run of a simulation or analysis as a git commit.

    \b
    Start with:
      gittrack init                    prepare the repository (once)
      gittrack run sim.py --temp 300   run sim.py's tracked command and record it
      gittrack ls                      the recorded runs
      gittrack show latest             one run's whole record
    """
    ctx.obj = Context(repo, debug)


def main() -> None:
    cli(prog_name="gittrack")


# command modules register themselves on `cli` when imported
COMMAND_MODULES = (
    "runs",
    "query",  # ls, diff, tag, untag, note
    "flow",
    "data",
    "share",  # after data: `gittrack push` sends runs and outputs
    "ui",
    "programs",  # exec, notebook
)
for _module in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_module}")
