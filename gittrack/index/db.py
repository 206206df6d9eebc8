"""The lookup table: an SQLite database under .git/gittrack/, synced from the runs branch.

It is never the source of truth: a sync reads only the runs that changed since the tips it
last saw (the runs branch and the notes ref: two ref reads when up to date), and a missing,
corrupt or outdated file is rebuilt. Params, metrics and env values go into a key/value table
(`kv`) indexed by key and value, so that a query touches only the runs it matches.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import re
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .. import store
from ..errors import RecordError
from ..model.record import SCHEMA, RunRecord, json_data, run_folder
from ..model.values import FAMILIES, flat
from . import memo
from .sql import chunked

try:  # the compiled tomli parses records ~3x faster than the standard library's tomllib
    import tomli as toml_reader
except ImportError:  # pragma: no cover
    import tomllib as toml_reader  # type: ignore[no-redef]

INDEX_VERSION = "6"  # 6: code_commit
BATCH = 2000  # runs read and written at a time: bounds memory during a full build
PROGRESS_MIN_RUNS = 2000  # a build reading more runs shows a progress bar on a terminal

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS run_fields (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT,
    status TEXT,
    command TEXT,
    experiment TEXT,
    started TEXT,
    finished TEXT,
    duration_s REAL,
    commit_sha TEXT,
    problem TEXT,
    started_ts REAL,
    finished_ts REAL,
    tags TEXT,
    note TEXT,
    rerun_of TEXT,
    joined TEXT,
    exact INTEGER,
    shape INTEGER,
    code_commit TEXT
);
CREATE TABLE IF NOT EXISTS shapes (shape INTEGER PRIMARY KEY, keys TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS records (rid INTEGER PRIMARY KEY, record TEXT);
CREATE VIEW IF NOT EXISTS runs AS
    SELECT f.*, r.record AS record FROM run_fields AS f LEFT JOIN records AS r ON r.rid = f.rid;
CREATE TABLE IF NOT EXISTS keys (
    key_id INTEGER PRIMARY KEY, family TEXT NOT NULL, key TEXT NOT NULL, UNIQUE (family, key)
);
CREATE TABLE IF NOT EXISTS kv (run INTEGER NOT NULL, key_id INTEGER NOT NULL, num REAL, text TEXT);
CREATE TABLE IF NOT EXISTS tags (
    tag TEXT NOT NULL, run INTEGER NOT NULL, PRIMARY KEY (tag, run)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    experiment TEXT NOT NULL, run INTEGER NOT NULL, PRIMARY KEY (experiment, run)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notes (object TEXT PRIMARY KEY, run_id TEXT, content TEXT);
CREATE INDEX IF NOT EXISTS notes_run ON notes(run_id);
"""

# secondary indexes: dropped during a full build and created after it (much faster)
INDEXES_SQL = """
CREATE INDEX IF NOT EXISTS runs_name ON run_fields(name);
CREATE INDEX IF NOT EXISTS runs_started ON run_fields(started_ts);
CREATE INDEX IF NOT EXISTS runs_commit ON run_fields(commit_sha);
CREATE INDEX IF NOT EXISTS runs_code_commit ON run_fields(code_commit);
CREATE INDEX IF NOT EXISTS kv_num ON kv(key_id, num, run) WHERE num IS NOT NULL;
CREATE INDEX IF NOT EXISTS kv_text ON kv(key_id, text, run);
CREATE INDEX IF NOT EXISTS kv_run ON kv(run, key_id);
CREATE INDEX IF NOT EXISTS tags_run ON tags(run);
CREATE INDEX IF NOT EXISTS members_run ON members(run);
"""
INDEX_NAMES = re.findall(r"EXISTS (\w+) ON", INDEXES_SQL)

RUN_COLUMNS = (
    "rid, id, name, status, command, experiment, started, finished, duration_s, commit_sha, "
    "problem, started_ts, finished_ts, tags, note, rerun_of, joined, exact, shape, code_commit"
)
# columns a listing reads straight from run_fields; the rest come from the record's JSON text
FIELD_COLUMNS = {"id": "f.id", "commit": "f.commit_sha", "tags": "f.tags", "note": "f.note"}
JSON_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
NUMBER = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")


