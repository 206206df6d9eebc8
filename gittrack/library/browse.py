"""The runs table of the web UI and `gittrack report`: pages, columns, plot data, experiments.

Everything here reads the lookup table; nothing writes. One run's page is `runview`, the flow
graph is `lineage`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .. import store
from ..index import census as census_sql
from ..index.compiler import compile_order, compile_where
from ..index.db import Index
from ..model.values import collapses

BASE_COLUMNS = ["id", "name", "status", "experiment", "started", "duration_s"]
SORTABLE = {"id", "name", "status", "command", "experiment", "started", "finished", "duration_s"}
FIELD = re.compile(r"^(params|metrics)\.([A-Za-z0-9_.\-]+)$")


@dataclass
class Page:
    """One page of the runs table: rows as JSON data, the columns to show and the totals."""

    rows: list[dict[str, Any]]
    total: int
    columns: list[str]
    all_columns: list[str]
    offset: int = 0
    limit: int = 50
    tip: str = ""
    problems: list[str] = field(default_factory=list)


def where_sql(where: str | None, probe: bool = False) -> tuple[str, list[Any]]:
    """The SQL condition of a query in the lookup language (empty when no query); `probe`
    for a page walked in the index's order (see `compile_where`)."""
    if not where or not where.strip():
        return "", []
    sql, params = compile_where(where, probe=probe)
    return sql, list(params)


def _json_path(column: str) -> str:
    family, _, key = column.partition(".")
    return f"$.{family}." + ".".join(f'"{k}"' for k in key.split("."))


def order_sql(sort: str, desc: bool) -> tuple[str, list[Any]]:
    """An ORDER BY clause for a column name, with its parameters; unknown columns sort by time."""
    if sort in SORTABLE or FIELD.match(sort):
        return compile_order(("-" if desc else "") + sort)
    return "runs.started DESC, runs.id", []


def tip(repo: store.Repo) -> str:
    """The runs branch tip: changes whenever a run is recorded (the UI polls it)."""
    found = store.tip(repo)
    return found[0] if found else ""


@dataclass
class Census:
    """What the matching runs hold, from the index's small tables (no record is parsed
    beyond one per column shape): how many, how many commands, and per params/metrics
    column (distinct values: 1 or 2 for "several", runs having it, list or run id)."""

    total: int
    commands: int
    stats: dict[str, tuple[int, int, bool]]


CENSUS_CACHE: dict[tuple[Any, ...], Census] = {}  # by index state and condition
CENSUS_CACHE_SIZE = 64


def cached_census(index: Index, cond: str, args: list[Any]) -> Census:
    """`census`, remembered until the index changes (a new run, tag or note): the same page
    loaded again, or refreshed live, does not count the runs again."""
    key = (str(index.repo.root), census_sql.state(index), cond, tuple(map(repr, args)))
    found = CENSUS_CACHE.get(key)
    if found is None:
        found = census(index, cond, args)
        if len(CENSUS_CACHE) >= CENSUS_CACHE_SIZE:
            CENSUS_CACHE.pop(next(iter(CENSUS_CACHE)))
        CENSUS_CACHE[key] = found
    return found


def census(index: Index, cond: str, args: list[Any]) -> Census:
    """The Census of the runs matching an SQL condition.

    One pass over the run fields groups the matches by column shape and command; which
    columns vary comes from the lowest and highest indexed value of each (an index lookup
    when nothing is filtered); which are lists or run ids from one record of each shape.
    """
    groups = census_sql.shape_groups(index, cond, args)
    total = sum(g[2] for g in groups)
    commands = len({g[1] for g in groups})
    per_shape: dict[int, int] = {}
    sample: dict[int, int] = {}
    for shape, _command, count, rid in groups:
        if shape is not None:
            per_shape[shape] = per_shape.get(shape, 0) + count
            sample.setdefault(shape, rid)
    present: dict[str, int] = {}
    first_in: dict[str, int] = {}
    for shape, keys in zip(per_shape, index.shape_keys(per_shape), strict=False):
        for key in keys:
            present[key] = present.get(key, 0) + per_shape[shape]
            first_in.setdefault(key, shape)
    records = census_sql.sample_records(index, list(sample.values()))
    kinds: dict[str, tuple[bool, bool]] = {}  # column -> (list or run id, list)
    for column in present:
        value = cell(records.get(sample[first_in[column]], {}), column)
        kinds[column] = (collapses(value), isinstance(value, list))
    # 1 when every matching run having the column has the same value in it, else 2: by the
    # lowest and highest text (a list is one row per element: lists compare whole, per run)
    several = [c for c, count in present.items() if count >= 2]
    ranges = census_sql.value_ranges(index, [(c, kinds[c][1]) for c in several], cond, args)
    distinct = {c: 1 if low == high else 2 for c, (low, high) in zip(several, ranges, strict=True)}
    stats = {c: (distinct.get(c, 1), count, kinds[c][0]) for c, count in present.items()}
    return Census(total, commands, stats)


