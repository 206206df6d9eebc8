"""Lineage tables derived from the lookup table: edges between runs, outputs by md5, memo keys.

They live in the index database next to `runs`, are filled in the same transaction as each
sync (so they are never ahead of or behind it) and can always be rebuilt from the records.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .sql import chunked

if TYPE_CHECKING:
    from .db import Index

TABLES = (
    "CREATE TABLE IF NOT EXISTS lineage_edges (child TEXT, parent TEXT, kind TEXT, output TEXT, "
    "md5 TEXT, commit_sha TEXT)",
    "CREATE INDEX IF NOT EXISTS lineage_edges_child ON lineage_edges(child)",
    "CREATE INDEX IF NOT EXISTS lineage_edges_parent ON lineage_edges(parent)",
    "CREATE TABLE IF NOT EXISTS lineage_outputs (md5 TEXT, size INTEGER, run TEXT, name TEXT, "
    "started TEXT)",
    "CREATE INDEX IF NOT EXISTS lineage_outputs_md5 ON lineage_outputs(md5)",
    "CREATE INDEX IF NOT EXISTS lineage_outputs_size ON lineage_outputs(size)",
    "CREATE INDEX IF NOT EXISTS lineage_outputs_run ON lineage_outputs(run)",
    "CREATE TABLE IF NOT EXISTS lineage_memo (key TEXT, run TEXT, started TEXT)",
    "CREATE INDEX IF NOT EXISTS lineage_memo_key ON lineage_memo(key)",
    "CREATE INDEX IF NOT EXISTS lineage_memo_run ON lineage_memo(run)",
    "CREATE TABLE IF NOT EXISTS lineage_filehash (path TEXT PRIMARY KEY, size INTEGER, mtime_ns "
    "INTEGER, inode INTEGER, md5 TEXT)",
)


def _has_tables(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='lineage_memo'")
    return row.fetchone() is not None


def _create(db: sqlite3.Connection) -> bool:
    """Create the lineage tables when missing; True when they were."""
    if _has_tables(db):
        return False
    for statement in TABLES:
        db.execute(statement)
    return True


class Derived:
    """Collects the lineage rows of the records a sync reads, and writes them in batches."""

    def __init__(self, db: sqlite3.Connection, full: bool) -> None:
        self.db = db
        self.missing = _create(db)  # built by `finish` from every record, when not full
        self.full = full
        self.edges: list[tuple[str, str, str, str, str, str]] = []
        self.outputs: list[tuple[str, int, str, str, str]] = []
        self.memos: list[tuple[str, str, str]] = []
        self.written = 0  # memos already inserted

    def forget(self, ids: list[str]) -> None:
        """Drop the rows of runs about to be read again or removed (all of them when full)."""
        if self.full or self.missing:
            for table in ("lineage_edges", "lineage_outputs", "lineage_memo"):
                self.db.execute(f"DELETE FROM {table}")
            return
        for chunk, marks in chunked(ids):
            self.db.execute(f"DELETE FROM lineage_edges WHERE child IN ({marks})", chunk)
            self.db.execute(f"DELETE FROM lineage_outputs WHERE run IN ({marks})", chunk)
            self.db.execute(f"DELETE FROM lineage_memo WHERE run IN ({marks})", chunk)

    def add(self, run_id: str, record: dict[str, Any]) -> None:
        """Queue the edges, outputs and memo key of one readable record."""
        from .rows import lineage

        self.add_rows(*lineage(run_id, record))

    def add_rows(
        self,
        edges: list[tuple[str, str, str, str, str, str]],
        outputs: list[tuple[str, int, str, str, str]],
        memo: tuple[str, str, str] | None,
    ) -> None:
        """Queue the lineage rows of one readable record (`rows.lineage`)."""
        if edges:
            self.edges.extend(edges)
        if outputs:
            self.outputs.extend(outputs)
        if memo is not None:
            self.memos.append(memo)

    def flush(self) -> None:
        self.db.executemany("INSERT INTO lineage_edges VALUES (?,?,?,?,?,?)", self.edges)
        self.db.executemany("INSERT INTO lineage_outputs VALUES (?,?,?,?,?)", self.outputs)
        self.db.executemany("INSERT INTO lineage_memo VALUES (?,?,?)", self.memos[self.written :])
        self.written = len(self.memos)
        self.edges.clear()
        self.outputs.clear()

    def finish(self) -> list[tuple[str, str, str]]:
        """Write what is queued; returns the (memo key, run id, started) of the completed runs
        seen, for memo.py's files."""
        self.flush()
        if self.missing and not self.full:  # an index from before these tables: every run
            return sync_tables(self.db, [], (), full=True)
        return self.memos


