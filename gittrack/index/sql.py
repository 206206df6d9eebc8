"""Small SQL helpers shared by the index's tables."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
CHUNK = 500  # values per statement, well under SQLite's variable limit


def chunked(items: Sequence[T], size: int = CHUNK) -> Iterator[tuple[list[T], str]]:
    """`items` in slices that fit one statement, each with its `?,?,...` placeholders."""
    for start in range(0, len(items), size):
        part = list(items[start : start + size])
        yield part, ",".join("?" * len(part))
