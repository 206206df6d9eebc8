"""One way to invoke a tracked command in this process, for `gittrack run`, sweeps and executors.

The options given are what the run started next takes (name, experiment, repo, ...); the run
writes its record back into them, so the caller learns what was recorded without reaching into
click's context.
"""

from __future__ import annotations

from pathlib import Path

import click

from .. import store
from ..model.record import RunRecord
from .context import RunOptions, pending, repo_path, reset_pending
from .loader import find_command


def invoke(
    command: click.Command, args: list[str], options: RunOptions, prog_name: str
) -> RunOptions:
    """Run `command` with `args` as its command line would; returns `options`, now filled in.

    Click's own exits and errors propagate as they would from `command.main`.
    """
    token = pending(options)
    try:
        command.main(list(args), prog_name=prog_name, standalone_mode=False)
    finally:
        reset_pending(token)
    return options


def run_script(
    script: Path, args: list[str], function: str | None = None, options: RunOptions | None = None
) -> RunRecord | None:
    """Load `script`, find its tracked command and invoke it in-process with `args`."""
    opts = options or RunOptions()
    # outside a repository: say so before the script is even loaded
    store.find_repo(repo_path(opts, script))
    opts.script = script
    command = find_command(script, function)
    return invoke(command, args, opts, script.name).record
