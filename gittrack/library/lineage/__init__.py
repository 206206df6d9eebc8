"""The flow graph of runs, one implementation for `gittrack lineage`, the web UI and the report.

`around()` (and `build()`, its CLI form) walks a run's upstream and/or downstream edges;
`among()` takes the flow among given runs (the report). Both return a `Graph` of plain data
(what the UI's JSON carries); past `FOLD_AT` runs each experiment folds into one node that says
what it holds. `to_dot()` turns a graph into Graphviz source, `render()` into SVG/PNG/PDF and
`inline_svg()` into SVG fit to sit in HTML. Only `dot` works without a system Graphviz. The
output is deterministic: the same history gives the same bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..._ids import short
from ...errors import GraphvizMissing as GraphvizMissing, UsageError
from ...index import edges as edge_tables
from ...index.db import Index
from ...index.flow import Flow, json_list
from . import folding
from .draw import inline_svg as inline_svg, render as render, to_dot as to_dot
from .graph import (
    DIRECTIONS,
    FOLD_AT,
    FORMATS as FORMATS,
    MAX_PARAMS_SHOWN,
    STATUS_FILL as STATUS_FILL,
    WALK_KINDS,
    Edge as Edge,
    EdgeRow,
    Graph as Graph,
    Node as Node,
    unique_sorted,
)

if TYPE_CHECKING:
    from ... import store

# an edge row as drawn: (the row it stands for, source, target, kind, output, md5)
Drawn = tuple[EdgeRow, str, str, str, str, str]


def walk(
    index: Index, root: str, downstream: bool = False, depth: int | None = None
) -> tuple[set[str], list[tuple[str, str, str, str, str]]]:
    """Run ids reachable from `root` (upstream, or downstream) and the edges between them."""
    flow = Flow(index)
    flow.walk(root, downstream, depth, WALK_KINDS)
    return flow.ids(), flow.rows()


def build(
    repo: store.Repo,
    ref: str,
    *,
    downstream: bool = False,
    depth: int | None = None,
    collapse: bool | None = None,
    code: bool = False,
) -> Graph:
    """The lineage graph of run `ref`: its upstream flow, or with `downstream` what used it.

    `collapse` folds experiments into one node each; None folds past FOLD_AT runs.
    """
    direction = "down" if downstream else "up"
    return around(repo, ref, direction=direction, depth=depth, collapse=collapse, code=code)


def around(
    repo: store.Repo,
    ref: str,
    *,
    direction: str = "up",
    depth: int | None = None,
    collapse: bool | None = None,
    code: bool = False,
    keep: Iterable[str] = (),
) -> Graph:
    """The flow around run `ref` (up, down or both), experiments in `keep` never folded."""
    from ..resolve import resolve_id

    if depth is not None and depth < 0:
        raise UsageError(f"--depth must be 0 or more, not {depth}.")
    if direction not in DIRECTIONS:
        raise UsageError(f"Unknown direction '{direction}'; choose one of: up, down, both.")
    root = resolve_id(repo, ref)
    index = Index(repo)
    flow = Flow(index)
    for down in {"up": [False], "down": [True], "both": [False, True]}[direction]:
        flow.walk(root, down, depth, WALK_KINDS)
    return _graph(index, Graph(root, downstream=direction == "down"), flow, collapse, keep, code)


def among(
    repo: store.Repo, ids: Iterable[str], *, collapse: bool | None = None, anchors: bool = False
) -> Graph:
    """The flow among the given runs (those linked to another of them), as the report draws it.

    With `anchors`, nodes link to `#run-<id>` rows of the same page instead of UI addresses.
    """
    index = Index(repo)
    wanted = set(ids)
    rows = [
        r
        for r in edge_tables.edges_of(index, wanted, kinds=WALK_KINDS)
        if r[1] in wanted and r[0] != r[1]
    ]
    flow = Flow(index)
    flow.add({r[0] for r in rows} | {r[1] for r in rows}, rows)
    graph = _graph(index, Graph(""), flow, collapse)
    if anchors:  # runs (a folded experiment: its first run) link to their rows; outputs not
        for node in graph.nodes.values():
            node.url = (
                f"#run-{min(node.info.get('runs') or [node.run])}"
                if node.kind in ("run", "missing", "experiment")
                else ""
            )
    return graph


def _graph(
    index: Index,
    graph: Graph,
    flow: Flow,
    collapse: bool | None,
    keep: Iterable[str] = (),
    code: bool = False,
) -> Graph:
    """The graph of the runs and edges `flow` holds, experiments folded as `collapse` says.

    Folded runs' records are never read: what their node says is counted in the index.
    """
    runs = flow.read_runs()
    _place(flow)
    if collapse is None:
        collapse = runs > FOLD_AT
    tally = flow.tally(graph.root) if collapse else []
    sizes: Counter[str] = Counter()
    for name, _, _, count in tally:
        sizes[name] += count
    kept = {"", *keep}
    names = sorted(n for n, size in sizes.items() if size > 1 and n not in kept)
    if names and not code:
        return _folded(index, graph, flow, flow.fold(graph.root, names), tally)
    ids, rows = flow.ids(), flow.rows()
    records = edge_tables.records(index, ids)
    graph = _assemble(graph, ids, rows, records, flow.placed())
    if code:
        _add_code(graph, ids, records)
    return fold(graph, records, collapse, keep)


def _assemble(
    graph: Graph,
    ids: set[str],
    rows: list[tuple[str, str, str, str, str]],
    records: dict[str, dict[str, Any]],
    placed: dict[str, str],
) -> Graph:
    """Run nodes, output nodes on data edges, launch and rerun edges."""
    shown = _varying(records)
    for run_id in sorted(ids):
        graph.nodes[run_id] = _run_node(run_id, records.get(run_id), shown)
        if run_id in placed:
            graph.nodes[run_id].experiment = placed[run_id]
    graph.edges = _edges(
        graph, ((r, r[1], r[0], r[2], r[3], r[4]) for r in rows if r[0] in ids and r[1] in ids)
    )
    return graph


def _edges(graph: Graph, rows: Iterable[Drawn], folded: Iterable[str] = ()) -> list[Edge]:
    """The edges of `rows`, from a `folded` experiment's node or a run; adds the output nodes
    that data edges pass through, each named by its first row in the order of the records'."""
    firsts: dict[tuple[str, str, str, str], tuple[EdgeRow, str]] = {}
    for order, source, target, kind, output, md5 in rows:  # one edge, many rows: the first
        key = (source, target, kind, output)
        first = firsts.get(key)
        if first is None or order < first[0]:
            firsts[key] = (order, md5)
    experiments = set(folded)
    edges: list[Edge] = []
    data_edges: set[tuple[str, str, str]] = set()
    for (source, target, kind, output), (_, md5) in sorted(
        firsts.items(), key=lambda item: item[1][0]
    ):
        if kind == "parent":
            edges.append(Edge(source, target, "launch", "launched"))
        elif kind == "rerun":
            edges.append(Edge(source, target, "rerun", "rerun"))
        elif output:
            out_id = f"out:{source}:{output}"
            if out_id not in graph.nodes:
                if source in experiments:
                    exp = graph.nodes[source]
                    graph.nodes[out_id] = Node(out_id, "output", output, run=source, url=exp.url)
                else:
                    graph.nodes[out_id] = Node(
                        out_id,
                        "output",
                        output,
                        run=source,
                        url=f"/runs/{source}",
                        info={"md5": md5, "output": output},
                    )
            data_edges.add((source, out_id, "data"))
            data_edges.add((out_id, target, "data"))
        else:
            data_edges.add((source, target, "input"))
    return unique_sorted([*edges, *(Edge(s, t, k) for s, t, k in data_edges)])


