"""Read-side views of the runs for the web UI and `gittrack report`: pages, details, graphs.

Everything here reads (the lookup table, the runs branch, local output folders); nothing writes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import store
from .._ids import short
from ..errors import GittrackError, RunNotFound, UsageError
from ..index.db import Index
from ..model.record import RunRecord, run_folder

BASE_COLUMNS = ["id", "name", "status", "experiment", "started", "duration_s"]
SORTABLE = {"id", "name", "status", "command", "experiment", "started", "finished", "duration_s"}
FIELD = re.compile(r"^(params|metrics)\.([A-Za-z0-9_.\-]+)$")
LOG_LIMIT = 200_000  # characters of a captured log shown in a page
DOWNLOAD_LIMIT = 50 * 1024 * 1024  # outputs up to this size can be downloaded from the UI


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


def where_sql(where: str | None) -> tuple[str, list[Any]]:
    """The SQL condition of a query in the lookup language (empty when no query)."""
    if not where or not where.strip():
        return "", []
    try:
        from ..index.query import compile_where
    except ImportError as exc:
        raise UsageError(
            "This gittrack has no query language yet (gittrack/query.py is missing); "
            "clear the filter or upgrade gittrack."
        ) from exc
    sql, params = compile_where(where)
    return sql, list(params)


def _json_path(column: str) -> str:
    family, _, key = column.partition(".")
    return (
        f'$.{family}."{key}"'
        if "." not in key
        else "$." + family + "." + ".".join(f'"{k}"' for k in key.split("."))
    )


def order_sql(sort: str, desc: bool) -> tuple[str, list[Any]]:
    """An ORDER BY clause for a column name, with its parameters; unknown columns sort by time."""
    way = "DESC" if desc else "ASC"
    compile_order = _query_function("compile_order")
    if compile_order is not None and (sort in SORTABLE or FIELD.match(sort)):
        return compile_order(("-" if desc else "") + sort)  # type: ignore[no-any-return]
    if sort in SORTABLE:
        return f"runs.{sort} {way}, runs.id", []
    if FIELD.match(sort):
        return (
            f"json_extract(runs.record, ?) IS NULL, json_extract(runs.record, ?) {way}, runs.id",
            [_json_path(sort)] * 2,
        )
    return "runs.started DESC, runs.id", []


def _query_function(name: str) -> Any:
    try:
        from ..index import query
    except ImportError:
        return None
    return getattr(query, name, None)


def _select(
    index: Index,
    cond: str,
    args: list[Any],
    order: str,
    order_args: list[Any],
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    """A page of index rows ({id, record, commit, problem}) through Index.select when it pages."""
    import inspect

    if "offset" in inspect.signature(index.select).parameters:
        return index.select(cond, args, order, limit=limit, order_params=order_args, offset=offset)
    sql = "SELECT id, record, commit_sha, problem FROM runs" + (f" WHERE {cond}" if cond else "")
    sql += f" ORDER BY {order} LIMIT ? OFFSET ?"
    return [
        {"id": r[0], "record": json.loads(r[1]) if r[1] else None, "commit": r[2], "problem": r[3]}
        for r in index.db.execute(sql, [*args, *order_args, limit, offset])
    ]


def tip(repo: store.Repo) -> str:
    """The runs branch tip: changes whenever a run is recorded (the UI polls it)."""
    found = store.tip(repo)
    return found[0] if found else ""


def field_stats(index: Index, cond: str, args: list[Any]) -> dict[str, tuple[int, int]]:
    """{params.X / metrics.X: (distinct values, runs having it)} among the matching runs."""
    stats: dict[str, tuple[int, int]] = {}
    for family in ("params", "metrics"):
        sql = (
            f"SELECT j.key, count(DISTINCT j.value), count(*) FROM runs, "
            f"json_each(runs.record, '$.{family}') AS j"
            + (f" WHERE {cond}" if cond else "")
            + " GROUP BY j.key ORDER BY min(j.id)"
        )
        for key, distinct, present in index.db.execute(sql, args):
            stats[f"{family}.{key}"] = (distinct, present)
    return stats


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
    cond, args = where_sql(where)
    if experiment is not None:
        member = "runs.rid IN (SELECT run FROM members WHERE experiment = ?)"
        cond = f"{member} AND ({cond})" if cond else member
        args = [experiment, *args]
    index = Index(repo)
    index.sync()
    total = int(
        index.db.execute(
            "SELECT count(*) FROM runs" + (f" WHERE {cond}" if cond else ""), args
        ).fetchone()[0]
    )
    stats = field_stats(index, cond, args)
    all_columns = [*BASE_COLUMNS, "command", "finished", *list(stats)]
    if columns:
        shown = [c for c in columns if c in all_columns]
    else:
        varying = [k for k, (distinct, present) in stats.items() if distinct > 1 or present < total]
        shown = BASE_COLUMNS + (varying if total > 1 and varying else list(stats)[:12])
    order, order_args = order_sql(sort, desc)
    if group:
        order = "runs.experiment = '', runs.experiment, " + order
    rows = []
    for row in _select(index, cond, args, order, order_args, limit, offset):
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

        staged = [
            rec.to_json_dict() | {"status": state, "commit": ""}
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


# -- one run ---------------------------------------------------------------------------------


@dataclass
class RunView:
    """What a run page shows: the record (or why it is unreadable) and what surrounds it."""

    id: str
    data: dict[str, Any] | None
    commit: str = ""
    problem: str = ""
    raw: str = ""
    logs: dict[str, str] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    downstream: list[dict[str, Any]] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)


def resolve(repo: store.Repo, ref: str) -> str:
    """The full id of a run reference (id, prefix, name, `latest`); RunNotFound otherwise."""
    from .run import resolve_id

    if not ref or len(ref) > 200:
        raise RunNotFound(ref[:40])
    return resolve_id(repo, ref)


def run_view(repo: store.Repo, ref: str) -> RunView:
    """The run page's content for a reference; unreadable records come back with `problem`."""
    run_id = resolve(repo, ref)
    index = Index(repo)
    row = index.get(run_id)
    if row is None:
        raise RunNotFound(ref)
    view = RunView(run_id, row["record"], row["commit"] or "", row["problem"] or "")
    if view.data is None:
        raw = store.read_record_bytes(repo, run_id)
        view.raw = raw.decode("utf-8", "replace") if raw is not None else ""
        return view
    for name in ("stdout.log", "stderr.log"):
        blob = store.read_file(repo, f"{run_folder(run_id)}/{name}")
        if blob:
            text = blob.decode("utf-8", "replace")
            view.logs[name] = (
                text if len(text) <= LOG_LIMIT else text[:LOG_LIMIT] + "\n[... truncated]"
            )
    summaries = run_summaries(index, [i["run"] for i in view.data.get("inputs", [])])
    for item in view.data.get("inputs", []):
        view.inputs.append(item | {"info": summaries.get(item["run"])})
    view.downstream = _related(
        index,
        "SELECT DISTINCT r.id, r.name, r.status, r.command FROM runs r, json_each(r.record, '$.inputs') i WHERE json_extract(i.value, '$.run') = ? ORDER BY r.started",
        run_id,
    )
    view.children = _related(
        index,
        "SELECT id, name, status, command FROM runs WHERE json_extract(record, '$.parent') = ? ORDER BY started",
        run_id,
    )
    return view


