"""The flow graph of runs: built from records' `[[inputs]]`, `parent` and `rerun_of` alone.

`build()` returns the graph as plain data (nodes and edges, what the UI draws); `to_dot()` and
`render()` turn it into Graphviz source and SVG/PNG/PDF. Only the `dot` format works without a
system Graphviz. The output is deterministic: the same history gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .._ids import short
from ..errors import GittrackError, GraphvizMissing, UsageError
from ..index import edges as edge_tables
from ..index.db import Index

if TYPE_CHECKING:
    from .. import store

FORMATS = ("svg", "png", "pdf", "dot")
WALK_KINDS = ("input", "parent", "rerun")
STATUS_FILL = {
    "completed": "#d9f2d9",
    "failed": "#f8d0d0",
    "died": "#ead6f2",
    "interrupted": "#fbf0c8",
    "running": "#d3ebf8",
    "missing": "#eeeeee",
}
MAX_PARAMS_SHOWN = 4


@dataclass
class Node:
    """A run, one of its outputs, a code commit, or a collapsed experiment."""

    id: str
    kind: str  # run, output, code, experiment, missing
    label: str
    status: str = ""
    url: str = ""
    experiment: str = ""
    run: str = ""  # the run id (runs, outputs)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Edge:
    source: str
    target: str
    kind: str  # data (producer -> output -> consumer), input (whole run), launch, rerun, code
    label: str = ""


@dataclass
class Graph:
    """A lineage graph as data; `to_json()` is what the UI receives."""

    root: str
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    downstream: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "downstream": self.downstream,
            "nodes": [asdict(self.nodes[k]) for k in sorted(self.nodes)],
            "edges": [asdict(e) for e in self.edges],
        }

    @property
    def run_ids(self) -> list[str]:
        return sorted(n.run for n in self.nodes.values() if n.kind in ("run", "missing"))


def walk(
    index: Index, root: str, downstream: bool = False, depth: int | None = None
) -> tuple[set[str], list[tuple[str, str, str, str, str]]]:
    """Run ids reachable from `root` (upstream, or downstream) and the edges between them."""
    seen = {root}
    frontier = {root}
    found: set[tuple[str, str, str, str, str]] = set()
    level = 0
    while frontier and (depth is None or level < depth):
        rows = edge_tables.edges_of(index, frontier, downstream=downstream, kinds=WALK_KINDS)
        found.update(rows)
        nxt = {(r[0] if downstream else r[1]) for r in rows} - seen
        seen |= nxt
        frontier = nxt
        level += 1
    return seen, sorted(found)


def ancestry(
    repo: store.Repo, ref: str, downstream: bool = False, depth: int | None = None
) -> list[str]:
    """Ids of every run `ref` descends from (or, downstream, that descend from it), sorted."""
    from .resolve import resolve_id

    root = resolve_id(repo, ref)
    seen, _ = walk(Index(repo), root, downstream, depth)
    return sorted(seen - {root})


def build(
    repo: store.Repo,
    ref: str,
    *,
    downstream: bool = False,
    depth: int | None = None,
    collapse: bool = False,
    code: bool = False,
) -> Graph:
    """The lineage graph of run `ref`: its upstream flow, or with `downstream` what used it."""
    from .resolve import resolve_id

    if depth is not None and depth < 0:
        raise UsageError(f"--depth must be 0 or more, not {depth}.")
    root = resolve_id(repo, ref)
    index = Index(repo)
    ids, rows = walk(index, root, downstream, depth)
    records = edge_tables.records(index, ids)
    graph = Graph(root, downstream=downstream)
    shown = _varying(records)
    for run_id in sorted(ids):
        graph.nodes[run_id] = _run_node(run_id, records.get(run_id), shown)
    data_edges: set[tuple[str, str, str]] = set()
    for child, parent, kind, output, md5 in rows:
        if child not in ids or parent not in ids:
            continue
        if kind == "parent":
            graph.edges.append(Edge(parent, child, "launch", "launched"))
        elif kind == "rerun":
            graph.edges.append(Edge(parent, child, "rerun", "rerun"))
        elif output:
            out_id = f"out:{parent}:{output}"
            if out_id not in graph.nodes:
                graph.nodes[out_id] = Node(
                    out_id,
                    "output",
                    output,
                    run=parent,
                    url=f"/runs/{parent}",
                    info={"md5": md5, "output": output},
                )
            data_edges.add((parent, out_id, "data"))
            data_edges.add((out_id, child, "data"))
        else:
            data_edges.add((parent, child, "input"))
    graph.edges += [Edge(s, t, k) for s, t, k in data_edges]
    _place_in_experiments(graph, records)
    if code:
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
    if collapse:
        graph = _collapse(graph, records)
    graph.edges = _unique_sorted(graph.edges)
    return graph


def _place_in_experiments(graph: Graph, records: dict[str, dict[str, Any]]) -> None:
    """A run member of several experiments (reused by them) is drawn in the one with the most
    members in the graph; its own record's wins a tie."""
    options = {
        run_id: records[run_id].get("experiments") or ([node.experiment] if node.experiment else [])
        for run_id, node in graph.nodes.items()
        if node.kind == "run" and run_id in records
    }
    counts: dict[str, int] = {}
    for names in options.values():
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    for run_id, names in options.items():
        if len(names) > 1 or (names and not graph.nodes[run_id].experiment):
            own = graph.nodes[run_id].experiment
            graph.nodes[run_id].experiment = max(names, key=lambda n: (counts.get(n, 0), n == own))