def _place(flow: Flow) -> None:
    """Draw each run in its experiment; a run member of several (reused by them) in the one
    with the most members in the graph, its own record's winning a tie."""
    options = {rid: (own, json_list(joined)) for rid, own, joined in flow.joined()}
    if not options:
        return
    counts = Counter(flow.placed_counts())
    for own, names in options.values():
        counts[own] -= 1
        counts.update(names)
    placed = {}
    for rid, (own, names) in options.items():
        if len(names) > 1 or (names and not own):
            placed[rid] = max(names, key=lambda n: (counts.get(n, 0), n == own))
    flow.place(placed)


def _folded(
    index: Index,
    graph: Graph,
    flow: Flow,
    members: dict[str, list[str]],
    tally: list[tuple[str, str, str, int]],
) -> Graph:
    """The graph with `members` folded, one node an experiment, built without reading the
    folded runs' records; `tally` counts the runs by experiment, status and command."""
    unfolded = flow.unfolded()
    records = edge_tables.records(index, unfolded)
    statuses: dict[str, Counter[str]] = {}
    folded_commands = set()
    for name, status, command, count in tally:
        if name in members:
            statuses.setdefault(name, Counter())[status] += count
            folded_commands.add(command)
    shared = {r.get("command", "") for r in records.values()} & folded_commands
    flow.scope_commands(shared)  # which params vary counts the folded runs of a command too
    summaries, unreadable = folding.param_values(flow, _key)
    for scope in unreadable:  # SQLite cannot read them (NaN): the records tell
        summaries[scope] = _summarise(edge_tables.records(index, flow.scope_ids(scope)).values())
    counts = Counter(flow.command_counts())
    by_command = {c: summaries.get(f"cmd:{c}", {}) for c in shared}
    for command, found in _by_command(records).items():
        if command not in shared:
            by_command[command] = _summarise(found)
    shown = _shown(by_command, counts)
    for name in sorted(members):
        exp_id = f"exp:{name}"
        graph.nodes[exp_id] = _experiment_node(
            exp_id, name, members[name], statuses[name], _ranges(summaries.get(exp_id, {}))
        )
    placed = flow.placed(unfolded=True)
    for run_id in unfolded:
        graph.nodes[run_id] = _run_node(run_id, records.get(run_id), shown)
        if run_id in placed:
            graph.nodes[run_id].experiment = placed[run_id]
    graph.edges = _edges(graph, _folded_rows(flow, members), (f"exp:{n}" for n in members))
    return graph