def _progress(runs: int) -> Any:
    """A progress bar on stderr for reading many runs, when stderr is a terminal (else None)."""
    if runs <= PROGRESS_MIN_RUNS or not sys.stderr.isatty():
        return None
    if os.environ.get("GITTRACK_VERBOSITY", "").strip().startswith("-"):  # gittrack -q
        return None
    from tqdm import tqdm

    return tqdm(total=runs, unit="run", desc="indexing runs", file=sys.stderr, leave=False)


def _busy(exc: sqlite3.Error) -> bool:
    """A lock held by another process: wait or read what is there, never discard the file."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Index:
    """Read access to the runs on the branch, through the SQLite lookup table."""

    def __init__(self, repo: store.Repo) -> None:
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
        self.repo.make_dir(self.repo.state_dir)
        for attempt in range(2):
            try:
                return self._connect()
            except sqlite3.DatabaseError as exc:
                if attempt or _busy(exc):
                    raise
                self._discard()
        raise AssertionError("unreachable")

    def _connect(self) -> sqlite3.Connection:
        fresh = not os.path.exists(self.path)
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        if fresh:  # SQLite gives its -wal and -shm files the database file's permissions
            self.repo.share(self.path)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA cache_size=-32000")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            version = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            if version is None:
                db.execute("BEGIN IMMEDIATE")
                if db.execute("SELECT value FROM meta WHERE key='version'").fetchone() is None:
                    for stmt in (SCHEMA_SQL + INDEXES_SQL).split(";"):
                        if stmt.strip():
                            db.execute(stmt)
                    db.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('version', ?)", (INDEX_VERSION,)
                    )
                db.execute("COMMIT")
            elif version[0] != INDEX_VERSION:
                raise sqlite3.DatabaseError("index version changed")
            return db
        except BaseException:
            db.close()
            raise

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
        """Bring the table up to the branch and notes tips; rebuilds when the file is unusable."""
        try:
            self._sync()
        except sqlite3.DatabaseError as exc:
            if _busy(exc):
                return  # another process is writing it: read the consistent state before it
            self._discard()
            self._sync()

    def _tips(self) -> tuple[str, str]:
        current = store.tip(self.repo)
        return (current[0] if current else ""), (store.notes_tip(self.repo) or "")

    def _known(self) -> tuple[str, str]:
        meta = dict(self.db.execute("SELECT key, value FROM meta WHERE key IN ('tip', 'notes')"))
        return meta.get("tip", ""), meta.get("notes", "")

    def _sync(self) -> None:
        tips = self._tips()
        if self._known() == tips:
            return
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            known, known_notes = self._known()  # another process may have synced meanwhile
            tip, notes = tips
            touched: set[str] = set()
            changed: set[str] = set()
            removed: set[str] = set()
            full = False
            if known != tip:
                changed, removed, full = self._sync_runs(known, tip)
            if known_notes != notes:
                touched = self._sync_notes(known_notes, notes)
            self._refresh_tags(touched)
            self.on_sync(db, changed | touched, removed, full)
            from .edges import sync_tables  # lineage edges, outputs by md5, memo keys

            memos = sync_tables(db, sorted(changed), removed, full)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('tip', ?)", (tip,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('notes', ?)", (notes,))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        if memos and memo.folder(self.repo).is_dir():
            for key, run_id, started in memos:  # runs recorded elsewhere (pulled, other clones)
                memo.remember(self.repo, key, run_id, started)

    def on_sync(
        self, db: sqlite3.Connection, changed: set[str], removed: set[str], full: bool
    ) -> None:
        """Hook for derived tables, inside the sync transaction: run ids added or changed
        (tags and notes included), removed, and whether everything was rebuilt."""

    def _sync_runs(self, known: str, tip: str) -> tuple[set[str], set[str], bool]:
        db = self.db
        if known and tip and store.is_ancestor(self.repo, known, tip):
            changed, removed = store.changed_runs(self.repo, known, tip)
            commits = run_commits(self.repo, f"{known}..{tip}")
            full = False
        else:
            changed = set(store.list_run_ids(self.repo, rev=tip)) if tip else set()
            removed = set()
            commits = run_commits(self.repo, tip) if tip else {}
            full = True
        if full:
            for name in INDEX_NAMES:
                db.execute(f"DROP INDEX IF EXISTS {name}")
            for table in ("run_fields", "records", "kv", "tags", "members", "shapes"):
                db.execute(f"DELETE FROM {table}")
        else:
            self._delete_runs(removed | changed)
        notes = self._notes_by_run()
        keys = dict(((f, k), i) for i, f, k in db.execute("SELECT key_id, family, key FROM keys"))
        shapes: dict[str, int] = {k: i for i, k in db.execute("SELECT shape, keys FROM shapes")}
        rid = (db.execute("SELECT max(rid) FROM run_fields").fetchone()[0] or 0) + 1
        ids = sorted(changed)
        bar = _progress(len(ids))
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH]
            runs, records = [], []
            kv: list[tuple[int, int, float | None, str]] = []
            tags: list[tuple[str, int]] = []
            members: list[tuple[str, int]] = []
            for row in self._rows(tip, batch, commits):
                record = row["record"]
                tag_list, note = _effective(record, notes.get(row["id"], []))
                member_of = _memberships(record, notes.get(row["id"], []))
                runs.append(
                    (
                        rid,
                        row["id"],
                        record.get("name", ""),
                        row["status"],
                        record.get("command", ""),
                        record.get("experiment", ""),
                        record.get("started"),
                        record.get("finished"),
                        record.get("duration_s"),
                        row["commit"],
                        row["problem"],
                        _timestamp(record.get("started")),
                        _timestamp(record.get("finished")),
                        json.dumps(tag_list),
                        note,
                        record.get("rerun_of") or "",
                        _joined(record, member_of),
                        _exact(record, tag_list, note, member_of),
                        _shape_id(db, shapes, record),
                        str((record.get("code") or {}).get("commit") or ""),
                    )
                )
                records.append((rid, row["json"]))
                kv.extend((rid, _key_id(db, keys, f, k), n, t) for f, k, n, t in kv_rows(record))
                tags.extend((t, rid) for t in tag_list)
                members.extend((e, rid) for e in member_of)
                rid += 1
            db.executemany(
                f"INSERT INTO run_fields ({RUN_COLUMNS}) VALUES ({', '.join('?' * 20)})", runs
            )
            db.executemany("INSERT INTO records VALUES (?, ?)", records)
            db.executemany("INSERT INTO kv VALUES (?, ?, ?, ?)", kv)
            db.executemany("INSERT OR IGNORE INTO tags VALUES (?, ?)", tags)
            db.executemany("INSERT OR IGNORE INTO members VALUES (?, ?)", members)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        if full:
            for stmt in INDEXES_SQL.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute("ANALYZE")  # full statistics (~0.4 s at 100,000 runs): sampled ones mislead
        return changed, removed, full

    def _delete_runs(self, ids: Iterable[str]) -> None:
        db = self.db
        rids = [
            (r[0],)
            for i in ids
            for r in db.execute("SELECT rid FROM run_fields WHERE id = ?", (i,))
        ]
        db.executemany("DELETE FROM kv WHERE run = ?", rids)
        db.executemany("DELETE FROM tags WHERE run = ?", rids)
        db.executemany("DELETE FROM members WHERE run = ?", rids)
        db.executemany("DELETE FROM records WHERE rid = ?", rids)
        db.executemany("DELETE FROM run_fields WHERE rid = ?", rids)

    def _rows(self, tip: str, ids: list[str], commits: dict[str, str]) -> Iterator[dict[str, Any]]:
        revs = [f"{tip}:{run_folder(i)}/run.toml" for i in ids]
        for run_id, (_, data) in zip(ids, self.repo.reader().read_many(revs), strict=True):
            commit = commits.get(run_id, "")
            try:
                if data is None:
                    raise RecordError(run_id, "run.toml is missing")
                record, text = json_record(data, run_id)
            except RecordError as exc:
                yield {
                    "id": run_id,
                    "record": {},
                    "json": None,
                    "status": "unreadable",
                    "commit": commit,
                    "problem": exc.reason,
                }
                continue
            yield {
                "id": run_id,
                "record": record,
                "json": text,
                "status": record.get("status", ""),
                "commit": commit,
                "problem": None,
            }

    # -- notes (tags and notes added after a run) ---------------------------------------

    def _sync_notes(self, known: str, tip: str) -> set[str]:
        """Update the notes table to notes commit `tip`; returns the run ids whose notes changed."""
        from ..model.notes import parse_note

        db = self.db
        changes: dict[str, str | None] = {}  # annotated object -> blob (None: removed)
        touched: set[str] = set()
        if known and tip and self.repo.reader().read(known) is not None:
            proc = self.repo.git("diff-tree", "-r", "--no-renames", "-z", known, tip)
            fields = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
            for meta, path in zip(fields[0::2], fields[1::2], strict=False):
                parts = meta.split()
                if len(parts) >= 5:
                    changes[path.replace("/", "")] = None if parts[4] == "D" else parts[3]
        else:  # first sync, notes ref deleted or rewritten beyond reach: read all notes
            touched = {r[0] for r in db.execute("SELECT run_id FROM notes")}
            db.execute("DELETE FROM notes")
            if tip:
                proc = self.repo.git("ls-tree", "-r", "-z", tip)
                for entry in proc.stdout.decode("utf-8", "surrogateescape").split("\0"):
                    meta, _, path = entry.partition("\t")
                    if path:
                        changes[path.replace("/", "")] = meta.split()[2]
        blobs = [b for b in changes.values() if b]
        contents = dict(self.repo.reader().read_many(blobs)) if blobs else {}
        for obj, blob in changes.items():
            touched.update(
                r[0] for r in db.execute("SELECT run_id FROM notes WHERE object = ?", (obj,))
            )
            db.execute("DELETE FROM notes WHERE object = ?", (obj,))
            data = contents.get(blob) if blob else None
            if data is None:
                continue
            note = parse_note(data)
            run_id = note.run or self._run_of_commit(obj)
            if run_id:
                db.execute(
                    "INSERT INTO notes VALUES (?, ?, ?)",
                    (obj, run_id, data.decode("utf-8", "replace")),
                )
                touched.add(run_id)
        return touched

    def _run_of_commit(self, commit: str) -> str:
        row = self.db.execute(
            "SELECT id FROM run_fields WHERE commit_sha = ?", (commit,)
        ).fetchone()
        if row:
            return str(row[0])
        found = self.repo.reader().read(commit)
        match = re.search(rb"^Run-Id: (\w+)$", found[2], re.M) if found else None
        return match.group(1).decode() if match else ""

    def _notes_by_run(self, run_ids: Iterable[str] | None = None) -> dict[str, list[Any]]:
        from ..model.notes import parse_note

        found: dict[str, list[Any]] = {}
        rows: Iterable[tuple[str, str]]
        if run_ids is None:
            rows = self.db.execute("SELECT run_id, content FROM notes ORDER BY object")
        else:
            ids = list(run_ids)
            rows = (
                r
                for i in ids
                for r in self.db.execute(
                    "SELECT run_id, content FROM notes WHERE run_id = ? ORDER BY object", (i,)
                )
            )
        for run_id, content in rows:
            found.setdefault(run_id, []).append(parse_note(content.encode()))
        return found

    def _refresh_tags(self, run_ids: set[str]) -> None:
        """Recompute the tags, note and experiments of runs whose git notes changed."""
        if not run_ids:
            return
        db = self.db
        notes = self._notes_by_run(run_ids)
        for run_id in run_ids:
            row = db.execute("SELECT rid, record FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                continue
            record = json.loads(row[1]) if row[1] else {}
            tag_list, note = _effective(record, notes.get(run_id, []))
            member_of = _memberships(record, notes.get(run_id, []))
            db.execute(
                "UPDATE run_fields SET tags = ?, note = ?, joined = ?, exact = ? WHERE rid = ?",
                (
                    json.dumps(tag_list),
                    note,
                    _joined(record, member_of),
                    _exact(record, tag_list, note, member_of),
                    row[0],
                ),
            )
            db.execute("DELETE FROM tags WHERE run = ?", (row[0],))
            db.executemany(
                "INSERT OR IGNORE INTO tags VALUES (?, ?)", [(t, row[0]) for t in tag_list]
            )
            db.execute("DELETE FROM members WHERE run = ?", (row[0],))
            db.executemany(
                "INSERT OR IGNORE INTO members VALUES (?, ?)", [(e, row[0]) for e in member_of]
            )

    def note_objects(self, run_id: str) -> list[str]:
        """The commits carrying git notes of a run (normally just its own commit)."""
        self.sync()
        return [
            r[0] for r in self.db.execute("SELECT object FROM notes WHERE run_id = ?", (run_id,))
        ]

    # -- reading ------------------------------------------------------------------------

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Sync, then run a read; a file found corrupt at this point is rebuilt and read again."""
        self.sync()
        try:
            return self.db.execute(sql, list(args)).fetchall()
        except sqlite3.DatabaseError as exc:
            if _busy(exc) or (
                isinstance(exc, sqlite3.OperationalError) and "no such" not in str(exc)
            ):
                raise
            self._discard()
            self.sync()
            return self.db.execute(sql, list(args)).fetchall()

    def ids_with_prefix(self, prefix: str, limit: int = 50) -> list[str]:
        upper = prefix + "\uffff"
        rows = self.query(
            "SELECT id FROM run_fields WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (prefix, upper, limit),
        )
        return [r[0] for r in rows]

    def ids_named(self, name: str) -> list[str]:
        rows = self.query(
            "SELECT id FROM run_fields WHERE name = ? ORDER BY started_ts DESC, id", (name,)
        )
        return [r[0] for r in rows]

    def latest(self) -> str | None:
        rows = self.query("SELECT id FROM run_fields ORDER BY started_ts DESC, id LIMIT 1")
        return rows[0][0] if rows else None

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The indexed row of one run: record (as JSON data), commit and any problem."""
        rows = self.query(
            "SELECT id, record, commit_sha, problem, tags, note, joined FROM runs WHERE id = ?",
            (run_id,),
        )
        return _row(rows[0]) if rows else None

    def select(
        self,
        where_sql: str = "",
        params: Iterable[Any] = (),
        order_sql: str = "runs.started_ts DESC, runs.id",
        limit: int | None = None,
        order_params: Iterable[Any] = (),
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Rows matching an SQL condition (compiled by query.py, never pasted from users).

        The record of each row carries the run's current tags and note (git notes included).
        """
        rids = [
            r[0] for r in self.ordered(where_sql, params, order_sql, limit, order_params, offset)
        ]
        found: dict[int, dict[str, Any]] = {}
        for chunk, marks in chunked(rids):
            for r in self.db.execute(
                "SELECT f.id, r.record, f.commit_sha, f.problem, f.tags, f.note, f.joined, f.rid"
                " FROM run_fields AS f LEFT JOIN records AS r ON r.rid = f.rid"
                f" WHERE f.rid IN ({marks})",
                chunk,
            ):
                found[r[7]] = _row(r)
        return [found[rid] for rid in rids if rid in found]

    def ordered(
        self,
        where_sql: str = "",
        params: Iterable[Any] = (),
        order_sql: str = "runs.started_ts DESC, runs.id",
        limit: int | None = None,
        order_params: Iterable[Any] = (),
        offset: int = 0,
    ) -> list[tuple[int, int | None]]:
        """(rid, shape) of the rows matching an SQL condition, in order: records not read."""
        sql = "SELECT rid, shape FROM run_fields AS runs"  # the view's fields, no records
        args = list(params)
        if where_sql:
            sql += f" WHERE {where_sql}"
        sql += f" ORDER BY {order_sql}"
        args += list(order_params)
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            args += [-1 if limit is None else limit, offset]
        return [(r[0], r[1]) for r in self.query(sql, args)]

    def shape_keys(self, shapes: Iterable[int | None]) -> list[list[str]]:
        """The flat params and metrics keys of each distinct shape, in first-seen order."""
        seen = list(dict.fromkeys(s for s in shapes if s is not None))
        found: dict[int, list[str]] = {}
        for chunk, marks in chunked(seen):
            for shape, keys in self.db.execute(
                f"SELECT shape, keys FROM shapes WHERE shape IN ({marks})", chunk
            ):
                found[shape] = json.loads(keys)
        return [found[s] for s in seen if s in found]

    def json_texts(self, rids: list[int]) -> Iterator[tuple[str, str | None, str | None]]:
        """(id, the row as readers see it in JSON text or None, problem) for each rid, in
        order; a record whose text already is that form (the common case) is not parsed."""
        for chunk, marks in chunked(rids):
            found: dict[int, tuple[Any, ...]] = {}
            for r in self.db.execute(
                "SELECT f.id, r.record, f.commit_sha, f.problem, f.tags, f.note, f.joined,"
                " f.exact, f.rid FROM run_fields AS f LEFT JOIN records AS r ON r.rid = f.rid"
                f" WHERE f.rid IN ({marks})",
                chunk,
            ):
                found[r[8]] = r
            for rid in chunk:
                r = found.get(rid)
                if r is None:
                    continue
                text: str | None = r[1]
                if text and r[7] and text.endswith("}") and len(text) > 2:
                    text = f'{text[:-1]}, "commit": {json.dumps(r[2])}}}'
                elif text:
                    row = _row(r)
                    text = json.dumps(row["record"] | {"commit": r[2]}, ensure_ascii=False)
                yield r[0], text, r[3]

    def cells(
        self, rids: list[int], columns: list[str]
    ) -> Iterator[tuple[str, list[Any] | None, str | None]]:
        """(id, the values of `columns` or None when unreadable, problem) for each rid, in
        order; SQLite's json_extract reads them from the record's text (one parse in C)."""
        from ..model.values import FAMILY_COLUMN, cell

        fields: list[str] = []
        paths: list[str] = []  # per record column: the key as is, and a dotted key as a path
        plan: list[tuple[int, int]] = []  # (how to read it, where) for `_cells`
        plain = True
        for column in columns:
            if column in FIELD_COLUMNS:
                plan.append(({"tags": 2, "note": 3}.get(column, 1), len(fields)))
                fields.append(FIELD_COLUMNS[column])
                continue
            match = FAMILY_COLUMN.match(column)
            family, key = (match.group(1), match.group(2)) if match else ("", column)
            plain = plain and bool(JSON_KEY.fullmatch(key))
            prefix = f"$.{family}" if family else "$"
            plan.append((0 if "." in key else 4, len(paths)))
            paths += [f'{prefix}."{key}"'] + ([f"{prefix}.{key}"] if "." in key else [])
        # two paths or more make json_extract give an array (one gives the bare value)
        extract = ", ".join(f"'{p}'" for p in (paths * 2 if len(paths) == 1 else paths))
        values = (
            # json_valid guards json_extract: a NaN or Infinity is not JSON to SQLite
            f"CASE WHEN json_valid(r.record) THEN json_extract(r.record, {extract}) END"
            if paths and plain
            else "NULL"
        )
        select = ", ".join(["f.id", "f.rid", "f.problem", "r.record IS NOT NULL", values, *fields])
        for chunk, marks in chunked(rids):
            found: dict[int, tuple[Any, ...]] = {}
            for r in self.db.execute(
                f"SELECT {select} FROM run_fields AS f LEFT JOIN records AS r ON r.rid = f.rid"
                f" WHERE f.rid IN ({marks})",
                chunk,
            ):
                found[r[1]] = r
            slow = [
                rid for rid, r in found.items() if r[3] and r[4] is None and (paths or not plain)
            ]
            fallback: dict[int, dict[str, Any]] = {}
            for part, part_marks in chunked(slow):
                for r in self.db.execute(
                    "SELECT f.id, r.record, f.commit_sha, f.problem, f.tags, f.note, f.joined,"
                    " f.rid FROM run_fields AS f LEFT JOIN records AS r ON r.rid = f.rid"
                    f" WHERE f.rid IN ({part_marks})",
                    part,
                ):
                    fallback[r[7]] = _row(r)["record"] | {"commit": r[2]}
            for rid in chunk:
                r = found.get(rid)
                if r is None:
                    continue
                if not r[3]:
                    yield r[0], None, r[2]
                elif rid in fallback:
                    yield r[0], [cell(fallback[rid], c) for c in columns], r[2]
                else:
                    yield r[0], _cells(plan, r[4], r[5:]), r[2]

    def count(self, where_sql: str = "", params: Iterable[Any] = ()) -> int:
        sql = "SELECT count(*) FROM run_fields AS runs" + (
            f" WHERE {where_sql}" if where_sql else ""
        )
        return int(self.query(sql, params)[0][0])

    def keys(self, family: str) -> list[str]:
        """The keys seen in a family (params, metrics, env) across all runs."""
        rows = self.query("SELECT key FROM keys WHERE family = ? ORDER BY key", (family,))
        return [r[0] for r in rows]


