"""How runs look in a notebook: HTML tables for Run and RunSet, the lineage as inline SVG.

Everything shown is escaped; images are inlined only when small and already stored.
"""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Any

from .._ids import short
from ..model.values import cell, cell_text, flat
from . import listing

if TYPE_CHECKING:
    from .run import Run
    from .runset import RunSet

IMAGE_LIMIT = 512 * 1024  # bytes of a PNG/JPEG/SVG output inlined in a run's HTML
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
MAX_ROWS = 200

STYLE = (
    "<style>.gittrack td,.gittrack th{text-align:left;padding:2px 8px;vertical-align:top}"
    ".gittrack caption{text-align:left;font-weight:bold}</style>"
)


def _e(value: Any, column: str = "") -> str:
    return html.escape(cell_text(value, column, list_sep=", "))


def runset_html(runs: RunSet) -> str:
    """The table `gittrack ls` would show, at most MAX_ROWS rows."""
    records = [r["record"] for r in runs.rows[:MAX_ROWS] if r["record"]]
    columns = listing.pick_columns(records, None)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(cell(r, c), c)}</td>" for c in columns) + "</tr>"
        for r in records
    )
    more = len(runs) - len(records)
    note = f"<p>{more} more run(s) not shown.</p>" if more > 0 else ""
    caption = f"<caption>{len(runs)} run{'s' * (len(runs) != 1)}</caption>"
    return f"{STYLE}<table class='gittrack'>{caption}<tr>{head}</tr>{body}</table>{note}"


def run_html(run: Run) -> str:
    """A run's status, params, metrics, outputs (small images inline) and inputs."""
    data = run.to_json()
    title = html.escape(f"run {run.short}" + (f" '{run.name}'" if run.name else ""))
    parts = [f"{STYLE}<div class='gittrack'><b>{title}</b> · {html.escape(run.status)}"]
    parts.append(f" · {html.escape(data.get('command', ''))}</div>")
    for family in ("params", "metrics"):
        values = flat(data.get(family) or {})
        if values:
            rows = "".join(
                f"<tr><th>{html.escape(k)}</th><td>{_e(v)}</td></tr>" for k, v in values.items()
            )
            parts.append(f"<table class='gittrack'><caption>{family}</caption>{rows}</table>")
    outputs = data.get("outputs") or {}
    if outputs:
        rows = "".join(_output_row(run, name, out) for name, out in outputs.items())
        parts.append(f"<table class='gittrack'><caption>outputs</caption>{rows}</table>")
    inputs = data.get("inputs") or []
    if inputs:
        rows = "".join(
            f"<tr><td>{html.escape(short(i.get('run', '')))}</td>"
            f"<td>{html.escape(i.get('output', ''))}</td></tr>"
            for i in inputs
        )
        parts.append(f"<table class='gittrack'><caption>inputs</caption>{rows}</table>")
    return "".join(parts)


def _output_row(run: Run, name: str, out: dict[str, Any]) -> str:
    size = int(out.get("size") or 0)
    cells = f"<th>{html.escape(name)}</th><td>{html.escape(str(out.get('path', '')))}</td>"
    cells += f"<td>{size:,} bytes</td>"
    preview = _image(run, name, out) if 0 < size <= IMAGE_LIMIT else ""
    return f"<tr>{cells}<td>{preview}</td></tr>"


def _image(run: Run, name: str, out: dict[str, Any]) -> str:
    from pathlib import PurePosixPath

    suffix = PurePosixPath(str(out.get("path", ""))).suffix.lower()
    if suffix not in IMAGE_TYPES or out.get("error") or not out.get("md5"):
        return ""
    from .outputs import output_path

    try:
        data = output_path(run, name).read_bytes()
    except Exception:  # a preview is best effort: the table still says what the output is
        return ""
    source = f"data:{IMAGE_TYPES[suffix]};base64,{base64.b64encode(data).decode()}"
    return f"<img alt='{html.escape(name)}' style='max-width:320px' src='{source}'>"


class LineageSVG:
    """A run's lineage graph; shows itself as SVG in a notebook (`_repr_svg_`)."""

    def __init__(self, run: Run, downstream: bool = False) -> None:
        self.run = run
        self.downstream = downstream

    def _repr_svg_(self) -> str:
        from . import lineage

        graph = lineage.build(self.run.repo, self.run.id, downstream=self.downstream)
        return lineage.render(graph, "svg").decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<lineage of run {self.run.short}>"
