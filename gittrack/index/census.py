"""What the runs table of the UI asks of the lookup table: the census of the matching runs
(shapes, commands, distinct values), the values to plot and the experiments.

The library (library/browse.py) decides what to show; the SQL on the index's tables lives here.
Every condition is SQL compiled by compiler.py (never a user's text) with its parameters.
"""

from __future__ import annotations

import json
from typing import Any

from .db import Index


def state(index: Index) -> tuple[tuple[str, str], ...]:
    """The tips the table was synced to: changes with every new run, tag or note."""
    return tuple(index.db.execute("SELECT key, value FROM meta WHERE key IN ('tip', 'notes')"))


def in_experiment(cond: str, args: list[Any], experiment: str | None) -> tuple[str, list[Any]]:
    """An SQL condition narrowed to the members of an experiment (its runs, those it reused)."""
    if experiment is None:
        return cond, args
    member = "runs.rid IN (SELECT run FROM members WHERE experiment = ?)"
    return (f"{member} AND ({cond})" if cond else member), [experiment, *args]


def shape_groups(index: Index, cond: str, args: list[Any]) -> list[tuple[Any, ...]]:
    """(shape, command, runs, highest rid) of the runs matching `cond`, one row per shape
    and command, in the order they first appear (oldest first)."""
    sql = (
        "SELECT runs.shape, runs.command, count(*), max(runs.rid) FROM run_fields AS runs"
        + (f" WHERE {cond}" if cond else "")
        + " GROUP BY runs.shape, runs.command ORDER BY min(runs.started), min(runs.rid)"
    )
    return index.db.execute(sql, args).fetchall()


def sample_records(index: Index, rids: list[int]) -> dict[int, dict[str, Any]]:
    """{rid: record as JSON data} of a few runs ({} for a record that is not JSON)."""
    marks = ",".join("?" * len(rids))
    sql = f"SELECT rid, record FROM records WHERE rid IN ({marks})"
    found = {}
    for rid, text in index.db.execute(sql, rids) if rids else []:
        try:
            found[rid] = json.loads(text) if text else {}
        except ValueError:
            found[rid] = {}
    return found


RANGES_A_STATEMENT = 100  # columns one statement asks (SQLite joins at most 500 SELECTs)


def value_ranges(
    index: Index, columns: list[tuple[str, bool]], cond: str, args: list[Any]
) -> list[tuple[Any, Any]]:
    """The lowest and highest indexed text of each (column, lists) among the runs matching
    `cond`, in order; a list column compares each run's values whole, joined.

    One statement a hundred columns: the matching runs are found once for all of them (a
    column's values are in the kv_text index, so without `cond` each is two look-ups).
    """
    found: list[tuple[Any, Any]] = []
    for start in range(0, len(columns), RANGES_A_STATEMENT):
        part = columns[start : start + RANGES_A_STATEMENT]
        params: list[Any] = list(args) if cond else []
        selects = []
        for n, (column, lists) in enumerate(part):
            family, _, key = column.partition(".")
            where = "keys.family = ? AND keys.key = ?" + (" AND kv.run IN matched" if cond else "")
            params += [family, key]
            join = "FROM kv JOIN keys ON keys.key_id = kv.key_id"
            if lists:
                selects.append(
                    f"SELECT {n}, * FROM (SELECT min(v), max(v) FROM (SELECT group_concat(kv.text,"
                    f" char(31)) AS v {join} WHERE {where} GROUP BY kv.run))"
                )
            else:
                selects.append(
                    f"SELECT {n}, * FROM (SELECT min(kv.text), max(kv.text) {join} WHERE {where})"
                )
        sql = " UNION ALL ".join(selects)
        if cond:
            sql = (
                "WITH matched AS MATERIALIZED (SELECT runs.rid FROM run_fields AS runs"
                f" WHERE {cond}) {sql}"
            )
        found += [(low, high) for _, low, high in sorted(index.db.execute(sql, params))]
    return found


def plot_values(
    index: Index, cond: str, args: list[Any], paths: list[str], limit: int
) -> list[tuple[Any, ...]]:
    """(id, status, the value at each JSON path) of the newest `limit` runs matching `cond`
    that have a record."""
    select = ", ".join(["runs.id", "runs.status"] + ["json_extract(runs.record, ?)"] * len(paths))
    sql = f"SELECT {select} FROM runs WHERE runs.record IS NOT NULL" + (
        f" AND ({cond})" if cond else ""
    )
    sql += " ORDER BY runs.started DESC LIMIT ?"
    return index.db.execute(sql, [*paths, *args, limit]).fetchall()


def has_experiment(index: Index, name: str) -> bool:
    """True when some run is a member of experiment `name`."""
    sql = "SELECT 1 FROM members WHERE experiment = ? LIMIT 1"
    return index.db.execute(sql, (name,)).fetchone() is not None


def experiments(index: Index) -> list[tuple[Any, ...]]:
    """(name, runs, completed, failed, first started, last started) of each experiment,
    counting its members (runs recorded in it and earlier runs it reused), newest first."""
    sql = (
        "SELECT m.experiment, count(*), sum(r.status = 'completed'), sum(r.status = 'failed'), "
        "min(r.started), max(r.started) FROM members AS m JOIN run_fields AS r ON r.rid = m.run "
        "GROUP BY m.experiment ORDER BY max(r.started) DESC"
    )
    return index.db.execute(sql).fetchall()