def json_record(data: bytes, run_id: str) -> tuple[dict[str, Any], str]:
    """A run.toml checked by `RunRecord`: its one JSON form (`json_data`) and that as text.

    Records of the current schema skip the dataclass round trip (the slow part of a full
    build at 100,000 runs): their TOML tables already are that data, bar datetimes.
    """
    try:
        raw = toml_reader.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, toml_reader.TOMLDecodeError) as exc:
        raise RecordError(run_id, f"invalid TOML or not UTF-8 ({exc})") from exc
    record = RunRecord.from_dict(raw, run_id)
    form = json_data(raw) if raw.get("schema") == SCHEMA else record.to_json_dict()
    return form, json.dumps(form, ensure_ascii=False)


def _row(r: tuple[Any, ...]) -> dict[str, Any]:
    """A row for readers: the record carries the run's current tags and note (git notes
    included) and, when notes add some, `experiments` (every experiment it is a member of);
    `recorded` keeps the tags and note its run.toml holds."""
    record = json.loads(r[1]) if r[1] else None
    recorded: dict[str, Any] = {}
    if record is not None:
        recorded = {"tags": record.get("tags") or [], "note": record.get("note") or ""}
        record["tags"] = json.loads(r[4]) if r[4] else []
        if r[5]:
            record["note"] = r[5]
        else:
            record.pop("note", None)
        if r[6]:
            record["experiments"] = json.loads(r[6])
    return {"id": r[0], "record": record, "commit": r[2], "problem": r[3], "recorded": recorded}


