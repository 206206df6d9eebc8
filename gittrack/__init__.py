"""gittrack: every run of a click command recorded as a git commit, outputs through DVC.

Only the public API lives here; heavier parts load on first use so that recording stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .errors import (
    AmbiguousRun as AmbiguousRun,
    GittrackError as GittrackError,
    NotAGitRepo as NotAGitRepo,
    QueryError as QueryError,
    RunNotFound as RunNotFound,
)
from .tracker import command as command, log_metadata as log_metadata

if TYPE_CHECKING:
    from .api import RunSet as RunSet, runs as runs
    from .experiment import Experiment as Experiment
    from .outputs import log as log, output_dir as output_dir, save as save
    from .refs import Run as Run
    from .runref import RunRef as RunRef

__all__ = [
    "AmbiguousRun",
    "Experiment",
    "GittrackError",
    "NotAGitRepo",
    "QueryError",
    "Run",
    "RunNotFound",
    "RunRef",
    "RunSet",
    "__version__",
    "command",
    "log",
    "log_metadata",
    "output_dir",
    "runs",
    "save",
]

_LAZY = {
    "Run": ("refs", "Run"),
    "runs": ("api", "runs"),
    "RunSet": ("api", "RunSet"),
    "RunRef": ("runref", "RunRef"),
    "Experiment": ("experiment", "Experiment"),
    "log": ("outputs", "log"),
    "output_dir": ("outputs", "output_dir"),
    "save": ("outputs", "save"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gittrack' has no attribute {name!r}")