def _unique_sorted(edges: Iterable[Edge]) -> list[Edge]:
    keyed = {(e.source, e.target, e.kind): e for e in edges if e.source != e.target}
    return [keyed[k] for k in sorted(keyed)]


def _varying(records: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Per command, the params whose values differ among the runs in the graph."""
    values: dict[str, dict[str, set[str]]] = {}
    for record in records.values():
        per = values.setdefault(record.get("command", ""), {})
        for key, value in (record.get("params") or {}).items():
            per.setdefault(key, set()).add(json.dumps(value, sort_keys=True, default=str))
    counts = {c: sum(1 for r in records.values() if r.get("command", "") == c) for c in values}
    return {
        command: sorted(k for k, v in per.items() if len(v) > 1 or counts[command] == 1)
        for command, per in values.items()
    }


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        text = ",".join(short(str(v)) for v in value[:3]) + (
            f",…(+{len(value) - 3})" if len(value) > 3 else ""
        )
        return text
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return (
        short(text) if len(text) == 32 and all(c in "0123456789abcdef" for c in text) else text[:24]
    )


def _run_node(run_id: str, record: dict[str, Any] | None, shown: dict[str, list[str]]) -> Node:
    if record is None:
        return Node(run_id, "missing", f"{short(run_id)}\n(removed)", status="missing", run=run_id)
    command = record.get("command", "")
    lines = [short(run_id) + (f"  {record['name']}" if record.get("name") else ""), command]
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
        },
    )


def _collapse(graph: Graph, records: dict[str, dict[str, Any]]) -> Graph:
    """Fold each experiment of 2+ runs into one node listing the swept ranges."""
    members: dict[str, list[str]] = {}
    for node in graph.nodes.values():
        if node.kind == "run" and node.experiment and node.id != graph.root:
            members.setdefault(node.experiment, []).append(node.id)
    folded = {name: ids for name, ids in members.items() if len(ids) > 1}
    if not folded:
        return graph
    rename: dict[str, str] = {}
    new = Graph(graph.root, downstream=graph.downstream)
    for name, ids in sorted(folded.items()):
        exp_id = f"exp:{name}"
        for run_id in ids:
            rename[run_id] = exp_id
        statuses = sorted({records[i].get("status", "") for i in ids if i in records})
        lines = [f"experiment {name}", f"{len(ids)} runs"]
        lines += [
            f"{k}: {v}" for k, v in _ranges([records[i] for i in ids if i in records]).items()
        ]
        if statuses != ["completed"]:
            lines.append(", ".join(statuses))
        new.nodes[exp_id] = Node(
            exp_id,
            "experiment",
            "\n".join(lines),
            status="completed" if statuses == ["completed"] else "failed",
            url=f"/runs?experiment={name}",
            experiment=name,
            info={"runs": sorted(ids)},
        )
    for node in graph.nodes.values():
        if node.kind == "output" and node.run in rename:
            out_id = f"out:{rename[node.run]}:{node.label}"
            rename[node.id] = out_id
            if out_id not in new.nodes:
                new.nodes[out_id] = Node(
                    out_id,
                    "output",
                    node.label,
                    run=rename[node.run],
                    url=new.nodes[rename[node.run]].url,
                )
        elif node.id not in rename:
            new.nodes[node.id] = node
    new.edges = [
        Edge(rename.get(e.source, e.source), rename.get(e.target, e.target), e.kind, e.label)
        for e in graph.edges
    ]
    return new


def _ranges(records: list[dict[str, Any]]) -> dict[str, str]:
    """For collapsed experiments: each varying param as "lo..hi (n values)" or a short list."""
    values: dict[str, set[Any]] = {}
    for record in records:
        for key, value in (record.get("params") or {}).items():
            values.setdefault(key, set()).add(json.dumps(value, sort_keys=True, default=str))
    out = {}
    for key in sorted(values):
        items = [json.loads(v) for v in values[key]]
        if len(items) < 2:
            continue
        if all(isinstance(i, int | float) and not isinstance(i, bool) for i in items):
            out[key] = f"{_fmt(min(items))}..{_fmt(max(items))} ({len(items)} values)"
        else:
            shown = sorted(map(_fmt, items))
            out[key] = ",".join(shown[:4]) + (f",… ({len(items)} values)" if len(items) > 4 else "")
    return out


# -- Graphviz ---------------------------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(**attrs: str) -> str:
    return "[" + " ".join(f"{k}={_quote(v)}" for k, v in attrs.items() if v) + "]"


def to_dot(graph: Graph) -> str:
    """Graphviz DOT source of the graph: experiments as clusters, links in URL attributes."""
    lines = [
        "digraph lineage {",
        '  graph [rankdir="LR" fontname="Helvetica" fontsize="10" nodesep="0.25" ranksep="0.5" '
        'newrank="true" mclimit="0.5" nslimit="2" searchsize="30"];',
        '  node [fontname="Helvetica" fontsize="10"];',
        '  edge [color="#666666" arrowsize="0.6"];',
    ]
    clusters: dict[str, list[Node]] = {}
    loose: list[Node] = []
    for key in sorted(graph.nodes):
        node = graph.nodes[key]
        (
            clusters.setdefault(node.experiment, [])
            if node.kind == "run" and node.experiment
            else loose
        ).append(node)
    for number, name in enumerate(sorted(clusters)):
        lines.append(f"  subgraph cluster_{number} {{")
        lines.append(
            f'    label={_quote("experiment " + name)} style="rounded,dashed" color="#999999" fontcolor="#555555";'
        )
        lines += [f"    {_node_line(n, graph.root)}" for n in clusters[name]]
        lines.append("  }")
    lines += [f"  {_node_line(n, graph.root)}" for n in loose]
    styles = {"launch": "dashed", "rerun": "dotted", "code": "dotted"}
    for edge in graph.edges:
        attrs = _attrs(
            style=styles.get(edge.kind, ""), label=edge.label if edge.kind != "data" else ""
        )
        attrs = "" if attrs == "[]" else f" {attrs}"
        lines.append(f"  {_quote(edge.source)} -> {_quote(edge.target)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_line(node: Node, root: str) -> str:
    if node.kind == "output":
        attrs = _attrs(
            label=node.label,
            shape="note",
            fontsize="9",
            style="filled",
            fillcolor="#ffffff",
            URL=node.url,
            tooltip=f"output {node.label} of {short(node.run)}",
        )
    elif node.kind == "code":
        attrs = _attrs(label=node.label, shape="component", style="filled", fillcolor="#eef2f8")
    else:
        fill = STATUS_FILL.get(node.status, "#ffffff")
        attrs = _attrs(
            label=node.label,
            shape="box3d" if node.kind == "experiment" else "box",
            style="rounded,filled,bold" if node.id == root else "rounded,filled",
            fillcolor=fill,
            URL=node.url,
            tooltip=node.id,
            penwidth="2" if node.id == root else "",
        )
    return f"{_quote(node.id)} {attrs};"


def render(graph: Graph, fmt: str = "svg") -> bytes:
    """The graph drawn as svg, png or pdf (needs Graphviz's dot), or its dot source."""
    if fmt not in FORMATS:
        raise UsageError(f"Unknown format '{fmt}'; choose one of: {', '.join(FORMATS)}.")
    source = to_dot(graph)
    if fmt == "dot":
        return source.encode()
    import graphviz

    try:
        return bytes(graphviz.Source(source).pipe(format=fmt))
    except graphviz.ExecutableNotFound as exc:
        raise GraphvizMissing(fmt) from exc
    except graphviz.CalledProcessError as exc:  # pragma: no cover - dot crashed
        raise GittrackError(f"Graphviz failed to draw the graph: {exc}; try --format dot.") from exc
