"""The lineage graph as plain data: nodes (runs, outputs, code, folded experiments) and edges."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

EdgeRow = tuple[str, str, str, str, str]  # child, parent, kind, output, md5 of a lineage edge
FORMATS = ("svg", "png", "pdf", "dot")
DIRECTIONS = ("up", "down", "both")
WALK_KINDS = ("input", "parent", "rerun")
STATUS_FILL = {
    "completed": "#d9f2d9",
    "failed": "#f8d0d0",
    "died": "#ead6f2",
    "interrupted": "#fbf0c8",
    "running": "#d3ebf8",
    "unreadable": "#f8d0d0",
    "missing": "#eeeeee",
}
MAX_PARAMS_SHOWN = 4
FOLD_AT = 20  # past this many runs, experiments fold by default
FAN_GRID = 12  # a node fed by more than this many is drawn with its inputs staggered
FAN_STAGGER = 6  # ... over this many columns


@dataclass
class Node:
    """A run, one of its outputs, a code commit, or a folded experiment."""

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
        """Every run the graph shows, folded ones included."""
        return sorted(self._runs())

    @property
    def run_count(self) -> int:
        """How many runs the graph shows: `len(run_ids)` without sorting 100,000 ids."""
        return len(self._runs())

    def _runs(self) -> set[str]:
        ids = {n.run for n in self.nodes.values() if n.kind in ("run", "missing")}
        for node in self.nodes.values():
            if node.kind == "experiment":
                ids.update(node.info.get("runs", []))
        return ids

    @property
    def folded(self) -> list[str]:
        """Names of the experiments drawn as one node."""
        return sorted(n.experiment for n in self.nodes.values() if n.kind == "experiment")


def unique_sorted(edges: Iterable[Edge]) -> list[Edge]:
    keyed = {(e.source, e.target, e.kind): e for e in edges if e.source != e.target}
    return [keyed[k] for k in sorted(keyed)]
