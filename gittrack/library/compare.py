"""How an output of two runs compares: identical bytes, identical values, or where it differs.

A rerun of deterministic physics often writes files that differ only in a date or a timing
(a trajectory header, a log, a table's metadata): bytes alone would call those "different".
So arrays and tables are also compared by value, and other files say which bytes differ.
"""

from __future__ import annotations

import filecmp
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import GittrackError

if TYPE_CHECKING:
    from .run import Run

BLOCK = 512  # byte offsets are reported in blocks of this size ("within the first 512 bytes")
CHUNK = 1 << 20
VALUE_KINDS = ("npy", "parquet", "csv", "json")


@dataclass
class Verdict:
    """One output compared: `kind` is identical bytes / identical values / differs / missing /
    new; `detail` says more (where the bytes differ, the largest difference of floats)."""

    kind: str
    detail: str = ""

    @property
    def same(self) -> bool:
        return self.kind in ("identical bytes", "identical values")

    def __str__(self) -> str:
        if not self.detail:
            return self.kind
        return f"{self.kind} ({self.detail})" if self.same else f"{self.kind}: {self.detail}"


def compare_output(before: Run, after: Run, name: str) -> Verdict:
    """Output `name` of run `before` against the same output of run `after`."""
    old, new = before.outputs.get(name), after.outputs.get(name)
    if old is None:
        return Verdict("new", "the original run had no such output")
    if new is None:
        return Verdict("missing", "the rerun did not write it")
    if old.md5 and old.md5 == new.md5:
        return Verdict("identical bytes")
    if not old.md5 or not new.md5:
        problem = old.error or new.error or "not stored"
        return Verdict("differs", f"one side has no data ({problem})")
    from .outputs import output_path

    try:
        paths = output_path(before, name), output_path(after, name)
    except GittrackError as exc:
        return Verdict("differs", f"md5 {old.md5[:12]} -> {new.md5[:12]} ({exc})")
    if old.md5.endswith(".dir") or new.md5.endswith(".dir"):
        return _folders(*paths)
    values = _values(new.kind, *paths) if new.kind == old.kind else None
    if values is not None and values.kind == "identical values":
        return Verdict("identical values", f"the files differ: {bytes_differ(*paths)}")
    return values or Verdict("differs", bytes_differ(*paths))


def bytes_differ(a: Path, b: Path) -> str:
    """Where two files' bytes differ, e.g. "3 bytes differ, all within the first 512 bytes"."""
    count, first, last = 0, -1, -1
    size_a, size_b = a.stat().st_size, b.stat().st_size
    with a.open("rb") as fa, b.open("rb") as fb:
        offset = 0
        while True:
            ca, cb = fa.read(CHUNK), fb.read(CHUNK)
            common = min(len(ca), len(cb))
            if ca[:common] != cb[:common]:
                found = _differing(ca[:common], cb[:common])
                count += len(found)
                first = offset + found[0] if first < 0 else first
                last = offset + found[-1]
            offset += common
            if common < CHUNK or len(ca) != len(cb):
                break
    parts = []
    if count:
        noun = "byte differs" if count == 1 else "bytes differ"
        end = min(-(-(last + 1) // BLOCK) * BLOCK, max(size_a, size_b))
        where = (
            f"all within the first {end} bytes"
            if first < BLOCK
            else f"all within bytes {first // BLOCK * BLOCK} to {end}"
        )
        parts.append(f"{count} {noun}, {where} (of {size_a})")
    if size_a != size_b:
        parts.append(f"the sizes differ ({size_a} -> {size_b} bytes)")
    return "; ".join(parts) or "the same bytes"


def _differing(a: bytes, b: bytes) -> list[int]:
    """Offsets at which two equally long byte strings differ."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is there whenever arrays are
        return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    where = np.flatnonzero(np.frombuffer(a, np.uint8) != np.frombuffer(b, np.uint8))
    return [int(i) for i in where]


def _values(kind: str, a: Path, b: Path) -> Verdict | None:
    """Compare by value for arrays, tables and JSON; None when the kind has no values."""
    if kind not in VALUE_KINDS:
        return None
    try:
        if kind == "json":
            same = json.loads(a.read_text()) == json.loads(b.read_text())
            return Verdict("identical values") if same else None
        if kind == "npy":
            import numpy as np

            return _arrays(np.load(a, allow_pickle=False), np.load(b, allow_pickle=False))
        import pandas as pd

        read = pd.read_parquet if kind == "parquet" else pd.read_csv
        return _frames(read(a), read(b))
    except (ImportError, ValueError, OSError):
        return None  # cannot read it back here: compare the bytes


def _arrays(a: Any, b: Any, what: str = "values") -> Verdict:
    import numpy as np

    if a.shape != b.shape:
        return Verdict("differs", f"the shapes differ ({a.shape} -> {b.shape})")
    numeric = np.issubdtype(a.dtype, np.number) and np.issubdtype(b.dtype, np.number)
    if numeric and _floats(a, b):
        unequal = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    else:
        unequal = np.asarray(a != b)
    count = int(np.count_nonzero(unequal))
    if not count:
        if a.dtype != b.dtype:
            return Verdict("identical values", f"the types differ ({a.dtype} -> {b.dtype})")
        return Verdict("identical values")
    detail = f"{count} of {a.size} {what} differ"
    if numeric and _floats(a, b):
        both = unequal & ~(np.isnan(a) | np.isnan(b))
        if both.any():
            gap = np.abs(a[both].astype(float) - b[both].astype(float))
            detail += f", largest absolute difference {float(gap.max()):.3g}"
    return Verdict("differs", detail)


def _floats(a: Any, b: Any) -> bool:
    import numpy as np

    return bool(np.issubdtype(a.dtype, np.inexact) or np.issubdtype(b.dtype, np.inexact))


def _frames(a: Any, b: Any) -> Verdict:
    if list(a.columns) != list(b.columns):
        return Verdict("differs", f"the columns differ ({list(a.columns)} -> {list(b.columns)})")
    if a.shape != b.shape:
        return Verdict("differs", f"the shapes differ ({a.shape} -> {b.shape})")
    if a.equals(b):
        return Verdict("identical values")
    details, total = [], 0
    for column in a.columns:
        try:
            verdict = _arrays(a[column].to_numpy(), b[column].to_numpy(), "rows")
        except TypeError:
            verdict = Verdict("differs", "")
        if not verdict.same:
            total += 1
            details.append(f"{column}: {verdict.detail}" if verdict.detail else str(column))
    if not total:
        return Verdict("identical values", "the index or types differ")
    return Verdict("differs", "; ".join(details))


def _folders(a: Path, b: Path) -> Verdict:
    files_a = {p.relative_to(a).as_posix(): p for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b).as_posix(): p for p in b.rglob("*") if p.is_file()}
    only = sorted(set(files_a) ^ set(files_b))
    common = set(files_a) & set(files_b)
    changed = sorted(n for n in common if not filecmp.cmp(files_a[n], files_b[n], shallow=False))
    parts = []
    if changed:
        parts.append(f"{len(changed)} of {len(files_a)} files differ ({', '.join(changed[:5])})")
    if only:
        parts.append(f"{len(only)} files on one side only ({', '.join(only[:5])})")
    return Verdict("differs", "; ".join(parts)) if parts else Verdict("identical values")
