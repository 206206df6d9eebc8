"""Rendering lists of runs for the terminal: table, JSON, CSV and Markdown."""

from __future__ import annotations

import csv
import io
import json
import shutil
from typing import Any

import click

STATUS_COLOURS = {
    "completed": "green", "failed": "red", "died": "magenta", "interrupted": "yellow",
    "running": "cyan", "unreadable": "red",
}  # fmt: skip


def columns_for(rows: list[dict[str, Any]]) -> list[str]:
    """id, name, status, started, duration, then every param and metric seen."""
    cols = ["id", "name", "status", "started", "duration_s"]
    for family in ("params", "metrics"):
        seen: dict[str, None] = {}
        for row in rows:
            for key in row.get(family) or {}:
                seen[f"{family}.{key}"] = None
        cols += list(seen)
    return cols


def cell(row: dict[str, Any], column: str) -> Any:
    if "." in column:
        family, _, key = column.partition(".")
        value: Any = row.get(family) or {}
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value
    return row.get(column)


def text(value: Any, column: str) -> str:
    if value is None:
        return ""
    if column == "id":
        return str(value)[:8]
    if column in ("started", "finished") and isinstance(value, str):
        return value[:19].replace("T", " ")
    if column == "duration_s" and isinstance(value, int | float):
        return f"{value:.1f}s"
    if isinstance(value, float):
        shown = f"{value:.6g}"
        return shown if any(c in shown for c in ".en") else shown + ".0"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def render_runs(listing: Any, fmt: str, columns: list[str] | None = None, color: bool = False, fit: bool = False) -> str:  # fmt: skip
    rows = listing.rows
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False, default=str)
    cols = columns or columns_for(rows)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        for row in rows:
            writer.writerow(["" if cell(row, c) is None else cell(row, c) for c in cols])
        return buf.getvalue()
    table = [[text(cell(row, c), c) for c in cols] for row in rows]
    headers = [c.split(".", 1)[-1] if c.startswith(("params.", "metrics.")) else c for c in cols]
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(v.replace("|", "\\|") for v in r) + " |" for r in table]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(r[i]) for r in table]) for i, h in enumerate(headers)]
    # fit the terminal; piped output (files, scripts) keeps every column
    width = shutil.get_terminal_size((120, 24)).columns if fit else 1 << 30
    keep = len(cols)
    while keep > 3 and sum(w + 2 for w in widths[:keep]) > width:
        keep -= 1
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers[:keep], widths, strict=False)).rstrip()]
    for r in table:
        parts = []
        for i in range(keep):
            value = r[i].ljust(widths[i])
            if color and cols[i] == "status":
                value = click.style(value, fg=STATUS_COLOURS.get(r[i].strip()))
            parts.append(value)
        lines.append("  ".join(parts).rstrip())
    hidden = len(cols) - keep
    footer = f"{len(rows)} of {listing.total} runs"
    if hidden:
        footer += f" ({hidden} columns hidden: widen the terminal or use --format csv)"
    lines.append(footer)
    return "\n".join(lines)
