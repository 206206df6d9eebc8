"""Previews of a run's outputs for its page: images, first rows of tables, arrays, first lines.

Every preview is size-limited and inert: files are read as data (numpy without pickles, CSV and
parquet as text cells, text decoded), never executed; the page escapes whatever they hold.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import store
from .runview import DOWNLOAD_LIMIT, output_file

PREVIEW_LIMIT = DOWNLOAD_LIMIT  # larger outputs get no preview
MAX_PREVIEWS = 8  # outputs previewed on one page
ROWS, COLUMNS = 20, 20  # a table's first rows and columns
TEXT_LINES, TEXT_BYTES = 40, 20_000  # a text file's first lines
POINTS = 2_000  # a 1-D array is thinned to this many points
GRID = 200  # a 2-D array is thinned to this many rows and columns
IMAGES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}
TEXTS = {".txt", ".log", ".md", ".json", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".out", ".dat"}


@dataclass
class Preview:
    """What the page draws for one output: kind is image, table, line, heatmap, text or note."""

    name: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


def previews(repo: store.Repo, run_id: str, outputs: dict[str, Any]) -> dict[str, Preview]:
    """A preview for each output (up to MAX_PREVIEWS) whose file is available locally."""
    found: dict[str, Preview] = {}
    for name, output in outputs.items():
        if len(found) >= MAX_PREVIEWS:
            break
        size = int(output.get("size") or 0)
        if output.get("error") or output.get("kind") == "dir" or size > PREVIEW_LIMIT:
            continue
        path = output_file(repo, run_id, name)
        if path is None:
            continue
        shown = preview(name, path, str(output.get("kind") or ""))
        if shown is not None:
            found[name] = shown
    return found


def preview(name: str, path: Path, kind: str = "") -> Preview | None:
    """The preview of one file, chosen by its suffix and kind; None when it has none."""
    suffix = path.suffix.lower()
    try:
        if suffix in IMAGES:
            return Preview(name, "image", {"type": IMAGES[suffix]})
        if suffix == ".npy" or kind == "npy":
            return _array(name, path)
        if suffix == ".parquet" or kind == "parquet":
            return _parquet(name, path)
        if suffix in (".csv", ".tsv") or kind == "csv":
            return _csv(name, path, "\t" if suffix == ".tsv" else ",")
        if suffix in TEXTS or kind in ("text", "json") or _looks_like_text(path):
            return _text(name, path)
    except ImportError as exc:
        return Preview(name, "note", {"text": f"No preview: install {exc.name} to see one."})
    except (OSError, ValueError, csv.Error, UnicodeDecodeError) as exc:
        return Preview(name, "note", {"text": f"No preview: {exc}"})
    return None


def _looks_like_text(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(4096)
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end of the sample is fine
        return exc.start >= len(head) - 3
    return True


def _text(name: str, path: Path) -> Preview:
    with path.open("rb") as handle:
        data = handle.read(TEXT_BYTES)
    lines = data.decode("utf-8", "replace").splitlines()
    more = len(lines) > TEXT_LINES or path.stat().st_size > TEXT_BYTES
    return Preview(name, "text", {"text": "\n".join(lines[:TEXT_LINES]), "more": more})


def _csv(name: str, path: Path, delimiter: str) -> Preview:
    with path.open("rb") as handle:
        data = handle.read(64 * 1024).decode("utf-8", "replace")
    rows = list(csv.reader(io.StringIO(data), delimiter=delimiter))
    if not rows:
        return Preview(name, "note", {"text": "An empty table."})
    total = _count_lines(path) - 1
    header, body = rows[0][:COLUMNS], [r[:COLUMNS] for r in rows[1 : ROWS + 1]]
    return Preview(
        name, "table", {"columns": header, "rows": body, "total": total, "wide": len(rows[0])}
    )


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def _parquet(name: str, path: Path) -> Preview:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return Preview(name, "note", {"text": "Install pyarrow to preview parquet files."})
    table = pq.ParquetFile(path)
    names = table.schema_arrow.names
    batch = next(table.iter_batches(batch_size=ROWS, columns=names[:COLUMNS]), None)
    rows = [] if batch is None else [[_plain(v) for v in row.values()] for row in batch.to_pylist()]
    data = {"columns": names[:COLUMNS], "rows": rows, "total": table.metadata.num_rows}
    return Preview(name, "table", data | {"wide": len(names)})


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


def _array(name: str, path: Path) -> Preview:
    import numpy as np

    array = np.load(path, mmap_mode="r", allow_pickle=False)
    shape = "×".join(map(str, array.shape)) or "scalar"
    info = f"{array.dtype} array of shape {shape}"
    if array.dtype.kind not in "biuf" or array.ndim not in (1, 2) or array.size == 0:
        return Preview(name, "note", {"text": info})
    if array.ndim == 1:
        step = max(1, -(-array.shape[0] // POINTS))
        values = np.asarray(array[::step], dtype=float)
        x = list(range(0, array.shape[0], step))
        return Preview(name, "line", {"x": x, "y": values.tolist(), "info": info})
    rows, cols = (max(1, -(-n // GRID)) for n in array.shape)
    grid = np.asarray(array[::rows, ::cols], dtype=float)
    return Preview(name, "heatmap", {"z": grid.tolist(), "info": info, "step": [rows, cols]})
