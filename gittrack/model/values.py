"""Values as listed: flattening nested tables to dotted keys and short cell text."""

from __future__ import annotations

import re
from typing import Any

from .._ids import short

FAMILIES = ("params", "metrics", "env")
# the scalar fields of a record every listing knows, in their listed order
RUN_FIELDS = ("id", "name", "status", "command", "experiment", "started", "finished", "duration_s")
FAMILY_COLUMN = re.compile(r"^(params|metrics|env)\.(.+)$")
RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def is_run_id(value: Any) -> bool:
    """Whether `value` looks like a full run id (a RunRef param's recorded value)."""
    return isinstance(value, str) and bool(RUN_ID.match(value))


def collapses(value: Any) -> bool:
    """Whether a table shows `value` collapsed: a run id, or a list ("6 runs", "[3 items]")."""
    return is_run_id(value) or isinstance(value, list)


def collapsed_text(value: Any) -> str:
    """A run id as its short form, a list of run ids as "6 runs", other lists as "[3 items]"."""
    if is_run_id(value):
        return short(str(value))
    if isinstance(value, list):
        if value and all(is_run_id(v) for v in value):
            return f"{len(value)} run{'s' if len(value) != 1 else ''}"
        return f"[{len(value)} item{'s' if len(value) != 1 else ''}]"
    return str(value)


def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def cell(row: dict[str, Any], column: str) -> Any:
    """The value of `column` (`status`, `params.temp`, `metrics.val.loss`) in a row."""
    match = FAMILY_COLUMN.match(column)
    if match:
        data = row.get(match.group(1)) or {}
        if match.group(2) in data:
            return data[match.group(2)]
        return flat(data).get(match.group(2))
    return row.get(column)


def cell_text(value: Any, column: str = "", *, list_sep: str = ",") -> str:
    """A listed value as short text: ids shortened, times trimmed, floats to 6 digits."""
    if value is None:
        return ""
    if column == "id":
        return short(str(value))
    if column in ("started", "finished") and isinstance(value, str):
        return value[:19].replace("T", " ")
    if column == "duration_s" and isinstance(value, int | float):
        return f"{value:.1f}s"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        shown = f"{value:.6g}"
        return shown if any(c in shown for c in ".ena") else shown + ".0"  # 1e+06, nan, inf
    if isinstance(value, list):
        return list_sep.join(map(str, value))
    return str(value)


def visible(value: Any) -> str:
    """A value as text for the terminal, control characters shown: a string holding one (a
    carriage return, a newline, an escape) as its Python literal, `'x\\r\\ny'`, so that
    values differing only in them look different; anything else as `str()` gives it."""
    text = str(value)
    if isinstance(value, str) and any(c < " " or "\x7f" <= c <= "\x9f" for c in text):
        return repr(text)
    return text


def human_size(n: int) -> str:
    """A byte count in binary units: 512 B, 3.0 KiB, 1.2 MiB, 4.0 GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def csv_value(value: Any) -> Any:
    """A CSV cell: lists joined by commas, None empty, bools lower-case, the rest as is."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
