"""gittrack: every run of a click command recorded as a git commit, outputs through DVC.

Only the public API lives here; heavier parts load on first use so that recording stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__
from .errors import (
    AmbiguousRun as AmbiguousRun,
    BranchDamaged as BranchDamaged,
    CodeUnavailable as CodeUnavailable,
    ConflictError as ConflictError,
    GitError as GitError,
    GittrackError as GittrackError,
    GraphvizMissing as GraphvizMissing,
    NoCommits as NoCommits,
    NoRunsMatch as NoRunsMatch,
    NoSuchRemote as NoSuchRemote,
    NotAGitRepo as NotAGitRepo,
    NotebookFailed as NotebookFailed,
    OutputError as OutputError,
    OutputNameError as OutputNameError,
    ProgramFailed as ProgramFailed,
    ProgramNotFound as ProgramNotFound,
    QueryError as QueryError,
    RecordError as RecordError,
    RemoteError as RemoteError,
    RemoteMoved as RemoteMoved,
    RepoNotWritable as RepoNotWritable,
    RunConflict as RunConflict,
    RunFailed as RunFailed,
    RunNotFound as RunNotFound,
    SchedulerUnavailable as SchedulerUnavailable,
    SchemaTooNew as SchemaTooNew,
    ScriptError as ScriptError,
    StorageFull as StorageFull,
    SweepSpecError as SweepSpecError,
    TooManyRuns as TooManyRuns,
    UnsupportedOutput as UnsupportedOutput,
    UnusableRun as UnusableRun,
    UsageError as UsageError,
)

if TYPE_CHECKING:
    from .execute.experiment import Experiment as Experiment
    from .library.run import Run as Run
    from .library.runset import RunSet as RunSet, runs as runs
    from .recording.command import command as command, log_metadata as log_metadata
    from .recording.outputs import log as log, output_dir as output_dir, save as save
    from .recording.runref import RunRef as RunRef
    from .recording.shell import shell as shell
    from .recording.track import track as track

__all__ = [
    "AmbiguousRun",
    "BranchDamaged",
    "CodeUnavailable",
    "ConflictError",
    "Experiment",
    "GitError",
    "GittrackError",
    "GraphvizMissing",
    "NoCommits",
    "NoRunsMatch",
    "NoSuchRemote",
    "NotAGitRepo",
    "NotebookFailed",
    "OutputError",
    "OutputNameError",
    "ProgramFailed",
    "ProgramNotFound",
    "QueryError",
    "RecordError",
    "RemoteError",
    "RemoteMoved",
    "RepoNotWritable",
    "Run",
    "RunConflict",
    "RunFailed",
    "RunNotFound",
    "RunRef",
    "RunSet",
    "SchedulerUnavailable",
    "SchemaTooNew",
    "ScriptError",
    "StorageFull",
    "SweepSpecError",
    "TooManyRuns",
    "UnsupportedOutput",
    "UnusableRun",
    "UsageError",
    "__version__",
    "command",
    "log",
    "log_metadata",
    "output_dir",
    "runs",
    "save",
    "shell",
    "track",
]

_LAZY = {  # loaded on first use: `gittrack ls` never needs the recording machinery
    "command": ("recording.command", "command"),
    "log_metadata": ("recording.command", "log_metadata"),
    "Run": ("library.run", "Run"),
    "runs": ("library.runset", "runs"),
    "RunSet": ("library.runset", "RunSet"),
    "RunRef": ("recording.runref", "RunRef"),
    "Experiment": ("execute.experiment", "Experiment"),
    "log": ("recording.outputs", "log"),
    "output_dir": ("recording.outputs", "output_dir"),
    "save": ("recording.outputs", "save"),
    "shell": ("recording.shell", "shell"),
    "track": ("recording.track", "track"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gittrack' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API, lazy names included (what tab completion in a notebook offers)."""
    return sorted(__all__)