def sync_tables(
    db: sqlite3.Connection, ids: list[str], removed: Iterable[str], full: bool
) -> list[tuple[str, str, str]]:
    """Bring the lineage tables in step with `runs` for changed and removed ids (in a
    transaction), reading the records from the index.

    Returns the (memo key, run id, started) of the completed runs it saw, for memo.py's files.
    """
    derived = Derived(db, full)
    derived.forget(sorted(set(ids) | set(removed)))
    if derived.full or derived.missing:
        rows: Iterable[tuple[str, str | None]] = db.execute("SELECT id, record FROM runs")
    else:
        rows = []
        for chunk, marks in chunked(sorted(set(ids))):
            rows += db.execute(
                f"SELECT id, record FROM runs WHERE id IN ({marks})", chunk
            ).fetchall()
    for run_id, text in rows:
        if text:
            derived.add(run_id, json.loads(text))
    derived.flush()
    return derived.memos


def ready(index: Index) -> sqlite3.Connection:
    """The index database, synced, with the lineage tables present (built once if missing)."""
    index.sync()
    db = index.db
    if not _has_tables(db):
        db.execute("BEGIN IMMEDIATE")
        try:
            sync_tables(db, [], (), full=True)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return db


def edges_of(
    index: Index, ids: Iterable[str], downstream: bool = False, kinds: Iterable[str] = ("input",)
) -> list[tuple[str, str, str, str, str]]:
    """(child, parent, kind, output, md5) edges touching `ids`: their inputs, or their consumers."""
    db = ready(index)
    column = "parent" if downstream else "child"
    kinds = list(kinds)
    found: list[tuple[str, str, str, str, str]] = []
    for chunk, marks in chunked(sorted(set(ids))):
        kind_marks = ",".join("?" * len(kinds))
        found += db.execute(
            f"SELECT child, parent, kind, output, md5 FROM lineage_edges "
            f"WHERE {column} IN ({marks}) AND kind IN ({kind_marks}) "
            "ORDER BY child, parent, kind, output, md5",  # sorted runs: cheap to sort together
            [*chunk, *kinds],
        ).fetchall()
    return found


def producers(index: Index, md5: str) -> list[tuple[str, str]]:
    """(run id, output name) of every recorded output with this md5, oldest run first."""
    db = ready(index)
    rows = db.execute(
        "SELECT run, name FROM lineage_outputs WHERE md5 = ? ORDER BY started, run", (md5,)
    )
    return [(r[0], r[1]) for r in rows]


def all_memos(index: Index) -> list[tuple[str, str, str]]:
    """(memo key, run id, started) of every completed run that has a memo key."""
    db = ready(index)
    return [tuple(r) for r in db.execute("SELECT key, run, started FROM lineage_memo")]


def file_md5(index: Index, path: Path) -> str:
    """md5 of a file's content (as DVC computes it), cached by path, size, mtime and inode."""
    st = path.stat()
    key = str(path.resolve())
    db = ready(index)
    row = db.execute(
        "SELECT md5 FROM lineage_filehash WHERE path = ? AND size = ? AND mtime_ns = ? AND "
        "inode = ?",
        (key, st.st_size, st.st_mtime_ns, st.st_ino),
    ).fetchone()
    if row:
        return str(row[0])
    from ..store.datastore import hash_file  # DVC's hashing: loaded when a file is new

    md5, _ = hash_file(path)
    db.execute(
        "INSERT OR REPLACE INTO lineage_filehash VALUES (?,?,?,?,?)",
        (key, st.st_size, st.st_mtime_ns, st.st_ino, md5),
    )
    return md5


def records(index: Index, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{id: record JSON data, without its inputs} of indexed runs (missing ones left out).

    The inputs are what `lineage_edges` holds (an analysis of 5,000 runs lists 5,000). A run
    that experiments joined by reuse also has `experiments`, every one it is a member of.
    """
    db = ready(index)
    found: dict[str, dict[str, Any]] = {}
    for chunk, marks in chunked(sorted(set(ids))):
        sql = f"SELECT id, {{}}, commit_sha, joined FROM runs WHERE id IN ({marks})"
        try:
            rows = db.execute(sql.format("json_remove(record, '$.inputs')"), chunk).fetchall()
        except sqlite3.OperationalError:  # a record SQLite cannot parse (NaN): as it is
            rows = db.execute(sql.format("record"), chunk).fetchall()
        for run_id, text, commit, joined in rows:
            if text:
                found[run_id] = json.loads(text) | {"commit": commit}
                found[run_id].pop("inputs", None)
                if joined:  # experiments that reused the run, besides its record's
                    found[run_id]["experiments"] = json.loads(joined)
    return found


def is_under(path: Path, folder: Path) -> bool:
    """True when `path` lies inside `folder` (both resolved)."""
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
    except ValueError:
        return False
    return True