def _related(index: Index, sql: str, run_id: str) -> list[dict[str, Any]]:
    return [
        dict(zip(("id", "name", "status", "command"), r, strict=True))
        for r in index.db.execute(sql, (run_id,))
    ]


def run_summaries(index: Index, ids: list[str]) -> dict[str, dict[str, Any]]:
    """{id: {id, name, status, command}} for runs present in the index."""
    found: dict[str, dict[str, Any]] = {}
    for run_id in dict.fromkeys(ids):
        row = index.db.execute(
            "SELECT id, name, status, command FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row:
            found[run_id] = dict(zip(("id", "name", "status", "command"), row, strict=True))
    return found


def code_diff(repo: store.Repo, old: str, new: str, limit: int = 400_000) -> str:
    """The `git diff` between two code commits (empty when the code is the same)."""
    if not (re.fullmatch(r"[0-9a-f]{4,64}", old) and re.fullmatch(r"[0-9a-f]{4,64}", new)):
        raise UsageError(
            "A code commit must be a hexadecimal commit id; pick runs that recorded their code."
        )
    proc = repo.git("diff", "--no-color", "--no-ext-diff", old, new, "--", check=False)
    if proc.returncode != 0:
        raise UsageError(
            f"The code commits {short(old)} and {short(new)} are not both in this repository; run 'gittrack pull' first."
        )
    text = proc.stdout.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "\n[... truncated]"


# -- outputs and time series -----------------------------------------------------------------


def output_file(repo: store.Repo, run_id: str, name: str) -> Path | None:
    """The local file of output `name`, restored from the DVC cache or remote when needed."""
    record = _record(repo, run_id)
    output = record.outputs.get(name)
    if output is None or output.kind == "dir" or output.md5.endswith(".dir") or output.error:
        return None
    if output.partial or not output.md5:  # incomplete data is never served
        return None
    base = (repo.root / ".gittrack" / "outputs" / run_id).resolve()
    local = (base / output.path).resolve()
    if not local.is_relative_to(base):
        return None
    if local.is_file() and local.stat().st_size == output.size:
        return local
    try:
        from .run import Run

        path = Run(run_id, repo, record=record).path(name)
    except (ImportError, GittrackError, OSError):
        return None
    return path if path.is_file() else None


def _record(repo: store.Repo, run_id: str) -> RunRecord:
    data = store.read_record_bytes(repo, run_id)
    if data is None:
        raise RunNotFound(run_id)
    return RunRecord.from_toml(data, run_id)


def timeseries_output(data: dict[str, Any]) -> str | None:
    """The name of a run's time-series output (`metrics.csv`, written by gittrack.log)."""
    for name, output in (data.get("outputs") or {}).items():
        if name in ("metrics.csv", "metrics") or str(output.get("path", "")).endswith(
            "metrics.csv"
        ):
            return str(name)
    return None


def timeseries(repo: store.Repo, run_id: str, data: dict[str, Any]) -> dict[str, list[Any]]:
    """{column: values} of a run's metrics.csv ("step" first when present); {} when absent."""
    name = timeseries_output(data)
    path = output_file(repo, run_id, name) if name else None
    if path is None:
        return {}
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(io.StringIO(handle.read(5_000_000)))
            series: dict[str, list[Any]] = {k: [] for k in reader.fieldnames or []}
            for line in reader:
                for key in series:
                    series[key].append(_number(line.get(key)))
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    return series


def _number(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


# -- plots -----------------------------------------------------------------------------------


def plot_rows(
    repo: store.Repo, where: str | None, columns: list[str], limit: int = 5000
) -> dict[str, list[Any]]:
    """Column-wise values of params/metrics for the matching runs (for parallel coordinates)."""
    cond, args = where_sql(where)
    fields = [c for c in columns if FIELD.match(c)]
    index = Index(repo)
    index.sync()
    select = ", ".join(["runs.id", "runs.status"] + ["json_extract(runs.record, ?)"] * len(fields))
    sql = f"SELECT {select} FROM runs WHERE runs.record IS NOT NULL" + (
        f" AND ({cond})" if cond else ""
    )
    sql += " ORDER BY runs.started DESC LIMIT ?"
    out: dict[str, list[Any]] = {"id": [], "status": []} | {c: [] for c in fields}
    for row in index.db.execute(sql, [*(_json_path(c) for c in fields), *args, limit]):
        out["id"].append(row[0])
        out["status"].append(row[1])
        for col, value in zip(fields, row[2:], strict=True):
            out[col].append(value)
    return out


def experiments(repo: store.Repo) -> list[dict[str, Any]]:
    """Experiments with their run counts by status and time span, newest first."""
    index = Index(repo)
    index.sync()
    sql = (  # members: runs recorded in the experiment and earlier runs it reused
        "SELECT m.experiment, count(*), sum(r.status = 'completed'), sum(r.status = 'failed'), "
        "min(r.started), max(r.started) FROM members AS m JOIN run_fields AS r ON r.rid = m.run "
        "GROUP BY m.experiment ORDER BY max(r.started) DESC"
    )
    keys = ("name", "runs", "completed", "failed", "first", "last")
    return [dict(zip(keys, r, strict=True)) for r in index.db.execute(sql)]


# -- flow graph ------------------------------------------------------------------------------


@dataclass
class Graph:
    """Runs as nodes and input edges (upstream run -> consumer, labelled by output names)."""

    nodes: dict[str, dict[str, Any]]
    edges: list[tuple[str, str, str]]
    focus: str


def graph(
    repo: store.Repo,
    run_id: str,
    *,
    upstream: bool = True,
    downstream: bool = False,
    depth: int | None = None,
    limit: int = 2000,
) -> Graph:
    """The flow around a run: its ancestry and/or descendants, `depth` steps at most."""
    index = Index(repo)
    index.sync()
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[str, str], set[str]] = {}

    def node(rid: str) -> dict[str, Any] | None:
        if rid not in nodes:
            row = index.db.execute(
                "SELECT record, status FROM runs WHERE id = ?", (rid,)
            ).fetchone()
            data = (
                json.loads(row[0])
                if row and row[0]
                else {"id": rid, "status": row[1] if row else "missing"}
            )
            nodes[rid] = data
        return nodes[rid]

    node(run_id)
    frontier, seen, level = [run_id], {run_id}, 0
    while frontier and (depth is None or level < depth) and len(nodes) < limit:
        level += 1
        nxt: list[str] = []
        for rid in frontier:
            links: list[tuple[str, str, str]] = []
            if upstream:
                for item in nodes[rid].get("inputs", []) or []:
                    links.append((item["run"], rid, item.get("output", "")))
                if nodes[rid].get("parent"):
                    links.append((nodes[rid]["parent"], rid, "launched"))
            if downstream:
                sql = "SELECT r.id, json_extract(i.value, '$.output') FROM runs r, json_each(r.record, '$.inputs') i WHERE json_extract(i.value, '$.run') = ?"
                links += [(rid, d, out or "") for d, out in index.db.execute(sql, (rid,))]
                sql = "SELECT id FROM runs WHERE json_extract(record, '$.parent') = ?"
                links += [(rid, d, "launched") for (d,) in index.db.execute(sql, (rid,))]
            for src, dst, label in links:
                edges.setdefault((src, dst), set()).add(label)
                other = src if dst == rid else dst
                node(other)
                if other not in seen:
                    seen.add(other)
                    nxt.append(other)
        frontier = nxt
    edge_list = [
        (s, d, ", ".join(sorted(x for x in labels if x)))
        for (s, d), labels in sorted(edges.items())
    ]
    return Graph(nodes, edge_list, run_id)


STATUS_FILL = {
    "completed": "#dcfce7",
    "failed": "#fee2e2",
    "died": "#f3e8ff",
    "interrupted": "#fef9c3",
    "running": "#e0f2fe",
    "unreadable": "#fee2e2",
    "missing": "#f1f5f9",
}


def to_dot(g: Graph, url: str = "/runs/{id}") -> str:
    """The graph in Graphviz's language: run nodes coloured by status, experiments as clusters."""

    def q(text: Any) -> str:
        return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'

    lines = [
        "digraph flow {",
        '  graph [rankdir=LR, bgcolor="transparent", fontname="Helvetica", nodesep=0.3, ranksep=0.6];',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, color="#94a3b8"];',
        '  edge [color="#64748b", fontname="Helvetica", fontsize=9, fontcolor="#475569"];',
    ]
    clusters: dict[str, list[str]] = {}
    for rid, data in sorted(g.nodes.items()):
        clusters.setdefault(data.get("experiment") or "", []).append(rid)
    for number, (experiment, ids) in enumerate(sorted(clusters.items())):
        indent = "  "
        if experiment:
            lines.append(
                f'  subgraph cluster_{number} {{ label={q("experiment " + experiment)}; style=dashed; color="#cbd5e1"; fontcolor="#475569";'
            )
            indent = "    "
        for rid in ids:
            data = g.nodes[rid]
            status = data.get("status", "")
            title = data.get("name") or data.get("command") or ""
            params = ", ".join(f"{k}={v}" for k, v in list((data.get("params") or {}).items())[:3])
            label = "\\n".join(
                x for x in (short(rid) + (f"  {title}" if title else ""), params, status) if x
            )
            label = label.replace('"', "'")
            width = ', penwidth=2.5, color="#2563eb"' if rid == g.focus else ""
            lines.append(
                f'{indent}{q(rid)} [label="{label}", fillcolor="{STATUS_FILL.get(status, "#f8fafc")}", '
                f'URL={q(url.format(id=rid))}, target="_top", tooltip={q(rid + " " + status)}, id={q("node-" + rid)}{width}];'
            )
        if experiment:
            lines.append("  }")
    for src, dst, label in g.edges:
        lines.append(f"  {q(src)} -> {q(dst)} [label={q(label)}];")
    lines.append("}")
    return "\n".join(lines)


