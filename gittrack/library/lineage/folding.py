"""Folded experiments summed up in the index, so that a graph of 100,000 runs needs no records.

What a folded node says (how many runs, their statuses, each swept param's range) and which
params vary per command are counted in SQL over the index's record JSON (`json_each`), and only
the few values of non-numeric params come back to Python. The result is the same as computing
them from the records (`ranges()`, `_varying()` in `__init__`), which the tests check.
"""

from __future__ import annotations

import functools
import json
import operator
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ...index.db import Index
from ...index.edges import ready


class Facts(NamedTuple):
    """What folding needs of one run, read from the index's columns rather than its record."""

    id: str
    status: str
    command: str
    experiment: str
    joined: str  # JSON list of every experiment it is a member of, when reused by others

    @property
    def experiments(self) -> list[str]:
        return list(json.loads(self.joined)) if self.joined else []


def run_facts(index: Index, ids: Iterable[str]) -> dict[str, Facts]:
    """{id: Facts} of the indexed runs among `ids` that have a record (as `records()` keeps).

    A run whose record could not be read has its `problem` set and no record.
    """
    db = ready(index)
    rows = db.execute(
        "SELECT f.id, coalesce(f.status, ''), coalesce(f.command, ''), "
        "coalesce(f.experiment, ''), coalesce(f.joined, '') "
        "FROM json_each(?) AS i JOIN run_fields AS f ON f.id = i.value WHERE f.problem IS NULL",
        (json.dumps(sorted(ids)),),  # in index order: a third of the time of any other
    )
    found = list(map(functools.partial(tuple.__new__, Facts), rows))  # no Python call a row
    return dict(zip(map(operator.itemgetter(0), found), found, strict=True))


@dataclass
class Values:
    """The distinct values of one param within a scope: all numbers (`low`..`high`, `count`
    of them) or else each value by its identity key (`values`)."""

    count: int
    low: Any = None
    high: Any = None
    values: dict[Any, Any] | None = field(default=None)


_NUMBER = "j.type IN ('integer', 'real')"
_SCOPES = (
    "json_each(?) AS s, json_each(s.value) AS i JOIN run_fields AS f ON f.id = i.value "
    "JOIN records AS x ON x.rid = f.rid"
)
# one row per scope, param and type for numbers, per distinct value for anything else
_SUMMARY = (
    f"SELECT s.key, j.key, j.type, iif({_NUMBER}, NULL, j.value), "
    f"count(DISTINCT iif({_NUMBER}, j.value, NULL)), min(iif({_NUMBER}, j.value, NULL)), "
    f"max(iif({_NUMBER}, j.value, NULL)) FROM {_SCOPES}, {{params}} GROUP BY 1, 2, 3, 4"
)
_PARAMS = "json_each(x.record, '$.params') AS j"
_CHECKED = "json_each(iif(json_valid(x.record), x.record, '{}'), '$.params') AS j"
_UNREADABLE = f"SELECT DISTINCT s.key FROM {_SCOPES} WHERE NOT json_valid(x.record)"
_DISTINCT = f"SELECT DISTINCT j.type, j.value FROM {_SCOPES}, {_CHECKED} WHERE j.key = ?"


def param_values(
    index: Index, scopes: Mapping[str, Iterable[str]], key: Any
) -> tuple[dict[str, dict[str, Values]], set[str]]:
    """Per scope (a name for some run ids), per param: its distinct values, counted in SQL.

    `key` is the identity of a value (1, 1.0 and True differ). Returns the summaries and the
    scopes SQLite cannot read (a record holding NaN is not valid JSON to it): those the caller
    sums up from the records.
    """
    db = ready(index)
    lists = {scope: sorted(ids) for scope, ids in scopes.items()}
    arg = json.dumps(lists)
    unreadable: set[str] = set()
    try:
        rows = db.execute(_SUMMARY.format(params=_PARAMS), (arg,)).fetchall()
    except sqlite3.OperationalError:  # malformed JSON: read around the records SQLite cannot
        unreadable = {row[0] for row in db.execute(_UNREADABLE, (arg,))}
        rows = db.execute(_SUMMARY.format(params=_CHECKED), (arg,)).fetchall()
    numbers: dict[tuple[str, str], list[tuple[int, Any, Any]]] = {}
    others: dict[tuple[str, str], dict[Any, Any]] = {}
    for scope, name, kind, raw, count, low, high in rows:
        if scope in unreadable:
            continue
        if kind in ("integer", "real"):
            numbers.setdefault((scope, name), []).append((count, low, high))
        else:
            value = _python(kind, raw)
            others.setdefault((scope, name), {}).setdefault(key(value), value)
    found: dict[str, dict[str, Values]] = {}
    for (scope, name), parts in numbers.items():
        if (scope, name) not in others:  # numbers only
            lows = [p[1] for p in parts]
            highs = [p[2] for p in parts]
            found.setdefault(scope, {})[name] = Values(
                sum(p[0] for p in parts), min(lows), max(highs)
            )
    for (scope, name), values in others.items():
        if (scope, name) in numbers:  # numbers and other values: each number too
            one = json.dumps({scope: lists[scope]})
            for kind, raw in db.execute(_DISTINCT, (one, name)):
                value = _python(kind, raw)
                values.setdefault(key(value), value)
        found.setdefault(scope, {})[name] = Values(len(values), values=values)
    return found, unreadable


def _python(kind: str, raw: Any) -> Any:
    """A `json_each` value as the record's JSON gives it in Python."""
    if kind in ("true", "false"):
        return kind == "true"
    if kind in ("object", "array"):
        return json.loads(raw)
    return raw