def _cells(
    plan: list[tuple[int, int]], extracted: str | None, fields: tuple[Any, ...]
) -> list[Any]:
    """The values of a row as `cell` gives them, from json_extract's array and the
    run_fields columns, read as `plan` says (see `Index.cells`)."""
    values = json.loads(extracted) if extracted else []
    out: list[Any] = []
    for how, at in plan:
        if how == 4:  # a key without dots
            out.append(values[at])
        elif how == 0:  # a dotted key: as is, else as a path into nested tables
            out.append(values[at] if values[at] is not None else values[at + 1])
        elif how == 1:
            out.append(fields[at])
        elif how == 2:  # tags
            out.append(json.loads(fields[at]) if fields[at] and fields[at] != "[]" else [])
        else:  # note
            out.append(fields[at] or None)
    return out


def _exact(record: dict[str, Any], tags: list[str], note: str, member_of: list[str]) -> int:
    """1 when the record's JSON text already is what readers get, bar the commit: its own
    tags and note are the current ones and no git note adds an experiment."""
    own = [record["experiment"]] if record.get("experiment") else []
    return int(
        "tags" in record
        and record["tags"] == tags
        and (record.get("note") or "") == note
        and (bool(note) or "note" not in record)
        and member_of == own
        and "commit" not in record
    )


