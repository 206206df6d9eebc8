"""What `gittrack ls` shows: indexed runs plus the runs staged locally (running or died)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import store
from .._ids import short
from ..errors import UsageError
from ..index.db import Index
from ..model.record import RunRecord
from ..model.values import FAMILIES, FAMILY_COLUMN, RUN_FIELDS, cell, collapses, csv_value, flat
from ..store import staging

DEFAULT_ORDER = "runs.started_ts DESC, runs.id"  # newest first

BASE_COLUMNS = ["id", "name", "status", "started", "duration_s"]
PLAIN_COLUMNS = (*RUN_FIELDS, "tags", "note", "commit")


@dataclass
class Listing:
    """Rows of runs as JSON-ready dicts, newest first, and how many runs exist in all."""

    rows: list[dict[str, Any]]
    total: int  # runs in the repository
    problems: list[str] = field(default_factory=list)
    more: bool = False  # --limit left out further matching runs
    columns: list[str] = field(default_factory=list)  # what the table shows


def list_runs(
    repo: store.Repo,
    where: str | None = None,
    limit: int | None = None,
    *,
    sort: str | None = None,
    columns: str | list[str] | None = None,
    varying: bool = True,
) -> Listing:
    """The runs matching `where`, sorted (`-metrics.energy,params.temp`), locally staged first.

    `columns` picks what to show (`id,params.temp,metrics.*`); by default the run fields, then
    the params and metrics that vary among the listed runs (all of them when `varying` is off).
    """
    from ..index.compiler import compile_order

    index = Index(repo)
    sql, params, walk = _where(where, limit, sort)
    order, order_params = compile_order(sort) if sort and sort.strip() else (DEFAULT_ORDER, [])
    # one row beyond the limit tells whether more match, without counting them all
    rows = index.select(
        sql,
        params,
        order,
        limit=None if limit is None else limit + 1,
        order_params=order_params,
        walk=walk,
    )
    more = limit is not None and len(rows) > limit
    rows = rows[:limit]
    problems = [
        f"run {short(r['id'])} is unreadable ({r['problem']}); skipped"
        for r in rows
        if r["problem"]
    ]
    records = [r["record"] | {"commit": r["commit"]} for r in rows if r["record"]]
    staged = _staged(repo, sql, params, order, order_params)
    records = staged + records
    if limit is not None:
        more = more or len(records) > limit
        records = records[:limit]
    total = index.count() + len(staged)
    if total == 0 and not where:
        problems += _unpulled_hint(repo)
    shown = pick_columns(records, columns, varying)
    problems += unknown_keys(index, where, sort, shown if columns else None)
    return Listing(records, total, problems, more, shown)


def _staged(
    repo: store.Repo, sql: str, params: list[Any], order: str, order_params: list[Any]
) -> list[dict[str, Any]]:
    """The runs staged locally (running, or died and not committed) that the query matches, in
    its order: they come before the recorded runs."""
    found = staging.stale_runs(repo)
    if found and (sql or order_params or order != DEFAULT_ORDER):
        from ..index.staged import matching

        kept = matching([rec for rec, _ in found], sql, params, order, order_params)
        found = [found[i] for i in kept]
    return [rec.to_json_dict() | {"status": state, "commit": ""} for rec, state in found]


def _where(
    where: str | None, limit: int | None, sort: str | None
) -> tuple[str, list[Any], tuple[str, list[Any]] | None]:
    """The SQL of `where` and its parameters, and with a limit in the index's order (no sort)
    the same condition as a look-up of each run walked (`Index.ordered`'s `walk`)."""
    if not where or not where.strip():
        return "", [], None
    from ..index.compiler import compile_where

    sql, params = compile_where(where)
    walks = limit is not None and not (sort and sort.strip())
    return sql, params, compile_where(where, probe=True) if walks else None


def _unpulled_hint(repo: store.Repo) -> list[str]:
    """A hint when this clone has no runs but a remote's runs branch was fetched."""
    proc = repo.git(
        "for-each-ref", "--format=%(refname:short)", "refs/remotes/*/gittrack/runs", check=False
    )
    remotes = proc.stdout.decode().split()
    if not remotes:
        return []
    name = remotes[0].partition("/")[0]
    return [f"this clone has no runs yet, but {remotes[0]} has: 'gittrack pull {name}' brings them"]


def find_staged(repo: store.Repo, ref: str) -> tuple[RunRecord, str] | None:
    """The staged run (running, or died and not committed) that `ref` names, with its state.

    An exact id wins; otherwise a unique id prefix (4+ characters, any case) or name.
    """
    ref = ref.strip()
    found = staging.stale_runs(repo)
    exact = [(rec, state) for rec, state in found if rec.id == ref]
    if len(exact) == 1:
        return exact[0]
    prefix = ref.lower() if len(ref) >= 4 else None
    hits = [
        (rec, state)
        for rec, state in found
        if rec.name == ref or (prefix is not None and rec.id.startswith(prefix))
    ]
    return hits[0] if len(hits) == 1 else None


def staged_run(repo: store.Repo, ref: str) -> dict[str, Any] | None:
    """The JSON form of the staged run `ref` names (`find_staged`), for `show`.

    Such a run is not on the branch yet, so no RunRef can name it (no cycles).
    """
    found = find_staged(repo, ref)
    return None if found is None else found[0].to_json_dict() | {"commit": ""}


def query_hints(repo: store.Repo, where: str | None, sort: str | None = None) -> list[str]:
    """Hints for a query and sort whose params/metrics/env names no run has (for the UI)."""
    return unknown_keys(Index(repo), where, sort, None)


def unknown_keys(
    index: Index, where: str | None, sort: str | None, columns: list[str] | None
) -> list[str]:
    """One hint per params/metrics/env name that no run has (a typo matches nothing silently)."""
    from ..index.query import family_keys

    names = family_keys(where, sort, columns)
    if not names:
        return []
    known = {f"{family}.{key}" for family in FAMILIES for key in index.keys(family)}
    hints = []
    for name in names:
        if name in known:
            continue
        import difflib  # only for a name no run has

        family, _, key = name.partition(".")
        same_family = [k.partition(".")[2] for k in known if k.startswith(family + ".")]
        close = difflib.get_close_matches(key, same_family, n=1)
        hint = f" (did you mean {family}.{close[0]}?)" if close else ""
        hints.append(f"no run has {name}{hint}")
    return hints


def pick_columns(
    rows: list[dict[str, Any]], spec: str | list[str] | None, varying: bool = True
) -> list[str]:
    """The columns to show: those asked for (`params.*` expands), or the informative ones."""
    if spec:
        asked = [
            c.strip() for c in (spec.split(",") if isinstance(spec, str) else spec) if c.strip()
        ]
        out: list[str] = []
        for column in asked:
            if column.endswith(".*") and column[:-2] in FAMILIES:
                out += [c for c in family_columns(rows, column[:-2]) if c not in out]
            elif column in PLAIN_COLUMNS or FAMILY_COLUMN.match(column):
                out.append(column)
            else:
                raise UsageError(
                    f"Unknown column '{column}'; use {', '.join(PLAIN_COLUMNS)}, params.X, "
                    "metrics.X or env.X (params.* for all params)."
                )
        return out
    if not varying:  # CSV and JSON (for analysis) keep a stable set
        cols = list(BASE_COLUMNS)
        for family in ("params", "metrics"):
            cols += family_columns(rows, family)
        return [*cols, "tags"]
    # a table leaves out what says nothing here and puts what tells runs apart first: the
    # command when several are listed, the swept params and the metrics, then run-id and list
    # params (shown collapsed) and the times; a narrow terminal hides from the right
    cols = ["id"] + (["name"] if any(r.get("name") for r in rows) else [])
    if len({r.get("command") for r in rows}) > 1:
        cols.append("command")
    cols.append("status")
    # a column is informative when it varies among the runs of a command that has it
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get("command"), []).append(row)
    informative = [
        c
        for family in ("params", "metrics")
        for c in family_columns(rows, family)
        if any(_informative(g, c) for g in groups.values())
    ]
    collapsed = [c for c in informative if any(collapses(cell(r, c)) for r in rows)]
    cols += [c for c in informative if c not in collapsed] + collapsed
    cols += ["started", "duration_s"]
    if any(r.get("tags") for r in rows):
        cols.append("tags")
    return cols


