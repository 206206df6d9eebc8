"""An executed notebook as plain data for a read-only page: cells, text outputs, PNG images.

nbconvert would render it too but costs a heavy import; this keeps to what a run page needs.
Every string here is text for the template to escape; images are kept only when their data
is plain base64.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")
MAX_CELLS = 500
MAX_TEXT = 20_000
MAX_BYTES = 20 * 1024 * 1024


def _text(value: Any) -> str:
    text = "".join(value) if isinstance(value, list) else value if isinstance(value, str) else ""
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "\n[... truncated]"


def cells(path: Path) -> list[dict[str, Any]]:
    """The notebook's cells {kind, source, count, outputs: [{text|png|error}]}; [] if unreadable"""
    try:
        if path.stat().st_size > MAX_BYTES:
            return []
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    items = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    out: list[dict[str, Any]] = []
    for cell in items[:MAX_CELLS]:
        if not isinstance(cell, dict):
            continue
        kind = cell.get("cell_type") if cell.get("cell_type") in ("code", "markdown") else "raw"
        count = cell.get("execution_count")
        entry: dict[str, Any] = {
            "kind": kind,
            "source": _text(cell.get("source")),
            "count": count if isinstance(count, int) else None,
            "outputs": [],
        }
        for output in cell.get("outputs") or []:
            if isinstance(output, dict):
                entry["outputs"].append(_output(output))
        out.append(entry)
    return out


def _output(output: dict[str, Any]) -> dict[str, str]:
    kind = output.get("output_type")
    if kind == "stream":
        return {"text": _text(output.get("text"))}
    if kind == "error":
        return {"error": f"{_text(output.get('ename'))}: {_text(output.get('evalue'))}"}
    data = output.get("data") if isinstance(output.get("data"), dict) else {}
    assert isinstance(data, dict)
    png = data.get("image/png")
    if isinstance(png, str) and BASE64.match(png):
        return {"png": "".join(png.split())}
    return {"text": _text(data.get("text/plain"))}