def _shape_id(db: sqlite3.Connection, shapes: dict[str, int], record: dict[str, Any]) -> int:
    """The id of the record's column shape: its flat params and metrics keys, in order."""
    keys = json.dumps(
        [
            f"{family}.{k}"
            for family in ("params", "metrics")
            for k in flat(record.get(family) or {})
        ]
    )
    found = shapes.get(keys)
    if found is None:
        cur = db.execute("INSERT INTO shapes (keys) VALUES (?)", (keys,))
        found = shapes[keys] = int(cur.lastrowid or 0)
    return found


def _effective(record: dict[str, Any], notes: list[Any]) -> tuple[list[str], str]:
    from ..model.notes import effective

    if not notes:  # the common case, without importing notes.py
        return list(record.get("tags") or []), record.get("note") or ""
    return effective(record.get("tags") or [], record.get("note") or "", notes)


def _memberships(record: dict[str, Any], notes: list[Any]) -> list[str]:
    """Every experiment a run is a member of: its record's and those its notes add."""
    if not notes:
        return [record["experiment"]] if record.get("experiment") else []
    from ..model.notes import memberships

    return memberships(record.get("experiment") or "", notes)


def _joined(record: dict[str, Any], member_of: list[str]) -> str:
    """The memberships as JSON when notes add some beyond the record's, else ""."""
    own = [record["experiment"]] if record.get("experiment") else []
    return json.dumps(member_of) if member_of != own else ""


