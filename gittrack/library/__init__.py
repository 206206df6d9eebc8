"""The read API: runs and run sets, resolving references, listings, lineage graphs and diffs.

The CLI and the UI read through these names only. Everything loads on first use, so that the
recording path (which needs only `consumers`) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import Repo as Repo
    from . import (
        browse as browse,
        lineage as lineage,
        previews as previews,
        runview as runview,
    )
    from .diff import code_diff as code_diff, diff_runs as diff_runs, format_diff as format_diff
    from .listing import (
        Listing as Listing,
        list_runs as list_runs,
        query_hints as query_hints,
        staged_run as staged_run,
    )
    from .outputs import (
        load_output as load_output,
        materialise as materialise,
        output_path as output_path,
    )
    from .run import (
        Run as Run,
        iter_runs as iter_runs,
        named as named,
        open_repo as open_repo,
        resolve_id as resolve_id,
    )
    from .runset import RunSet as RunSet, runs as runs

_LAZY = {
    "browse": ("browse", None),
    "runview": ("runview", None),
    "previews": ("previews", None),
    "lineage": ("lineage", None),
    "code_diff": ("diff", "code_diff"),
    "diff_runs": ("diff", "diff_runs"),
    "format_diff": ("diff", "format_diff"),
    "Listing": ("listing", "Listing"),
    "list_runs": ("listing", "list_runs"),
    "query_hints": ("listing", "query_hints"),
    "staged_run": ("listing", "staged_run"),
    "load_output": ("outputs", "load_output"),
    "materialise": ("outputs", "materialise"),
    "output_path": ("outputs", "output_path"),
    "Run": ("run", "Run"),
    "iter_runs": ("run", "iter_runs"),
    "named": ("run", "named"),
    "open_repo": ("run", "open_repo"),
    "resolve_id": ("run", "resolve_id"),
    "Repo": ("..store", "Repo"),
    "RunSet": ("runset", "RunSet"),
    "runs": ("runset", "runs"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = importlib.import_module(
            module if module.startswith(".") else f".{module}", __name__
        )
        if attr is not None:
            value = getattr(value, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gittrack.library' has no attribute {name!r}")
