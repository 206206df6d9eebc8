"""What `gittrack ls` shows: indexed runs plus the runs staged locally (running or died)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import gitstore, tracker
from .index import Index


@dataclass
class Listing:
    """Rows of runs as JSON-ready dicts, newest first, and how many runs exist in all."""

    rows: list[dict[str, Any]]
    total: int
    problems: list[str] = field(default_factory=list)


def list_runs(repo: gitstore.Repo, where: str | None = None, limit: int | None = None) -> Listing:
    """The runs matching `where`, with locally staged runs (running, died) first."""
    tracker.record_died(repo)
    index = Index(repo)
    sql, params = "", []
    if where:
        from .query import compile_where

        sql, params = compile_where(where)
    rows = index.select(sql, params, limit=limit)
    problems = [f"run {r['id'][:8]} is skipped: {r['problem']}" for r in rows if r["problem"]]
    records = [r["record"] | {"commit": r["commit"]} for r in rows if r["record"]]
    staged = [
        rec.to_json_dict() | {"status": state}
        for rec, state in tracker.stale_runs(repo)
        if not where
    ]
    records = staged + records
    if limit is not None:
        records = records[:limit]
    return Listing(records, index.count() + len(staged), problems)
