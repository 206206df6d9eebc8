"""Getting a recorded run's outputs back: from its output folder, the DVC cache or the remote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import store
from ..errors import OutputError
from ..model.record import Output
from ..store import project

if TYPE_CHECKING:
    from .run import Run


def _output(run: Run, name: str) -> Output:
    outputs = run.record.outputs
    if name not in outputs:
        known = ", ".join(sorted(outputs)) or "none"
        raise OutputError(f"Run {run.short} has no output '{name}' (its outputs: {known}).")
    output = outputs[name]
    if output.error or not output.md5 or output.partial:
        raise OutputError(
            f"Output '{name}' of run {run.short} was not stored: "
            f"{output.error or ('it is partial' if output.partial else 'no data')}"
        )
    return output


def output_path(run: Run, name: str) -> Path:
    """Local path of output `name` of `run`: its output folder, filled from cache or remote."""
    output = _output(run, name)
    root = project.outputs_root(run.repo)
    dest = root / run.id / output.path
    if not present(dest, output):
        materialise(
            run.repo,
            output,
            dest,
            link=True,
            within=root,
            what=f"output '{name}' of run {run.short}",
            hint=f"move it away, or run 'gittrack checkout {run.short} --force' to replace it",
        )
    return dest


def present(dest: Path, output: Output) -> bool:
    """Whether `output`'s data is at `dest` (a file of its size, a folder of its files)."""
    try:
        if output.md5.endswith(".dir"):
            return dest.is_dir() and sum(1 for p in dest.rglob("*") if p.is_file()) == output.nfiles
        return dest.is_file() and dest.stat().st_size == output.size
    except OSError:
        return False


def materialise(
    repo: store.Repo,
    output: Output,
    dest: Path,
    *,
    link: bool,
    progress: Any = None,
    force: bool = False,
    within: Path | None = None,
    what: str = "",
    hint: str = "move it away, or pass --force to replace it",
) -> None:
    """Place an output's data at `dest`, fetching it from the remote when the cache lacks it.

    Nothing is written outside `within`, and what is already at `dest` is replaced only with
    `force` (see `Store.materialise`).
    """
    from ..store import datastore

    cache = datastore.Store(repo)
    if not cache.in_cache(output.md5):
        cache.fetch([output.md5])
    cache.materialise(
        output.md5,
        dest,
        link=link,
        progress=progress,
        force=force,
        within=within,
        what=what,
        hint=hint,
    )


def load_output(run: Run, name: str) -> Any:
    """Output `name` loaded back by kind: arrays, tables, bytes and lists; files as paths."""
    path = output_path(run, name)
    kind = run.record.outputs[name].kind
    if kind == "npy":
        import numpy as np

        return np.load(path, allow_pickle=False)
    if kind == "parquet":
        import pandas as pd

        return pd.read_parquet(path)
    if kind == "csv":
        import pandas as pd

        return pd.read_csv(path)
    if kind == "bytes":
        return path.read_bytes()
    if kind == "json":
        return json.loads(path.read_text())
    return path