def flow_svg(
    repo: store.Repo,
    run_id: str,
    *,
    direction: str = "up",
    depth: int | None = None,
    collapse: bool = False,
) -> tuple[str, int]:
    """The flow graph around a run as inline SVG and its number of runs.

    Drawn by gittrack.lineage when it is installed (the same graph as `gittrack lineage`),
    otherwise from the records here.
    """
    try:
        from . import lineage
    except ImportError:
        lineage = None  # type: ignore[assignment]
    if lineage is not None and hasattr(lineage, "build") and hasattr(lineage, "render"):
        graphs = [
            lineage.build(repo, run_id, downstream=d, depth=depth, collapse=collapse)
            for d in {"up": [False], "down": [True], "both": [False, True]}[direction]
        ]
        g = graphs[0]
        for other in graphs[1:]:
            g.nodes.update(other.nodes)
            seen = {(e.source, e.target, e.kind) for e in g.edges}
            g.edges += [e for e in other.edges if (e.source, e.target, e.kind) not in seen]
        count = sum(1 for n in g.nodes.values() if n.kind in ("run", "missing", "experiment"))
        try:
            svg = lineage.render(g, "svg").decode("utf-8", "replace")
        except GittrackError as exc:
            raise UsageError(str(exc)) from exc
        return _inline(svg), count
    fallback = graph(
        repo,
        run_id,
        upstream=direction in ("up", "both"),
        downstream=direction in ("down", "both"),
        depth=depth,
    )
    return render_svg(fallback), len(fallback.nodes)


