"""`gittrack report`: one self-contained HTML file with the runs table, plots and flow graph."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..errors import GittrackError
from ..library import Repo, browse, lineage

MAX_ROWS = 5000  # rows listed in a report's table
MAX_GRAPH = 300  # runs drawn in a report's flow graph


def build_report(
    repo: Repo, where: str | None = None, *, title: str | None = None
) -> tuple[str, int]:
    """The report's HTML (plotly and CSS inlined, nothing fetched) and the number of runs."""
    import jinja2

    from .shared import templates_dir
    from .views import FILTERS, GLOBALS, STATIC, plotly_js

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
        "plot": plot,
        "plot_columns": plot_columns,
        "svg": svg,
        "graph_note": graph_note,
        "where": where or "",
        "cell": browse.cell,
        "css": (STATIC / "app.css").read_text(),
        "plotly": plotly_js().read_text(),
        "generated": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "graph_size": len(graph.run_ids),
    }
    html = env.get_template("report.html").render(context)
    return html, page.total
