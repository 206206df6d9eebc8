"""Folded experiments summed up in the index, so that a graph of 100,000 runs needs no records.

What a folded node says (how many runs, their statuses, each swept param's range) and which
params vary per command are counted in SQL over the index's record JSON (`index.flow`), and
only the few values of non-numeric params come back to Python. The result is the same as
computing them from the records (`ranges()`, `_varying()` in `__init__`), which the tests check.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...index.flow import Flow


@dataclass
class Values:
    """The distinct values of one param within a scope: all numbers (`low`..`high`, `count`
    of them) or else each value by its identity key (`values`)."""

    count: int
    low: Any = None
    high: Any = None
    values: dict[Any, Any] | None = field(default=None)


def param_values(
    flow: Flow, key: Callable[[Any], Any]
) -> tuple[dict[str, dict[str, Values]], set[str]]:
    """Per scope of `flow` (a name for some runs), per param: its distinct values.

    `key` is the identity of a value (1, 1.0 and True differ). Returns the summaries and the
    scopes SQLite cannot read (a record holding NaN is not valid JSON to it): those the caller
    sums up from the records.
    """
    rows, unreadable = flow.param_rows()
    numbers: dict[tuple[str, str], list[tuple[int, Any, Any]]] = {}
    others: dict[tuple[str, str], dict[Any, Any]] = {}
    for scope, name, kind, raw, count, low, high in rows:
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
            for kind, raw in flow.distinct_values(scope, name):
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