def _folded_rows(flow: Flow, members: dict[str, list[str]]) -> set[Drawn]:
    """The edges with folded runs renamed to their experiment's node, counted by experiment
    rather than by run: a row of an unfolded parent as it is, one of a folded parent a row for
    each experiment and child."""
    rename: dict[str, str] = {}
    for name, runs in members.items():
        rename.update(dict.fromkeys(runs, f"exp:{name}"))
    rows: set[Drawn] = set()
    for child, kind, output, parents, md5s in flow.grouped_rows():
        target = rename.get(child, child)
        sources = set(map(rename.get, parents))
        for source in sources - {None}:
            rows.add(
                ((child, str(source), kind, output, ""), str(source), target, kind, output, "")
            )
        if None in sources:
            rows.update(
                ((child, p, kind, output, m), p, target, kind, output, m)
                for p, m in zip(parents, md5s, strict=True)
                if p not in rename
            )
    return rows


def _add_code(graph: Graph, ids: set[str], records: dict[str, dict[str, Any]]) -> None:
    for run_id in sorted(ids):
        commit = (records.get(run_id) or {}).get("code", {}).get("commit", "")
        if commit:
            node_id = f"code:{commit}"
            script = records[run_id]["code"].get("script", "")
            graph.nodes.setdefault(
                node_id,
                Node(
                    node_id,
                    "code",
                    f"code {commit[:10]}\n{script}".strip(),
                    info={"commit": commit},
                ),
            )
            graph.edges.append(Edge(node_id, run_id, "code"))
    graph.edges = unique_sorted(graph.edges)


