"""The lookup table: an SQLite database under .git/gittrack/, synced from the runs branch.

It is never the source of truth: a sync reads only the runs that changed since the tip it last
saw (one ref read when up to date) and a missing, corrupt or outdated file is rebuilt.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from . import gitstore
from .errors import RecordError
from .record import RunRecord, run_folder

INDEX_VERSION = "1"

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT,
    status TEXT,
    command TEXT,
    experiment TEXT,
    started TEXT,
    finished TEXT,
    duration_s REAL,
    commit_sha TEXT,
    record TEXT,
    problem TEXT
);
CREATE INDEX IF NOT EXISTS runs_name ON runs(name);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started);
"""


class Index:
    """Read access to the runs on the branch, through the SQLite lookup table."""

    def __init__(self, repo: gitstore.Repo) -> None:
        self.repo = repo
        self.path: Path = repo.state_dir / "index.sqlite"
        self._db: sqlite3.Connection | None = None

    # -- connection and sync ------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        self.repo.state_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(2):
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(SCHEMA_SQL)
                version = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
                if version is None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (INDEX_VERSION,))
                elif version[0] != INDEX_VERSION:
                    raise sqlite3.DatabaseError("index version changed")
                return db
            except sqlite3.DatabaseError:
                if attempt:
                    raise
                self._discard()
        raise AssertionError("unreachable")

    def _discard(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(str(self.path) + suffix).unlink()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def sync(self) -> None:
        """Bring the table up to the branch tip; rebuilds when the file is unusable."""
        try:
            self._sync()
        except sqlite3.DatabaseError:
            self._discard()
            self._sync()

    def _sync(self) -> None:
        current = gitstore.tip(self.repo)
        tip = current[0] if current else ""
        row = self.db.execute("SELECT value FROM meta WHERE key='tip'").fetchone()
        known = row[0] if row else ""
        if known == tip:
            return
        if known and tip and gitstore.is_ancestor(self.repo, known, tip):
            changed, removed = gitstore.changed_runs(self.repo, known, tip)
            commits = run_commits(self.repo, f"{known}..{tip}")
            full = False
        else:
            changed = set(gitstore.list_run_ids(self.repo, rev=tip)) if tip else set()
            removed = set()
            commits = run_commits(self.repo, tip) if tip else {}
            full = True
        rows = list(self._rows(tip, sorted(changed), commits))
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if full:
                db.execute("DELETE FROM runs")
            db.executemany("DELETE FROM runs WHERE id = ?", [(r,) for r in removed])
            db.executemany(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows
            )
            self.on_sync(db, rows, removed, full)
            from .edges import sync_tables  # lineage edges, outputs by md5, memo keys

            sync_tables(db, [r[0] for r in rows], removed, full)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('tip', ?)", (tip,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def on_sync(self, db: sqlite3.Connection, rows: list[tuple[Any, ...]], removed: set[str], full: bool) -> None:  # fmt: skip
        """Hook for derived tables (params, metrics, tags) kept in step with `runs`."""

    def _rows(self, tip: str, ids: list[str], commits: dict[str, str]) -> Iterator[tuple[Any, ...]]:
        revs = [f"{tip}:{run_folder(i)}/run.toml" for i in ids]
        for run_id, (_, data) in zip(ids, self.repo.reader().read_many(revs), strict=True):
            try:
                if data is None:
                    raise RecordError(run_id, "run.toml is missing")
                record = RunRecord.from_toml(data, run_id)
            except RecordError as exc:
                yield (run_id, "", "unreadable", "", "", "", "", None, commits.get(run_id, ""), None, exc.reason)  # fmt: skip
                continue
            started = record.started.isoformat() if record.started else ""
            finished = record.finished.isoformat() if record.finished else ""
            yield (
                run_id, record.name, record.status, record.command, record.experiment, started,
                finished, record.duration_s, commits.get(run_id, ""),
                json.dumps(record.to_json_dict()), None,
            )  # fmt: skip

    # -- reading ------------------------------------------------------------------------

    def ids_with_prefix(self, prefix: str, limit: int = 50) -> list[str]:
        self.sync()
        upper = prefix + "\uffff"
        rows = self.db.execute(
            "SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id LIMIT ?", (prefix, upper, limit)
        )
        return [r[0] for r in rows]

    def ids_named(self, name: str) -> list[str]:
        self.sync()
        rows = self.db.execute("SELECT id FROM runs WHERE name = ? ORDER BY started DESC", (name,))
        return [r[0] for r in rows]

    def latest(self) -> str | None:
        self.sync()
        row = self.db.execute("SELECT id FROM runs ORDER BY started DESC, id LIMIT 1").fetchone()
        return row[0] if row else None

    def all_ids(self) -> list[str]:
        self.sync()
        return [r[0] for r in self.db.execute("SELECT id FROM runs")]

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The indexed row of one run: record (as JSON data), commit and any problem."""
        self.sync()
        row = self.db.execute(
            "SELECT record, commit_sha, problem FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        return {"record": json.loads(row[0]) if row[0] else None, "commit": row[1], "problem": row[2]}

    def select(self, where_sql: str = "", params: Iterable[Any] = (), order_sql: str = "started DESC, id", limit: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Rows matching an SQL condition (compiled by query.py, never pasted from users)."""
        self.sync()
        sql = "SELECT id, record, commit_sha, problem FROM runs"
        if where_sql:
            sql += f" WHERE {where_sql}"
        sql += f" ORDER BY {order_sql}"
        args = list(params)
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [
            {"id": r[0], "record": json.loads(r[1]) if r[1] else None, "commit": r[2], "problem": r[3]}
            for r in self.db.execute(sql, args)
        ]

    def count(self) -> int:
        self.sync()
        return int(self.db.execute("SELECT count(*) FROM runs").fetchone()[0])


def run_commits(repo: gitstore.Repo, rev_range: str) -> dict[str, str]:
    """{run id: the branch commit that recorded it} from the Run-Id trailers of a range."""
    proc = repo.git("log", "--format=%H %(trailers:key=Run-Id,valueonly,separator=%x20)", rev_range)
    commits: dict[str, str] = {}
    for line in proc.stdout.decode().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            commits.setdefault(parts[1], parts[0])  # newest first: keep the latest commit
    return commits
