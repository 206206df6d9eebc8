"""From run.toml bytes to the rows of the lookup table: the record's JSON text and its values.

This is the per-run work of every index build, so it avoids what is not needed: a record of the
current schema is checked by the schema's rules but never turned into dataclasses, its JSON
text is written by orjson straight from the parsed TOML (datetimes included), and its values
are typed in one pass. Anything unusual (an older schema, NaN, a nested table) takes the general
path, which gives the same data.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import orjson

from ..errors import RecordError
from ..model.record import NESTED, SCHEMA, Code, RunRecord, json_data
from ..model.schema import RUN_ID, check_paths, check_types, shallow_toml
from ..model.values import FAMILIES, flat

try:  # the Rust TOML reader parses a record several times faster than tomllib
    import rtoml as _fast_toml
except ImportError:  # pragma: no cover - a platform without its wheel
    _fast_toml = None  # type: ignore[assignment]

NUMBER = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")
CODE_DEFAULTS = asdict(Code())
CODE_FILE_KEYS = frozenset(("blob", "dirty"))
DATES = (dt.date, dt.time)


def parse_toml(data: bytes, run_id: str, fast: bool = True) -> dict[str, Any]:
    """The tables of a run.toml; invalid TOML or UTF-8 is a RecordError (tomllib's wording).

    `fast` reads it with rtoml when installed: its datetimes carry rtoml's own time zones,
    which the record's dataclasses cannot copy, so only the plain path (`decode`) takes them.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(run_id, f"invalid TOML or not UTF-8 ({exc})") from exc
    if fast and _fast_toml is not None:
        try:
            return _fast_toml.loads(text)
        except Exception:  # its errors are worded by tomllib below
            pass
    import tomllib as toml_reader  # loaded for what rtoml rejects and the plain path only

    try:
        return toml_reader.loads(text)
    except toml_reader.TOMLDecodeError as exc:
        raise RecordError(run_id, f"invalid TOML or not UTF-8 ({exc})") from exc
    except RecursionError as exc:
        raise RecordError(run_id, NESTED) from exc


def _plain(raw: dict[str, Any], run_id: str, data: bytes = b"") -> bool:
    """True when `RunRecord.from_dict` accepts `raw` (parsed from `data`) as it is (current
    schema, every check passed): then the dataclasses need not be built to know the record is
    readable."""
    schema = raw.get("schema")
    record_id = raw.get("id")
    if type(schema) is not int or schema != SCHEMA or type(record_id) is not str:
        return False
    if not RUN_ID.fullmatch(record_id) or (RUN_ID.fullmatch(run_id) and record_id != run_id):
        return False
    if check_types(raw, shallow=bool(data) and shallow_toml(data)) or check_paths(raw):
        return False
    files = (raw.get("code") or {}).get("files") or {}
    return all(CODE_FILE_KEYS.issuperset(f) for f in files.values())


def decode(data: bytes, run_id: str) -> tuple[dict[str, Any], str]:
    """A run.toml checked by `RunRecord`: its one JSON form and that as JSON text.

    The form of a current-schema record keeps the TOML datetimes as datetimes (readers of the
    index get them as ISO 8601 text, from the JSON text); `iso()` reads either.
    """
    raw = parse_toml(data, run_id)
    if not _plain(raw, run_id, data):  # the general path: the dataclasses say what is wrong, if any
        raw = parse_toml(data, run_id, fast=False)
        form = RunRecord.from_dict(raw, run_id).to_json_dict()
        return form, _dumps(form)
    form = dict(raw)
    form["code"] = CODE_DEFAULTS | (raw.get("code") or {})
    for key in ("metrics", "env", "param_sources"):
        form.setdefault(key, {})
    form.setdefault("argv", [])
    params = raw.get("params") or {}
    sources = form["param_sources"]
    if any(name not in params for name in sources):
        params = dict(params)
        for name in sources:
            params.setdefault(name, None)
    form["params"] = params
    form.setdefault("started", None)
    form.setdefault("finished", None)
    if b"nan" in data or b"inf" in data:  # orjson would write a NaN or an infinity as null
        return form, _dumps(json_data(raw))
    try:
        return form, orjson.dumps(form).decode()
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits, deep nesting
        return form, _dumps(json_data(raw))


def _dumps(form: dict[str, Any]) -> str:
    """JSON text as orjson writes it (no spaces), with NaN and infinities as Python's json."""
    return json.dumps(form, ensure_ascii=False, separators=(",", ":"), default=_iso_or_str)


def _iso_or_str(value: Any) -> str:
    return value.isoformat() if isinstance(value, DATES) else str(value)


def json_record(data: bytes | str, run_id: str) -> tuple[dict[str, Any], str]:
    """A run.toml checked by `RunRecord`: its one JSON form (`json_data`) and that as text."""
    _, text = decode(data.encode() if isinstance(data, str) else data, run_id)
    return json.loads(text), text


def iso(value: Any) -> Any:
    """A TOML date or time as ISO 8601 text, anything else as it is."""
    return value.isoformat() if isinstance(value, DATES) else value


def num_text(value: Any) -> tuple[float | None, str]:
    """A value as the index stores it: a number when it reads as one, and its text."""
    if isinstance(value, bool):
        return (1.0 if value else 0.0), ("true" if value else "false")
    if isinstance(value, int):
        return float(value), str(value)
    if isinstance(value, float):
        return (None if math.isnan(value) else value), repr(value)
    text = value.isoformat() if isinstance(value, DATES) else str(value)
    if NUMBER.fullmatch(text):
        return float(text), text
    return None, text


def kv_rows(record: dict[str, Any]) -> Iterator[tuple[str, str, float | None, str]]:
    """(family, key, number or None, text) for each value of params, metrics and env.

    Nested tables become dotted keys; a list gives one row per element (a query matches when
    any element does); numbers, bools (1/0) and strings that read as numbers get a number.
    """
    for family in FAMILIES:
        for name, value in flat(record.get(family) or {}).items():
            for item in value if isinstance(value, list) else [value]:
                if item is None or isinstance(item, dict | list):
                    continue
                yield (family, name, *num_text(item))


def family_values(table: dict[str, Any]) -> Iterator[tuple[str, float | None, str]]:
    """(key, number or None, text) of one family's table, as `kv_rows` gives them."""
    names: list[tuple[str, str]] = []
    nums: list[float | None] = []
    texts: list[str] = []
    family_rows("", table, names, nums, texts)
    return zip([n for _, n in names], nums, texts, strict=True)


def family_rows(
    family: str,
    table: dict[str, Any],
    names: list[tuple[str, str]],
    nums: list[float | None],
    texts: list[str],
) -> None:
    """Append (family, key), number or None and text of each value of one family's table to
    the three lists, as `kv_rows` gives them (faster for the flat tables of most records)."""
    if any(type(v) is dict for v in table.values()):
        table = flat(table)
    for name, value in table.items():
        kind = type(value)
        if kind is float:
            names.append((family, name))
            nums.append(None if value != value else value)
            texts.append(repr(value))
        elif kind is str:
            names.append((family, name))
            nums.append(float(value) if NUMBER.fullmatch(value) else None)
            texts.append(value)
        elif kind is int:
            names.append((family, name))
            nums.append(float(value))
            texts.append(str(value))
        elif kind is list:
            for item in value:
                if item is not None and not isinstance(item, dict | list):
                    num, text = num_text(item)
                    names.append((family, name))
                    nums.append(num)
                    texts.append(text)
        elif value is not None and kind is not dict:
            num, text = num_text(value)
            names.append((family, name))
            nums.append(num)
            texts.append(text)


# -- what git notes change -------------------------------------------------------------


def effective(record: dict[str, Any], notes: list[Any] | None) -> tuple[list[str], str]:
    """A run's current tags and note: its record's, changed by its git notes."""
    if not notes:  # the common case, without importing notes.py
        return list(record.get("tags") or []), record.get("note") or ""
    from ..model.notes import effective as with_notes

    return with_notes(record.get("tags") or [], record.get("note") or "", notes)


def memberships(record: dict[str, Any], notes: list[Any] | None) -> list[str]:
    """Every experiment a run is a member of: its record's and those its notes add."""
    if not notes:
        return [record["experiment"]] if record.get("experiment") else []
    from ..model.notes import memberships as with_notes

    return with_notes(record.get("experiment") or "", notes)


def joined(record: dict[str, Any], member_of: list[str]) -> str:
    """The memberships as JSON when notes add some beyond the record's, else ""."""
    own = [record["experiment"]] if record.get("experiment") else []
    return json.dumps(member_of) if member_of != own else ""


def exact(record: dict[str, Any], tags: list[str], note: str, member_of: list[str]) -> int:
    """1 when the record's JSON text already is what readers get, bar the commit: its own
    tags and note are the current ones and no git note adds an experiment."""
    own = [record["experiment"]] if record.get("experiment") else []
    return int(
        "tags" in record
        and record["tags"] == tags
        and (record.get("note") or "") == note
        and (bool(note) or "note" not in record)
        and member_of == own
        and "commit" not in record
    )
