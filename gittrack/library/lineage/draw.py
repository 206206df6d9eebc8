"""The lineage graph drawn: Graphviz DOT source, SVG/PNG/PDF through `dot`, SVG for HTML."""

from __future__ import annotations

from collections import Counter

from ..._ids import short
from ...errors import GittrackError, GraphvizMissing, UsageError
from .graph import (
    FAN_GRID,
    FAN_STAGGER,
    FORMATS,
    STATUS_FILL,
    Edge,
    Graph,
    Node,
    unique_sorted,
)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(**attrs: str) -> str:
    return "[" + " ".join(f"{k}={_quote(v)}" for k, v in attrs.items() if v) + "]"


def _direct_wide_fan_ins(graph: Graph) -> Graph:
    """A node fed by more than FAN_GRID outputs gets its producers' edges directly (one output
    note per producer would stack into a column as tall as the fan-in)."""
    fan_in = Counter(e.target for e in graph.edges if graph.nodes[e.source].kind == "output")
    wide = {t for t, n in fan_in.items() if n > FAN_GRID}
    if not wide:
        return graph
    feeds: dict[str, set[str]] = {}
    for e in graph.edges:
        if graph.nodes[e.source].kind == "output":
            feeds.setdefault(e.source, set()).add(e.target)
    dropped = {o for o, targets in feeds.items() if targets <= wide}
    edges = [e for e in graph.edges if e.source not in dropped and e.target not in dropped]
    for e in graph.edges:
        if e.source in dropped and e.target in wide:
            edges.append(Edge(graph.nodes[e.source].run, e.target, "data"))
    nodes = {k: n for k, n in graph.nodes.items() if k not in dropped}
    return Graph(graph.root, nodes, unique_sorted(edges), graph.downstream)


def to_dot(graph: Graph) -> str:
    """Graphviz DOT source of the graph: experiments as clusters, links in URL attributes."""
    graph = _direct_wide_fan_ins(graph)
    fan_in = Counter(e.target for e in graph.edges)
    wide = any(n > FAN_GRID for n in fan_in.values())
    lines = [
        "digraph lineage {",
        '  graph [rankdir="LR" fontname="Helvetica" fontsize="10" nodesep="0.25" ranksep="0.5" '
        'newrank="true" mclimit="0.5" nslimit="2" searchsize="30"'
        + (' concentrate="true"' if wide else "")
        + "];",
        '  node [fontname="Helvetica" fontsize="10"];',
        '  edge [color="#666666" arrowsize="0.6"];',
    ]
    clusters: dict[str, list[Node]] = {}
    loose: list[Node] = []
    for key in sorted(graph.nodes):
        node = graph.nodes[key]
        in_cluster = node.kind == "run" and node.experiment
        (clusters.setdefault(node.experiment, []) if in_cluster else loose).append(node)
    for number, name in enumerate(sorted(clusters)):
        label = _quote("experiment " + name)
        lines.append(f"  subgraph cluster_{number} {{")
        lines.append(
            f'    label={label} style="rounded,dashed" color="#999999" fontcolor="#555555";'
        )
        lines += [f"    {_node_line(n, graph.root)}" for n in clusters[name]]
        lines.append("  }")
    lines += [f"  {_node_line(n, graph.root)}" for n in loose]
    styles = {"launch": "dashed", "rerun": "dotted", "code": "dotted"}
    seen: Counter[str] = Counter()
    for edge in graph.edges:
        stagger = ""  # a wide fan-in as a grid of FAN_STAGGER columns, not one tall column
        if fan_in[edge.target] > FAN_GRID:
            stagger = str(1 + seen[edge.target] % FAN_STAGGER)
            seen[edge.target] += 1
        attrs = _attrs(
            style=styles.get(edge.kind, ""),
            label=edge.label if edge.kind != "data" else "",
            minlen=stagger,
        )
        attrs = "" if attrs == "[]" else f" {attrs}"
        lines.append(f"  {_quote(edge.source)} -> {_quote(edge.target)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_line(node: Node, root: str) -> str:
    if node.kind == "output":
        owner = short(node.run) if not node.run.startswith("exp:") else node.run[4:]
        attrs = _attrs(
            label=node.label,
            shape="note",
            fontsize="9",
            style="filled",
            fillcolor="#ffffff",
            URL=node.url,
            tooltip=f"output {node.label} of {owner}",
        )
    elif node.kind == "code":
        attrs = _attrs(label=node.label, shape="component", style="filled", fillcolor="#eef2f8")
    else:
        tooltip = node.id if node.kind != "experiment" else f"experiment {node.experiment}"
        attrs = _attrs(
            label=node.label,
            shape="box3d" if node.kind == "experiment" else "box",
            style="rounded,filled,bold" if node.id == root else "rounded,filled",
            fillcolor=STATUS_FILL.get(node.status, "#ffffff"),
            URL=node.url,
            tooltip=tooltip,
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


def inline_svg(graph: Graph) -> str:
    """The graph as SVG fit to sit inside HTML (no XML prolog, plain href links)."""
    svg = render(graph, "svg").decode("utf-8", "replace")
    return (
        svg[svg.find("<svg") :]
        .replace(" xlink:href=", " href=")
        .replace(" xlink:title=", " title=")
    )