def family_columns(rows: list[dict[str, Any]], family: str) -> list[str]:
    """`family.key` for every (flattened) key seen in the rows, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in flat(row.get(family) or {}):
            seen[f"{family}.{key}"] = None
    return list(seen)


def _informative(rows: list[dict[str, Any]], column: str) -> bool:
    """Whether these runs (of one command) have `column` and it varies, or there is one run."""
    have = [r for r in rows if cell(r, column) is not None]
    return bool(have) and (len(rows) < 2 or len(have) < len(rows) or _varies(have, column))


def _varies(rows: list[dict[str, Any]], column: str) -> bool:
    first = cell(rows[0], column)
    return any(cell(r, column) != first for r in rows[1:])


@dataclass
class RunStream:
    """A listing for JSON and CSV, read as it is written: records are not held in memory.

    `texts()` gives each row as JSON text (the index's text written through) and `cells()`
    the values of `columns`; runs staged locally come first. `problems` fills while reading.
    """

    index: Index
    staged: list[dict[str, Any]]
    rids: list[int]
    columns: list[str]
    problems: list[str] = field(default_factory=list)

    def texts(self) -> Iterator[str]:
        import json

        for record in self.staged:
            yield json.dumps(record, ensure_ascii=False, default=str)
        for run_id, text, problem in self.index.json_texts(self.rids):
            self._note(run_id, problem)
            if text:
                yield text

    def cells(self, *, as_csv: bool = False) -> Iterator[Sequence[Any]]:
        """The values of `columns` of each row; `as_csv`: as CSV cells (`csv_value`)."""
        for record in self.staged:
            values = [cell(record, c) for c in self.columns]
            yield [csv_value(v) for v in values] if as_csv else values
        for run_id, found, problem in self.index.cells(self.rids, self.columns, as_csv=as_csv):
            self._note(run_id, problem)
            if found is not None:
                yield found

    def csv_chunks(self, rows: int = 1000) -> Iterator[str]:
        """The listing as CSV text: the header, then `rows` rows at a time, as they are read
        (for a pipe or an HTTP response); lists are joined by commas, None is empty."""
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        pending: list[Sequence[Any]] = []
        for values in self.cells(as_csv=True):
            pending.append(values)
            if len(pending) >= rows:
                writer.writerows(pending)
                pending.clear()
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        writer.writerows(pending)
        yield buf.getvalue()

    def _note(self, run_id: str, problem: str | None) -> None:
        if problem:
            self.problems.append(f"run {short(run_id)} is unreadable ({problem}); skipped")


def stream_runs(
    repo: store.Repo,
    where: str | None = None,
    limit: int | None = None,
    *,
    sort: str | None = None,
    columns: str | list[str] | None = None,
) -> RunStream:
    """`list_runs` for JSON and CSV at any size: every column (`varying` off), rows streamed.

    Only the row ids are read up front; the columns come from the distinct key shapes of the
    listed runs (a few rows of the index), not from the records.
    """
    from ..index.compiler import compile_order

    index = Index(repo)
    sql, params, walk = _where(where, limit, sort)
    order, order_params = compile_order(sort) if sort and sort.strip() else (DEFAULT_ORDER, [])
    staged = _staged(repo, sql, params, order, order_params)
    if limit is not None:
        staged = staged[:limit]
    rest = None if limit is None else limit - len(staged)
    found = (
        index.ordered(sql, params, order, limit=rest, order_params=order_params, walk=walk)
        if (rest is None or rest > 0)
        else []
    )
    shapes = [_keys_of(r) for r in staged] + index.shape_keys(s for _, s in found)
    shown = _stream_columns(shapes, columns)
    problems: list[str] = []
    if not found and not staged and not where and index.count() == 0:
        problems += _unpulled_hint(repo)
    problems += unknown_keys(index, where, sort, shown if columns else None)
    return RunStream(index, staged, [rid for rid, _ in found], shown, problems)


def _keys_of(record: dict[str, Any]) -> list[str]:
    return [f"{f}.{k}" for f in ("params", "metrics") for k in flat(record.get(f) or {})]


def _stream_columns(shapes: list[list[str]], spec: str | list[str] | None) -> list[str]:
    """`pick_columns` (varying off) from the key shapes of the rows instead of the rows."""
    rows = [
        {f: {k.partition(".")[2]: None for k in keys if k.startswith(f + ".")} for f in FAMILIES}
        for keys in shapes
    ]
    return pick_columns(rows, spec, varying=False)
