"""What ties a run in progress to the code around it: the current session, the pending options.

`gittrack run`, sweeps, Experiment, rerun and the executors set `RunOptions` before invoking a
tracked command; the run started next takes them and writes back what it recorded.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..model.record import RunRecord
    from .session import RunSession


class RunOptions:
    """What `gittrack run` (or an Experiment) adds to the next run it starts, and its outcome.

    A plain class, not a dataclass: one is made at the start of every run."""

    def __init__(
        self,
        name: str = "",
        tags: list[str] | None = None,
        note: str = "",
        experiment: str = "",
        rerun_of: str = "",
        repo: str | None = None,
        force: bool = False,
        script: Path | None = None,
        allow_failed: bool = False,  # RunRef accepts failed/died runs (run --allow-failed)
        parent: str = "",  # the launching run when it is in another process (a driver)
        on_start: Callable[[str], None] | None = None,  # told the run's id once it is staged
    ) -> None:
        self.name = name
        self.tags: list[str] = [] if tags is None else tags
        self.note = note
        self.experiment = experiment
        self.rerun_of = rerun_of
        self.repo = repo
        self.force = force
        self.script = script
        self.allow_failed = allow_failed
        self.parent = parent
        self.on_start = on_start
        # filled in by the run: the record it made (or reused)
        self.record: RunRecord | None = None
        self.reused = False


_current: contextvars.ContextVar[RunSession | None] = contextvars.ContextVar(
    "gittrack_run", default=None
)
_pending: contextvars.ContextVar[RunOptions | None] = contextvars.ContextVar(
    "gittrack_pending", default=None
)


def current() -> RunSession | None:
    """The run being recorded in this context, if any."""
    return _current.get()


def pending(options: RunOptions | None) -> contextvars.Token[RunOptions | None]:
    """Set the options the next run started in this context picks up."""
    return _pending.set(options)


def reset_pending(token: contextvars.Token[RunOptions | None]) -> None:
    _pending.reset(token)


def next_options() -> RunOptions | None:
    """The options the next run started in this context will pick up, if any were set."""
    return _pending.get()


def take_options() -> RunOptions:
    """The pending options, consumed: a nested run started later does not see them."""
    options = _pending.get() or RunOptions()
    _pending.set(None)
    return options


def forced(options: RunOptions) -> bool:
    """Whether this run records anew even when an identical one exists."""
    return options.force or os.environ.get("GITTRACK_FORCE", "") not in ("", "0")


def allow_failed(options: RunOptions | None) -> bool:
    env = os.environ.get("GITTRACK_ALLOW_FAILED", "") not in ("", "0")
    return env or bool(options and options.allow_failed)


def repo_path(options: RunOptions | None, script: Path | None) -> str | Path | None:
    """Where a run records: --repo or GITTRACK_REPO, else the script's folder, else the cwd."""
    if options is not None and options.repo:
        return options.repo
    if os.environ.get("GITTRACK_REPO"):
        return os.environ["GITTRACK_REPO"]
    return script.resolve().parent if script is not None else None


def new_run_id() -> str:
    """32 random hex characters: short ids of a sweep's runs do not collide."""
    return os.urandom(16).hex()


def now() -> dt.datetime:
    """The current UTC time to the millisecond (what TOML datetimes keep)."""
    stamp = dt.datetime.now(dt.UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


def script_of(command: click.Command) -> Path | None:
    """The file defining a command's callback, if it exists."""
    callback = command.callback
    while callback is not None and hasattr(callback, "__wrapped__"):
        callback = callback.__wrapped__
    code = getattr(callback, "__code__", None)
    if code is None:
        return None
    path = Path(code.co_filename)
    return path if path.exists() else None
