"""`gittrack report`: one self-contained HTML file with the runs table, plots and flow graph."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .._ids import short
from ..errors import GittrackError
from ..library import Repo, browse, lineage

MAX_ROWS = 5000  # rows listed in a report's table
MAX_GRAPH = 300  # runs drawn in a report's flow graph


def build_report(
    repo: Repo, where: str | None = None, *, title: str | None = None
) -> tuple[str, int]:
    """The report's HTML (CSS inlined, plots as static SVG, nothing fetched) and its run count."""
    import jinja2

    from .render import FILTERS, GLOBALS, STATIC
    from .shared import templates_dir

    page = browse.page(repo, where, limit=MAX_ROWS)
    plot_columns = [c for c in page.columns if browse.FIELD.match(c)]
    plot = browse.plot_rows(repo, where, plot_columns, limit=MAX_ROWS) if plot_columns else {}
    svg, graph_note = "", ""
    graph = lineage.among(repo, [r["id"] for r in page.rows[:MAX_GRAPH]], anchors=True)
    if graph.edges:
        try:
            svg = lineage.inline_svg(graph)
        except GittrackError as exc:
            graph_note = str(exc)
    else:
        graph_note = "No run consumed another run's outputs: there is no flow to draw."
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())), autoescape=True)
    env.filters.update(FILTERS)
    env.globals.update(GLOBALS)
    context: dict[str, Any] = {
        "title": title or f"Runs of {repo.root.name}",
        "page": page,
        "plot_columns": plot_columns,
        **plots(plot, plot_columns),
        "svg": svg,
        "graph_note": graph_note,
        "where": where or "",
        "cell": browse.cell,
        "css": (STATIC / "app.css").read_text(),
        "generated": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "graph_size": len(graph.run_ids),
    }
    html = env.get_template("report.html").render(context)
    return html, page.total


MAX_SCATTERS = 12  # param-against-metric plots in a report


def plots(data: dict[str, list[Any]], columns: list[str]) -> dict[str, Any]:
    """The report's parallel coordinates and scatter plots, as SVG markup."""
    from . import svgplot

    if not data:
        return {"parcoords": "", "scatters": []}
    n = len(data["id"])

    def numeric(c: str) -> int:
        return sum(1 for v in data[c] if isinstance(v, int | float) and not isinstance(v, bool))

    cols = [c for c in columns if numeric(c) >= max(2, n / 2)]
    metrics = [c for c in cols if c.startswith("metrics.")]
    params = [c for c in cols if c.startswith("params.")]
    colour = metrics[0] if metrics else (cols[-1] if cols else "")
    par = svgplot.parcoords({c: data[c] for c in cols}, colour) if len(cols) > 1 else ""
    labels = [short(i) for i in data["id"]]
    scatters = [
        svgplot.scatter(data[p], data[m], labels, p, m, data["status"])
        for p in params
        for m in metrics
    ][:MAX_SCATTERS]
    return {"parcoords": par, "scatters": [s for s in scatters if s], "colour_by": colour}