def _inline(svg: str) -> str:
    """An SVG document made fit to sit inside HTML (no XML prolog, plain href links)."""
    return (
        svg[svg.find("<svg") :]
        .replace(" xlink:href=", " href=")
        .replace(" xlink:title=", " title=")
    )


def render_svg(g: Graph, url: str = "/runs/{id}") -> str:
    """The graph as an SVG document through Graphviz's `dot` (installed with the system)."""
    import shutil
    import subprocess

    if shutil.which("dot") is None:
        raise UsageError(
            "Graphviz is not installed; install it (e.g. 'apt install graphviz') to draw flow graphs."
        )
    proc = subprocess.run(
        ["dot", "-Tsvg"], input=to_dot(g, url).encode(), capture_output=True, timeout=120
    )
    if proc.returncode != 0:
        raise UsageError(
            f"Graphviz failed to draw the graph ({proc.stderr.decode(errors='replace').strip()[:200]})."
        )
    return _inline(proc.stdout.decode("utf-8", "replace"))


def full_graph(repo: store.Repo, where: str | None = None, limit: int = 500) -> Graph:
    """The flow among the matching runs (newest `limit`): runs linked by inputs or launches."""
    cond, args = where_sql(where)
    index = Index(repo)
    index.sync()
    sql = (
        "SELECT runs.id, runs.record, runs.status FROM runs"
        + (f" WHERE {cond}" if cond else "")
        + " ORDER BY runs.started DESC LIMIT ?"
    )
    nodes = {
        r[0]: (json.loads(r[1]) if r[1] else {"id": r[0], "status": r[2]})
        for r in index.db.execute(sql, [*args, limit])
    }
    edges: dict[tuple[str, str], set[str]] = {}
    for rid, data in nodes.items():
        for item in data.get("inputs", []) or []:
            if item["run"] in nodes:
                edges.setdefault((item["run"], rid), set()).add(item.get("output", ""))
        if data.get("parent") in nodes:
            edges.setdefault((data["parent"], rid), set()).add("launched")
    edge_list = [
        (s, d, ", ".join(sorted(x for x in labels if x)))
        for (s, d), labels in sorted(edges.items())
    ]
    linked = {s for s, _, _ in edge_list} | {d for _, d, _ in edge_list}
    return Graph({k: v for k, v in nodes.items() if k in linked}, edge_list, "")