def _key_id(db: sqlite3.Connection, keys: dict[tuple[str, str], int], family: str, key: str) -> int:
    found = keys.get((family, key))
    if found is None:
        cur = db.execute("INSERT INTO keys (family, key) VALUES (?, ?)", (family, key))
        found = keys[(family, key)] = int(cur.lastrowid or 0)
    return found


def kv_rows(record: dict[str, Any]) -> Iterator[tuple[str, str, float | None, str]]:
    """(family, key, number or None, text) for each value of params, metrics and env.

    Nested tables become dotted keys; a list gives one row per element (a query matches when
    any element does); numbers, bools (1/0) and strings that read as numbers get a number.
    """
    for family in FAMILIES:
        for name, value in flat(record.get(family) or {}).items():
            for item in value if isinstance(value, list) else [value]:
                if item is None or isinstance(item, dict | list):
                    continue
                yield (family, name, *_num_text(item))


def _num_text(value: Any) -> tuple[float | None, str]:
    if isinstance(value, bool):
        return (1.0 if value else 0.0), ("true" if value else "false")
    if isinstance(value, int):
        return float(value), str(value)
    if isinstance(value, float):
        return (None if math.isnan(value) else value), repr(value)
    text = str(value)
    if NUMBER.fullmatch(text):
        return float(text), text
    return None, text


def _timestamp(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.astimezone()).timestamp()
    from .query import timestamp

    return timestamp(value)


def run_commits(repo: store.Repo, rev_range: str) -> dict[str, str]:
    """{run id: the branch commit that recorded it} from the Run-Id trailers of a range."""
    proc = repo.git("log", "--format=%H %(trailers:key=Run-Id,valueonly,separator=%x20)", rev_range)
    commits: dict[str, str] = {}
    for line in proc.stdout.decode().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            commits.setdefault(parts[1], parts[0])  # newest first: keep the latest commit
    return commits