def _key(value: Any) -> Any:
    """A hashable key telling values apart (1, 1.0 and True differ), cheap for scalars."""
    if value is None or isinstance(value, str | int | float | bool):
        return (type(value).__name__, value)
    return json.dumps(value, sort_keys=True, default=str)


def _summarise(records: Iterable[dict[str, Any]]) -> dict[str, folding.Values]:
    """Per param, its distinct values among the records (what `folding.param_values` counts)."""
    values: dict[str, dict[Any, Any]] = {}
    for record in records:
        for key, value in (record.get("params") or {}).items():
            values.setdefault(key, {}).setdefault(_key(value), value)
    return {k: folding.Values(len(v), values=v) for k, v in values.items()}


def _by_command(records: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for record in records.values():
        found.setdefault(record.get("command", ""), []).append(record)
    return found


def _shown(
    by_command: dict[str, dict[str, folding.Values]], counts: Counter[str]
) -> dict[str, list[str]]:
    """Per command, the params whose values differ (all of them for a command run once)."""
    return {
        command: sorted(k for k, v in per.items() if v.count > 1 or counts[command] == 1)
        for command, per in by_command.items()
    }


def _varying(records: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Per command, the params whose values differ among the runs in the graph."""
    counts = Counter(r.get("command", "") for r in records.values())
    by_command = {c: _summarise(found) for c, found in _by_command(records).items()}
    return _shown(by_command, counts)


def _fmt(value: Any) -> str:
    if isinstance(value, list) and len(value) > 1 and all(_is_id(v) for v in value):
        return f"{len(value)} runs"
    if isinstance(value, list):
        return ",".join(short(str(v)) for v in value[:3]) + (
            f",…(+{len(value) - 3})" if len(value) > 3 else ""
        )
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return short(text) if _is_id(text) else text[:24]


def _is_id(value: Any) -> bool:
    """True for a run id (32 hexadecimal digits): a RunRef param's value."""
    return (
        isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)
    )


def _engine_line(record: dict[str, Any]) -> str:
    """A program run's engine for its node: the package version, else the version it printed."""
    programs = record.get("programs")
    if not record.get("exec") or not isinstance(programs, list) or not programs:
        return ""
    first = programs[0] if isinstance(programs[0], dict) else {}
    package, version = first.get("package", ""), first.get("package_version", "")
    if isinstance(package, str) and package and isinstance(version, str):
        return f"{package.partition(':')[2] or package} {version}"[:40]
    printed = first.get("version", "")
    return printed[:40] if isinstance(printed, str) else ""


def _run_node(run_id: str, record: dict[str, Any] | None, shown: dict[str, list[str]]) -> Node:
    if record is None:
        return Node(run_id, "missing", f"{short(run_id)}\n(removed)", status="missing", run=run_id)
    command = record.get("command", "")
    lines = [short(run_id) + (f"  {record['name']}" if record.get("name") else ""), command]
    engine = _engine_line(record)
    if engine:
        lines.append(engine)
    params = record.get("params") or {}
    keys = shown.get(command, [])
    for key in keys[:MAX_PARAMS_SHOWN]:
        if key in params:
            lines.append(f"{key}={_fmt(params[key])}")
    if len(keys) > MAX_PARAMS_SHOWN:
        lines.append(f"(+{len(keys) - MAX_PARAMS_SHOWN} params)")
    status = record.get("status", "")
    if status != "completed":
        lines.append(status)
    return Node(
        run_id,
        "run",
        "\n".join(lines),
        status=status,
        url=f"/runs/{run_id}",
        experiment=record.get("experiment", ""),
        run=run_id,
        info={
            "name": record.get("name", ""),
            "command": command,
            "commit": record.get("commit", ""),
            "engine": engine,
        },
    )


# -- folding ----------------------------------------------------------------------------------


def fold(
    graph: Graph,
    records: dict[str, dict[str, Any]],
    collapse: bool | None = None,
    keep: Iterable[str] = (),
) -> Graph:
    """Each experiment of 2+ runs (but the root's and `keep`) as one node; None past FOLD_AT."""
    if collapse is None:
        collapse = sum(1 for n in graph.nodes.values() if n.kind == "run") > FOLD_AT
    if not collapse:
        return graph
    kept = set(keep)
    members: dict[str, list[str]] = {}
    for node in graph.nodes.values():
        foldable = node.kind == "run" and node.experiment and node.id != graph.root
        if foldable and node.experiment not in kept:
            members.setdefault(node.experiment, []).append(node.id)
    folded = {name: ids for name, ids in members.items() if len(ids) > 1}
    if not folded:
        return graph
    rename: dict[str, str] = {}
    new = Graph(graph.root, downstream=graph.downstream)
    for name, ids in sorted(folded.items()):
        exp_id = f"exp:{name}"
        rename.update(dict.fromkeys(ids, exp_id))
        found = [records[i] for i in sorted(ids) if i in records]
        new.nodes[exp_id] = _experiment_node(
            exp_id,
            name,
            sorted(ids),
            Counter(r.get("status", "") for r in found),
            ranges(found),
        )
    for node in graph.nodes.values():
        if node.kind == "output" and node.run in rename:
            out_id = f"out:{rename[node.run]}:{node.label}"
            rename[node.id] = out_id
            if out_id not in new.nodes:
                exp = new.nodes[rename[node.run]]
                new.nodes[out_id] = Node(out_id, "output", node.label, run=exp.id, url=exp.url)
        elif node.id not in rename:
            new.nodes[node.id] = node
    new.edges = unique_sorted(
        Edge(rename.get(e.source, e.source), rename.get(e.target, e.target), e.kind, e.label)
        for e in graph.edges
    )
    return new


def _experiment_node(
    exp_id: str, name: str, ids: list[str], counts: Counter[str], swept: dict[str, str]
) -> Node:
    """The node of a folded experiment: its name, size, swept ranges and status counts."""
    lines = [f"experiment {name}", f"{len(ids)} runs"]
    lines += [f"{k}: {v}" for k, v in swept.items()]
    if set(counts) != {"completed"}:
        lines.append(" · ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    status = "completed" if set(counts) == {"completed"} else "failed"
    if set(counts) <= {"completed", "running"} and "running" in counts:
        status = "running"
    return Node(
        exp_id,
        "experiment",
        "\n".join(lines),
        status=status,
        url=f"/experiments/{quote(name, safe='')}",
        experiment=name,
        info={"runs": ids, "status": dict(sorted(counts.items()))},
    )


def ranges(records: list[dict[str, Any]]) -> dict[str, str]:
    """Each param that varies as "lo..hi (n values)" or a short list (folded nodes, inputs)."""
    return _ranges(_summarise(records))


def _ranges(summary: dict[str, folding.Values]) -> dict[str, str]:
    out = {}
    for key in sorted(summary):
        found = summary[key]
        if found.count < 2:
            continue
        if found.values is None:  # numbers only, counted in the index
            out[key] = f"{_fmt(found.low)}..{_fmt(found.high)} ({found.count} values)"
            continue
        items = list(found.values.values())
        if all(isinstance(i, int | float) and not isinstance(i, bool) for i in items):
            out[key] = f"{_fmt(min(items))}..{_fmt(max(items))} ({len(items)} values)"
        else:
            shown = sorted(map(_fmt, items))
            out[key] = ",".join(shown[:4]) + (f",… ({len(items)} values)" if len(items) > 4 else "")
    return out
