"""The Python reading API: `gittrack.runs(where=...)` returns the lookup table as a RunSet."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from .. import store
from ..errors import RecordError
from ..index.db import Index
from ..model.values import flat
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
        return iter(self._runs)

    def get(self, ref: str) -> Run:
        for run in self:
            if run.id == ref or run.id.startswith(ref) or (run.name and run.name == ref):
                return run
        from ..errors import RunNotFound

        raise RunNotFound(ref)

    def to_pandas(self) -> Any:
        """A DataFrame: id, name, status, command, experiment, times, params.*, metrics.*."""
        from .._extras import require

        require("RunSet.to_pandas()", "pandas", "pandas")
        import pandas as pd

        return pd.DataFrame([flatten(r["record"]) for r in self._rows if r["record"]])


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One flat row of a record's JSON data: scalar fields, then params.X and metrics.X."""
    row: dict[str, Any] = {
        k: record.get(k)
        for k in (
            "id",
            "name",
            "status",
            "command",
            "experiment",
            "started",
            "finished",
            "duration_s",
        )
    }
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
    if where or sort:
        from ..index.query import compile_order, compile_where

        if where:
            sql, params = compile_where(where)
        if sort:
            order, order_params = compile_order(sort)
    return RunSet(r, index.select(sql, params, order, limit=limit, order_params=order_params))
