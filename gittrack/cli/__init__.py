"""The `gittrack` command line: a thin click group over the library.

Errors become exit codes here and only here: a GittrackError prints `Error: <sentence>` and
exits with its `exit_code` (2 for usage errors, 1 for the rest); anything unexpected prints one
line and the hint to rerun with --debug.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from .._process import freeze_startup
from .._version import __version__
from ..errors import GittrackError, UsageError, storage_fault


class Context:
    """What the root group passes down: the repository, debugging, verbosity and the pager."""

    def __init__(
        self, repo: str | None, debug: bool, verbosity: int = 0, pager: bool = True
    ) -> None:
        self.repo_path = repo
        self.debug = debug
        self.verbosity = verbosity  # -1 quiet, 0 normal, 1+ verbose
        self.pager = pager

    def emit(self, text: str, color: bool | None = None) -> None:
        """Print `text`; on a terminal, through the pager when it is taller than the window."""
        echo_paged(text, pager=self.pager, color=color)

    def repo(self) -> Any:
        from ..library.run import open_repo

        return open_repo(self.repo_path)


pass_context = click.make_pass_decorator(Context)


def complete_run(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of a RUN argument: `latest`, run names and short ids."""
    from click.shell_completion import CompletionItem

    from ..library.resolve import complete_refs
    from ..library.run import open_repo

    try:
        repo = open_repo(ctx.find_root().params.get("repo"))
        return [CompletionItem(v, help=h or None) for v, h in complete_refs(repo, incomplete)]
    except Exception:  # completion never prints an error into the user's shell
        return []


VERBOSITY_ENV = "GITTRACK_VERBOSITY"  # -1 quiet, 1+ verbose; set by -q/-v for runs and workers


class UsageFailure(click.ClickException):
    """A usage error as click prints it (`Error: <sentence>`), exiting 2."""

    exit_code = 2


# each command -> the module of gittrack.cli that defines it, imported when the command is used:
# `gittrack ls` loads neither the recording machinery nor the web app
COMMANDS = {
    **dict.fromkeys(("init", "run", "show"), "runs"),
    **dict.fromkeys(("ls", "diff", "tag", "untag", "note"), "query"),
    **dict.fromkeys(("lineage", "rerun", "submit", "sweep"), "flow"),
    **dict.fromkeys(("checkout", "doctor", "gc", "remote", "rm", "status", "verify"), "data"),
    **dict.fromkeys(("push", "pull"), "share"),
    **dict.fromkeys(("ui", "report"), "ui"),
    **dict.fromkeys(("exec", "notebook"), "programs"),
}


class GittrackGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands.keys() | COMMANDS.keys())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(f"{__name__}.{module}")
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except GittrackError as exc:
            if _debug(ctx):
                _print_traceback()
            failure = UsageFailure if exc.exit_code == 2 else click.ClickException
            raise failure(str(exc)) from exc
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except Exception as exc:
            if _debug(ctx):
                _print_traceback()
                ctx.exit(1)
            full = storage_fault(exc)
            if full is not None:
                raise click.ClickException(str(full)) from exc
            click.echo(
                f"Error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the "
                "traceback)",
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


def _print_traceback() -> None:
    import traceback  # only with --debug: not loaded by every command

    traceback.print_exc()


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
@click.option("-q", "--quiet", is_flag=True, help="No 'run ... recorded' lines or progress bars.")
@click.option(
    "-v", "--verbose", count=True, help="Say more: how to see each recorded run, and more."
)
@click.option("--no-pager", is_flag=True, help="Never page long output (also GITTRACK_PAGER=cat).")
@click.version_option(__version__, prog_name="gittrack")
@click.pass_context
def cli(
    ctx: click.Context, repo: str | None, debug: bool, quiet: bool, verbose: int, no_pager: bool
) -> None:
    """Record every run of a simulation or analysis as a git commit.

    \b
    Start with:
      gittrack init                    prepare the repository (once)
      gittrack run sim.py --temp 300   run sim.py's tracked command and record it
      gittrack ls                      the recorded runs
      gittrack show latest             one run's whole record
    """
    verbosity = -1 if quiet else verbose
    ctx.obj = Context(repo, debug, verbosity, pager=not no_pager)
    if verbosity:
        # through the environment, so that runs in this process and in workers see it
        before = os.environ.get(VERBOSITY_ENV)
        os.environ[VERBOSITY_ENV] = str(verbosity)
        ctx.call_on_close(lambda: _restore(VERBOSITY_ENV, before))


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def terminal_size(fallback: tuple[int, int] = (80, 24)) -> os.terminal_size:
    """`shutil.get_terminal_size`, shutil (with lzma and bz2) loaded only when output goes
    to a terminal."""
    import shutil

    return shutil.get_terminal_size(fallback)


def echo_paged(text: str, *, pager: bool = True, color: bool | None = None) -> None:
    """`click.echo(text)`, through GITTRACK_PAGER or PAGER (default less) when stdout is a
    terminal and `text` is taller than it; GITTRACK_PAGER=cat (or empty) never pages."""
    chosen = os.environ.get("GITTRACK_PAGER")
    if (
        not pager
        or not sys.stdout.isatty()
        or (chosen is not None and chosen.strip() in ("", "cat"))
        or text.count("\n") + 1 < terminal_size().lines
    ):
        click.echo(text, color=color)
        return
    before = os.environ.get("PAGER")
    if chosen:
        os.environ["PAGER"] = chosen
    try:
        click.echo_via_pager(text, color=color)
    finally:
        _restore("PAGER", before)


def main() -> None:
    freeze_startup()  # the objects loaded so far live until the process ends
    cli(prog_name="gittrack")