def default_columns(
    stats: dict[str, tuple[int, int, bool]], total: int, commands: int
) -> list[str]:
    """The columns a table shows unless told: what varies, the sweep's params and metrics first.

    Scalar params, then metrics, then list and run-reference params (they collapse to a link),
    then where and when; `command` when the rows come from several commands (a field that
    does not vary among the runs having it shows on that command's own table).
    """
    varying = [  # across several commands, a field only some have is not news
        k
        for k, (distinct, present, _) in stats.items()
        if distinct > 1 or (present < total and commands == 1)
    ]
    chosen = varying if total > 1 and varying else list(stats)[:12]
    scalar = [c for c in chosen if c.startswith("params.") and not stats[c][2]]
    metrics = [c for c in chosen if c.startswith("metrics.")]
    lists = [c for c in chosen if c.startswith("params.") and stats[c][2]]
    head = ["id", "name", "status"] + (["command"] if commands > 1 else [])
    return [*head, *scalar, *metrics, *lists, "experiment", "started", "duration_s"]


def page(
    repo: store.Repo,
    where: str | None = None,
    *,
    sort: str = "started",
    desc: bool = True,
    offset: int = 0,
    limit: int = 50,
    columns: list[str] | None = None,
    group: bool = False,
    experiment: str | None = None,
) -> Page:
    """A page of the runs matching `where`, sorted, with the params and metrics that vary."""
    cond, args = census_sql.in_experiment(*where_sql(where), experiment)
    index = Index(repo)
    index.sync()
    found = cached_census(index, cond, args)
    total, stats = found.total, found.stats
    all_columns = [*BASE_COLUMNS, "command", "finished", *list(stats)]
    if columns:
        shown = [c for c in columns if c in all_columns]
    else:
        shown = default_columns(stats, total, found.commands)
    order, order_args = order_sql(sort, desc)
    if group:
        order = "runs.experiment = '', runs.experiment, " + order
    walk = None
    if where and sort == "started" and desc and not group:  # newest first: walk the runs
        walk = census_sql.in_experiment(*where_sql(where, probe=True), experiment)
    rows = []
    for row in index.select(
        cond, args, order, limit=limit, order_params=order_args, offset=offset, walk=walk
    ):
        data = row["record"] or {"id": row["id"], "status": "unreadable", "problem": row["problem"]}
        rows.append(data | {"commit": row["commit"]})
    if (
        offset == 0
        and not where
        and experiment is None
        and not group
        and sort == "started"
        and desc
    ):
        from ..store import staging
        from .runview import elapsed

        staged = [
            rec.to_json_dict() | {"status": state, "commit": "", "duration_s": elapsed(rec)}
            for rec, state in staging.stale_runs(repo)
        ]
        rows = staged + rows
        total += len(staged)
    return Page(rows, total, shown, all_columns, offset, limit, tip(repo))


def cell(row: dict[str, Any], column: str) -> Any:
    """The value of a column (`params.temp`, `status`, ...) in a row of JSON data."""
    if column.startswith(("params.", "metrics.")):
        family, _, key = column.partition(".")
        value: Any = row.get(family) or {}
        if key in value:
            return value[key]
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value
    return row.get(column)


# -- plots -----------------------------------------------------------------------------------


def plot_rows(
    repo: store.Repo,
    where: str | None,
    columns: list[str],
    limit: int = 5000,
    experiment: str | None = None,
) -> dict[str, list[Any]]:
    """Column-wise values of params/metrics for the matching runs (for parallel coordinates)."""
    cond, args = census_sql.in_experiment(*where_sql(where), experiment)
    fields = [c for c in columns if FIELD.match(c)]
    index = Index(repo)
    index.sync()
    out: dict[str, list[Any]] = {"id": [], "status": []} | {c: [] for c in fields}
    paths = [_json_path(c) for c in fields]
    for row in census_sql.plot_values(index, cond, args, paths, limit):
        out["id"].append(row[0])
        out["status"].append(row[1])
        for col, value in zip(fields, row[2:], strict=True):
            out[col].append(value)
    return out


def has_experiment(repo: store.Repo, name: str) -> bool:
    """True when some run belongs to experiment `name`."""
    index = Index(repo)
    index.sync()
    return census_sql.has_experiment(index, name)


def experiments(repo: store.Repo) -> list[dict[str, Any]]:
    """Experiments with their run counts by status and time span, newest first."""
    index = Index(repo)
    index.sync()
    keys = ("name", "runs", "completed", "failed", "first", "last")
    return [dict(zip(keys, r, strict=True)) for r in census_sql.experiments(index)]
