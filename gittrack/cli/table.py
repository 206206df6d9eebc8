"""Rendering lists of runs for the terminal: table, JSON, CSV and Markdown."""

from __future__ import annotations

import json
import os
import unicodedata
from typing import Any

import click

from ..library.listing import pick_columns
from ..model.values import cell, cell_text, collapsed_text, collapses, csv_value
from . import terminal_size

STATUS_COLOURS = {
    "completed": "green",
    "failed": "red",
    "died": "magenta",
    "interrupted": "yellow",
    "running": "cyan",
    "unreadable": "red",
}
MAX_CELL = 28  # wider values are cut with "…" in the table (CSV and JSON keep them whole)
MAX_HIDDEN_NAMED = 6  # the footer names this many hidden columns, then says how many more


def columns_for(rows: list[dict[str, Any]]) -> list[str]:
    """The run fields, then every param and metric seen."""
    return pick_columns(rows, None, varying=False)


def text(value: Any, column: str) -> str:
    """A cell of the terminal table (see cell_text): run ids and lists collapsed ("6 runs")."""
    if column.startswith("params.") and collapses(value):
        return collapsed_text(value)
    return cell_text(value, column)


def headers_for(cols: list[str]) -> list[str]:
    """Column titles: params and metrics keys without the family when that is unambiguous."""
    short = [c.split(".", 1)[1] if c.startswith(("params.", "metrics.")) else c for c in cols]
    return [s if short.count(s) == 1 else c for s, c in zip(short, cols, strict=True)]


def render_runs(
    listing: Any, fmt: str, columns: list[str] | None = None, color: bool = False, fit: bool = False
) -> str:
    """The listing as text in `fmt` (table, json, csv or markdown); `fit` drops columns
    that do not fit the terminal."""
    rows = listing.rows
    cols = columns or getattr(listing, "columns", None) or columns_for(rows)
    if fmt == "json":
        data = rows if not columns else [{c: cell(r, c) for c in cols} for r in rows]
        return json.dumps(data, indent=2, ensure_ascii=False, default=str)
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        for row in rows:
            writer.writerow([csv_value(cell(row, c)) for c in cols])
        return buf.getvalue()
    table = [[_cut(text(cell(row, c), c)) for c in cols] for row in rows]
    headers = headers_for(cols)
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(v.replace("|", "\\|") for v in r) + " |" for r in table]
        return "\n".join(lines)
    widths = [
        max([text_width(h)] + [text_width(r[i]) for r in table]) for i, h in enumerate(headers)
    ]
    # fit the terminal; piped output (files, scripts) keeps every column
    width = terminal_size((120, 24)).columns if fit else 1 << 30
    keep = len(cols)
    while keep > 3 and sum(w + 2 for w in widths[:keep]) - 2 > width:
        keep -= 1
    lines = ["  ".join(pad(h, w) for h, w in zip(headers[:keep], widths, strict=False)).rstrip()]
    for r in table:
        parts = []
        for i in range(keep):
            value = pad(r[i], widths[i])
            if color and cols[i] == "status":
                value = click.style(value, fg=STATUS_COLOURS.get(r[i].strip()))
            parts.append(value)
        lines.append("  ".join(parts).rstrip())
    lines.append(footer(listing, len(rows), cols[keep:]))
    return "\n".join(lines)


def no_color() -> bool:
    """The NO_COLOR convention (https://no-color.org): set and not empty means no colours."""
    return bool(os.environ.get("NO_COLOR"))


def text_width(text_: str) -> int:
    """Columns `text_` takes on a terminal: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text_)


def pad(text_: str, columns: int) -> str:
    return text_ + " " * (columns - text_width(text_))


def footer(listing: Any, shown: int, hidden: list[str]) -> str:
    """`N of M runs`, whether --limit left matching runs out, and the hidden columns by name."""
    text_ = f"{shown} of {listing.total} runs"
    if getattr(listing, "more", False) and shown < listing.total:
        text_ += " (more match: raise --limit)"
    if hidden:
        names = ", ".join(hidden[:MAX_HIDDEN_NAMED])
        if len(hidden) > MAX_HIDDEN_NAMED:
            names += f" and {len(hidden) - MAX_HIDDEN_NAMED} more"
        text_ += f"; hidden: {names} (widen the terminal or --columns)"
    return text_


def _cut(value: str) -> str:
    return value if len(value) <= MAX_CELL else value[: MAX_CELL - 1] + "…"


def write_stream(stream: Any, fmt: str, columns: list[str] | None = None) -> None:
    """Write a streamed listing as JSON or CSV to stdout, a batch of rows at a time.

    JSON is an array with one run a line (the index's JSON text, not re-encoded); CSV is
    as `render_runs` writes it. `columns` (asked for) makes JSON rows hold only those.
    """
    batch: list[str] = []

    def flush(end: str = "") -> None:
        click.echo("".join(batch) + end, nl=False)
        batch.clear()

    if fmt == "json":
        rows: Any = stream.texts()
        if columns:
            rows = (
                json.dumps(dict(zip(columns, v, strict=True)), ensure_ascii=False, default=str)
                for v in stream.cells()
            )
        first = True
        for text_ in rows:
            batch.append(("[\n" if first else ",\n") + text_)
            first = False
            if len(batch) >= 1000:
                flush()
        flush("[]\n" if first else "\n]\n")
        return
    for chunk in stream.csv_chunks():
        click.echo(chunk, nl=False)
