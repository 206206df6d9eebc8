"""The Python reading API: `gittrack.runs(where=...)` returns the lookup table as a RunSet."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from .. import store
from .._ids import short
from ..errors import RecordError
from ..index.db import Index
from ..model.values import RUN_FIELDS, flat
from .run import Run, iter_runs, open_repo


class RunSet:
    """The runs matching a query, newest first: iterable of Run, len(), .get(id), .to_pandas()."""

    def __init__(self, repo: store.Repo, rows: list[dict[str, Any]]) -> None:
        self.repo = repo
        self._rows = rows
        self._runs: list[Run] | None = None

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self._rows]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Indexed rows: {"id", "record" (JSON data or None), "commit", "problem"}."""
        return self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Run]:
        if self._runs is None:
            commits = {r["id"]: r["commit"] for r in self._rows}
            self._runs = []
            for item in iter_runs(self.repo, self.ids):
                if isinstance(item, RecordError):
                    continue
                item._commit = commits.get(item.id, "")
                self._runs.append(item)
        from .consumers import active, consumed

        if active():  # runs read inside a tracked run are its inputs
            for run in self._runs:
                consumed(run.id, run.commit)
        return iter(self._runs)

    def get(self, ref: str) -> Run:
        """The run of this set that `ref` names: an id, a prefix, a name, or `latest`."""
        runs = list(self)
        if ref == "latest" and runs:
            return runs[0]  # newest first
        for run in runs:
            if run.id == ref or run.id.startswith(ref) or (run.name and run.name == ref):
                return run
        from ..errors import RunNotFound

        raise RunNotFound(ref)

    def __repr__(self) -> str:
        shown = ", ".join(short(r["id"]) for r in self._rows[:5])
        more = f", ... ({len(self)} runs)" if len(self) > 5 else ""
        return f"<RunSet of {len(self)} run{'s' * (len(self) != 1)}: {shown}{more}>"

    def _repr_html_(self) -> str:
        """The runs as a table in a notebook (the columns `gittrack ls` would show)."""
        from . import notebook

        return notebook.runset_html(self)

    def to_pandas(self) -> Any:
        """A DataFrame: id, name, status, command, experiment, times, params.*, metrics.*.

        Times are timezone-aware datetimes; ints, bools and strings keep their types through
        pandas' nullable dtypes even when some runs lack a value (no float64 for int params).
        """
        from .._extras import require

        require("RunSet.to_pandas()", "pandas", "pandas")
        import pandas as pd

        from .consumers import active, consumed

        if active():  # inside gittrack.track: the runs tabulated are its inputs
            for row in self._rows:
                if row["record"]:
                    consumed(row["id"], row["commit"])
        rows = [flatten(r["record"]) for r in self._rows if r["record"]]
        frame = pd.DataFrame(rows)
        if frame.empty:
            return frame
        for column in frame.columns:
            if column in ("started", "finished"):
                frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
            elif dtype := _nullable_dtype([row.get(column) for row in rows]):
                frame[column] = pd.array([row.get(column) for row in rows], dtype=dtype)
        return frame


def _nullable_dtype(values: list[Any]) -> str | None:
    """pandas' nullable dtype for a column whose values are all of one plain type (or None)."""
    kinds = {type(v) for v in values if v is not None}
    return (
        {bool: "boolean", int: "Int64", str: "string"}.get(kinds.pop()) if len(kinds) == 1 else None
    )


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One flat row of a record's JSON data: scalar fields, then params.X and metrics.X."""
    row: dict[str, Any] = {k: record.get(k) for k in RUN_FIELDS}
    row["tags"] = ",".join(record.get("tags", []))
    for family in ("params", "metrics"):
        for key, value in flat(record.get(family, {})).items():
            row[f"{family}.{key}"] = value
    return row


def runs(
    where: str | None = None,
    repo: str | os.PathLike[str] | None = None,
    *,
    sort: str | None = None,
    limit: int | None = None,
) -> RunSet:
    """The runs of a repository matching `where` (the query language of `gittrack ls`).

    `sort` orders them like `gittrack ls --sort` (e.g. "-metrics.energy"); newest first by default.
    """
    r = open_repo(repo)
    index = Index(r)
    sql, order = "", "runs.started_ts DESC, runs.id"
    params: list[Any] = []
    order_params: list[Any] = []
    walk = None
    if where or sort:
        from ..index.compiler import compile_order, compile_where

        if where:
            sql, params = compile_where(where)
            if limit is not None and not sort:  # newest first: try walking the runs in order
                walk = compile_where(where, probe=True)
        if sort:
            order, order_params = compile_order(sort)
    rows = index.select(sql, params, order, limit=limit, order_params=order_params, walk=walk)
    return RunSet(r, rows)
