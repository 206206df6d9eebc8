"""One run's rows, everything but the ids the database hands out: the per-run work of a build.

`prepare` turns a run.toml into plain values (text, numbers, tuples) that a worker process can
send back in one `marshal` dump: the run_fields columns, the JSON text, the keys of its shape
and of its kv rows (as text, mapped to ids by the one process that writes), its tags,
memberships and lineage rows. A build on one core and one on several call the same function,
so both give the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from ..errors import RecordError
from ..model.record import too_large
from ..model.values import FAMILIES, flat
from . import records
from .records import effective, exact, iso, joined, memberships

# (run_fields columns but rid and shape, JSON text or None, shape keys, kv keys, kv numbers,
#  kv texts, tags, memberships, lineage edges, outputs by md5, memo key row or None)
Prepared = tuple[
    tuple[Any, ...],
    str | None,
    str,
    tuple[tuple[str, str], ...],
    tuple[float | None, ...],
    tuple[str, ...],
    list[str],
    list[str],
    list[tuple[str, str, str, str, str, str]],
    list[tuple[str, int, str, str, str]],
    tuple[str, str, str] | None,
]
# the columns of `Prepared[0]`, after rid and shape
FIELDS = (
    "id, name, status, command, experiment, started, finished, duration_s, commit_sha, problem, "
    "started_ts, finished_ts, tags, note, rerun_of, joined, exact, code_commit"
)


class Shapes:
    """Memo of the shape keys (and kv keys) of records alike, one a process: most records of a
    history share a few shapes, so each is computed, and sent, once a chunk."""

    def __init__(self) -> None:
        self.flat: dict[tuple[Any, ...], str] = {}
        self.kv: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}

    def keys(self, record: dict[str, Any]) -> str:
        """The JSON list of a record's flat params and metrics keys, in order."""
        params, metrics = record.get("params") or {}, record.get("metrics") or {}
        nested = any(type(v) is dict for v in (*params.values(), *metrics.values()))
        signature = (*params, None, *metrics)
        found = None if nested else self.flat.get(signature)
        if found is not None:
            return found
        found = json.dumps(
            [
                f"{family}.{k}"
                for family, table in (("params", params), ("metrics", metrics))
                for k in flat(table)
            ]
        )
        if not nested:
            self.flat[signature] = found  # flat tables: the keys alone give the shape
        return found

    def same(self, names: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        """One object for equal kv keys (marshal then writes them once a chunk)."""
        return self.kv.setdefault(names, names)


def prepare(
    run_id: str, commit: str, data: bytes | int | None, notes: list[Any] | None, shapes: Shapes
) -> Prepared:
    """The rows of one run (an unreadable record gives a row with its problem); `data` is the
    run.toml, None when missing, or its size when too large to be read."""
    problem = None
    try:
        if data is None:
            raise RecordError(run_id, "run.toml is missing")
        if isinstance(data, int):
            raise RecordError(run_id, too_large(data))
        record, text = records.decode(data, run_id)
    except RecordError as exc:
        record, text, problem = {}, None, exc.reason
    tag_list, note = effective(record, notes)
    member_of = memberships(record, notes)
    get = record.get
    started, finished = get("started"), get("finished")
    fields = (
        run_id,
        get("name", ""),
        get("status", "") if problem is None else "unreadable",
        get("command", ""),
        get("experiment", ""),
        iso(started),
        iso(finished),
        get("duration_s"),
        commit,
        problem,
        timestamp(started),
        timestamp(finished),
        json.dumps(tag_list) if tag_list else "[]",
        note,
        get("rerun_of") or "",
        joined(record, member_of),
        exact(record, tag_list, note, member_of),
        str((get("code") or {}).get("commit") or ""),
    )
    names: list[tuple[str, str]] = []
    nums: list[float | None] = []
    texts: list[str] = []
    for family in FAMILIES:
        table = get(family)
        if table:
            records.family_rows(family, table, names, nums, texts)
    edges: list[tuple[str, str, str, str, str, str]] = []
    outputs: list[tuple[str, int, str, str, str]] = []
    memo = None
    if text is not None:
        edges, outputs, memo = lineage(run_id, record)
    return (
        fields,
        text,
        shapes.keys(record),
        shapes.same(tuple(names)),
        tuple(nums),
        tuple(texts),
        tag_list,
        member_of,
        edges,
        outputs,
        memo,
    )


def lineage(
    run_id: str, record: dict[str, Any]
) -> tuple[
    list[tuple[str, str, str, str, str, str]],
    list[tuple[str, int, str, str, str]],
    tuple[str, str, str] | None,
]:
    """The lineage edges, outputs by md5 and memo key row of one readable record."""
    edges = [
        (
            run_id,
            item.get("run", ""),
            "input",
            item.get("output", ""),
            item.get("md5", ""),
            item.get("commit", ""),
        )
        for item in record.get("inputs") or []
    ]
    if record.get("parent"):
        edges.append((run_id, record["parent"], "parent", "", "", ""))
    if record.get("rerun_of"):
        edges.append((run_id, record["rerun_of"], "rerun", "", "", ""))
    started = record.get("started") or ""
    if not isinstance(started, str):
        started = started.isoformat()  # a TOML datetime, as its JSON text has it
    outputs = [
        (out["md5"], int(out.get("size") or 0), run_id, name, started)
        for name, out in (record.get("outputs") or {}).items()
        if out.get("md5")
    ]
    memo = None
    if record.get("memo") and record.get("status") == "completed":
        memo = (record["memo"], run_id, started)
    return edges, outputs, memo


def timestamp(value: Any) -> float | None:
    """Epoch seconds of a record's time (a TOML datetime or ISO 8601 text), None when absent."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.astimezone()).timestamp()
    from .dates import timestamp as from_text

    return from_text(value)
