"""The lookup table: an SQLite database under .git/gittrack/, synced from the runs branch.

It is never the source of truth: a sync reads only the runs that changed since the tips it
last saw (the runs branch and the notes ref: two ref reads when up to date), and a missing,
corrupt or outdated file is rebuilt (build.py). Params, metrics and env values go into a
key/value table (`kv`) indexed by key and value, so that a query touches only the runs it
matches; this module opens the file, keeps it in step and answers the read API's questions.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, Concatenate, ParamSpec

from .. import store
from ..errors import unwritable_fault
from . import memo
from .sql import chunked
from .tables import INDEX_VERSION, INDEXES_SQL, SCHEMA_SQL, statements

# columns a listing reads straight from run_fields; the rest come from the record's JSON text
FIELD_COLUMNS = {"id": "f.id", "commit": "f.commit_sha", "tags": "f.tags", "note": "f.note"}
JSON_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# CSV cells of run_fields columns as SQLite writes them (`csv_value`): tags joined by commas
CSV_FIELDS = {
    "tags": "CASE WHEN f.tags IS NULL OR f.tags = '[]' THEN ''"
    " ELSE (SELECT group_concat(value, ',') FROM json_each(f.tags)) END",
    "note": "coalesce(f.note, '')",
}
P = ParamSpec("P")
STALE_PART_S = 600  # a first build's private file unchanged this long was left by a killed one
WALK_FIRST = 5000  # runs a limited listing looks up one by one before it lists the matches
ROW_SQL = (
    "SELECT f.id, r.record, f.commit_sha, f.problem, f.tags, f.note, f.joined, f.rid{extra}"
    " FROM run_fields AS f LEFT JOIN records AS r ON r.rid = f.rid WHERE f.rid IN ({marks})"
)


def _with_rows(
    ordered: Callable[Concatenate[Index, P], list[tuple[int, int | None]]],
) -> Callable[Concatenate[Index, P], list[dict[str, Any]]]:
    """`Index.select`: the rows `Index.ordered` finds, records read (one signature for both)."""

    def select(self: Index, /, *args: P.args, **kwargs: P.kwargs) -> list[dict[str, Any]]:
        """Rows matching an SQL condition, in order (see `ordered`); each record carries the
        run's current tags and note (git notes included)."""
        return self.rows([rid for rid, _ in ordered(self, *args, **kwargs)])

    return select


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
                if os.path.exists(self.path):
                    return self._connect()
                with _placing(self.repo, self.path):
                    return self._connect()
            except sqlite3.DatabaseError as exc:
                if attempt or _busy(exc):
                    raise
                self._discard()
        raise AssertionError("unreachable")

    def _connect(self, path: Path | None = None) -> sqlite3.Connection:
        """The database at `self.path` (created when missing), or a private one at `path` for
        a first build, written without a journal (`_build_aside`)."""
        aside = path is not None
        path = path or self.path
        fresh = not os.path.exists(path)
        db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        if fresh:  # SQLite gives its -wal and -shm files the database file's permissions
            self.repo.share(path)
        try:
            if aside:  # no other process sees it before it is complete: nothing to protect
                db.execute("PRAGMA journal_mode=OFF")
                db.execute("PRAGMA synchronous=OFF")
            else:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA cache_size=-32000")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            version = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            if version is None:
                db.execute("BEGIN IMMEDIATE")
                if db.execute("SELECT value FROM meta WHERE key='version'").fetchone() is None:
                    for stmt in statements(SCHEMA_SQL + INDEXES_SQL):
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
        """Bring the table up to the branch and notes tips; rebuilds when the file is unusable.
        A state folder nothing can be written in is a RepoNotWritable."""
        try:
            self._sync_or_rebuild()
        except (sqlite3.Error, OSError) as exc:
            fault = unwritable_fault(exc, str(self.path.parent))
            if fault is None:
                raise
            raise fault from exc

    def _sync_or_rebuild(self) -> None:
        try:
            if self._db is None and not os.path.exists(self.path) and self._build_aside():
                return
            self._sync()
        except sqlite3.DatabaseError as exc:
            if _busy(exc):
                return  # another process is writing it: read the consistent state before it
            self._discard()
            if not self._build_aside():
                self._sync()

    def _build_aside(self) -> bool:
        """A first build (no index file): written into a private file without a journal, then
        linked into place whole, never over a file another process has opened meanwhile
        (that one is kept, and may still be behind: the caller syncs it). True when ours is
        in place; False when there was nothing to build (no runs branch yet) or another's won.

        Without a journal SQLite writes each page once (a WAL would hold the whole database
        a second time until its checkpoint), and a build interrupted leaves no index file.
        """
        tips = self._tips()
        if not tips[0]:
            return False
        self.repo.make_dir(self.repo.state_dir)
        for stale in self.path.parent.glob(f"{self.path.name}.*.part"):  # of a killed build
            with contextlib.suppress(OSError):
                if time.time() - stale.stat().st_mtime > STALE_PART_S:
                    stale.unlink()
        part = self.path.with_name(f"{self.path.name}.{os.getpid()}-{os.urandom(4).hex()}.part")
        try:
            self._db = self._connect(part)
            self._sync_to(tips, None)
            self._db.execute("PRAGMA journal_mode=WAL")  # what every reader opens it in
            self._db.close()
            self._db = None
            fd = os.open(part, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            with _placing(self.repo, self.path):
                placed = _link_new(part, self.path)
        finally:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None
            for suffix in ("", "-journal", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(str(part) + suffix).unlink()
        return placed

    def _tips(self) -> tuple[str, str]:
        current = store.tip(self.repo)
        return (current[0] if current else ""), (store.notes_tip(self.repo) or "")

    def _known(self) -> tuple[str, str]:
        meta = dict(self.db.execute("SELECT key, value FROM meta WHERE key IN ('tip', 'notes')"))
        return meta.get("tip", ""), meta.get("notes", "")

    def _sync(self) -> None:
        tips = self._tips()
        seen = self._known()
        if seen == tips:
            return
        started = None
        if seen[0] and tips[0] and seen[0] != tips[0]:  # the diff runs during what follows
            started = store.RunChanges(self.repo, seen[0], tips[0])
        try:
            self._sync_to(tips, started)
        finally:
            if started is not None:
                started.cancel()

    def _sync_to(self, tips: tuple[str, str], diff: store.RunChanges | None) -> None:
        from . import build, notes_sync

        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            known, known_notes = self._known()  # another process may have synced meanwhile
            tip, notes = tips
            touched: set[str] = set()
            memos: list[tuple[str, str, str]] = []
            if known_notes != notes:
                touched = notes_sync.sync_notes(db, self.repo, known_notes, notes)
            if known != tip:
                changed, _, _, memos = build.sync_runs(db, self.repo, known, tip, diff)
                touched -= changed  # read with their current notes just now
            notes_sync.refresh_tags(db, touched)
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

    def names_near(self, text: str, limit: int = 2000, every: int = 20_000) -> list[str]:
        """Distinct run names worth comparing with `text` (a reference that matched nothing):
        all of them when there are at most `every`, else at most 2 * `limit` whatever the
        history: those sharing the longest start with it that any name has, and the most recent
        names (for a typo in the first letters)."""
        self.sync()
        names = self.db.execute(
            "SELECT DISTINCT name FROM run_fields WHERE name != '' LIMIT ?", (every + 1,)
        ).fetchall()
        if len(names) <= every:
            return [r[0] for r in names]
        found, end = self._sharing_start(text, limit)
        if end < len(text):  # one letter wrong, missing or extra where the names part
            start = text[:end]
            for letter in self._next_letters(start):
                for variant in (start + letter + text[end + 1 :], start + letter + text[end:]):
                    found += self._sharing_start(variant, limit // 20)[0]
            found += self._sharing_start(start + text[end + 1 :], limit // 20)[0]
        recent = self.db.execute(
            "SELECT name FROM run_fields WHERE name != '' ORDER BY started_ts DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return list(dict.fromkeys([*found, *(r[0] for r in recent)]))

    def _sharing_start(self, text: str, limit: int) -> tuple[list[str], int]:
        """Up to `limit` names sharing the longest start with `text` that any name shares, and
        that start's length (each length one indexed range)."""
        for end in range(min(len(text), 64), 0, -1):
            rows = self.db.execute(
                "SELECT DISTINCT name FROM run_fields WHERE name >= ? AND name < ? LIMIT ?",
                (text[:end], text[:end] + "\uffff", limit),
            ).fetchall()
            if rows:
                return [r[0] for r in rows], end
        return [], 0

    def _next_letters(self, start: str, most: int = 64) -> list[str]:
        """The letters names go on with after `start`, each found by one indexed lookup."""
        letters: list[str] = []
        after = start
        while len(letters) < most:
            row = self.db.execute(
                "SELECT MIN(name) FROM run_fields WHERE name > ? AND name < ?",
                (after, start + "\uffff"),
            ).fetchone()
            if not row or row[0] is None or len(row[0]) <= len(start):
                break
            letters.append(row[0][len(start)])
            after = start + letters[-1] + "\uffff"
        return letters

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

    def ordered(
        self,
        where_sql: str = "",
        params: Iterable[Any] = (),
        order_sql: str = "runs.started_ts DESC, runs.id",
        limit: int | None = None,
        order_params: Iterable[Any] = (),
        offset: int = 0,
        walk: tuple[str, list[Any]] | None = None,
    ) -> list[tuple[int, int | None]]:
        """(rid, shape) of the rows matching an SQL condition (compiled by compiler.py, never
        pasted from users), in order: records not read.

        `walk`, the same condition compiled to look each run up (`compile_where(probe=True)`),
        is tried first on the first WALK_FIRST runs in order: a limit the matches among them
        fill is answered without listing every matching run; fewer matches take the lists.
        """
        if walk is not None and limit is not None and walk[0]:
            # the walk (a co-routine, in order) stops at the first offset + limit matches
            hits = self.query(
                f"SELECT rid, shape FROM (SELECT rid, shape, ({walk[0]}) AS hit"
                f" FROM run_fields AS runs ORDER BY {order_sql} LIMIT ?) WHERE hit LIMIT ?",
                [*walk[1], *order_params, WALK_FIRST, offset + limit],
            )
            if len(hits) == offset + limit:
                return [(r[0], r[1]) for r in hits[offset:]]
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

    def rows(self, rids: list[int]) -> list[dict[str, Any]]:
        """The rows of `rids`, in order: each record carries the run's current tags and note
        (git notes included)."""
        found: dict[int, dict[str, Any]] = {}
        for chunk, marks in chunked(rids):
            for r in self.db.execute(ROW_SQL.format(extra="", marks=marks), chunk):
                found[r[7]] = _row(r)
        return [found[rid] for rid in rids if rid in found]

    select = _with_rows(ordered)

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
            for r in self.db.execute(ROW_SQL.format(extra=", f.exact", marks=marks), chunk):
                found[r[7]] = r
            for rid in chunk:
                r = found.get(rid)
                if r is None:
                    continue
                text: str | None = r[1]
                if text and r[8] and text.endswith("}") and len(text) > 2:
                    text = f'{text[:-1]},"commit":{json.dumps(r[2])}}}'
                elif text:
                    row = _row(r)
                    text = json.dumps(
                        row["record"] | {"commit": r[2]}, ensure_ascii=False, separators=(",", ":")
                    )
                yield r[0], text, r[3]

    def cells(
        self, rids: list[int], columns: list[str], *, as_csv: bool = False
    ) -> Iterator[tuple[str, Sequence[Any] | None, str | None]]:
        """(id, the values of `columns` or None when unreadable, problem) for each rid, in
        order; SQLite's json_extract reads them from the record's text (one parse in C).

        `as_csv` gives each value as a CSV cell (`csv_value`). Then the rows whose values are
        all text, numbers or null (no list, table or bool: the common case) skip the work
        per value: their values parsed and their cells picked in C.
        """
        from ..model.values import FAMILY_COLUMN, cell, csv_value

        fields: list[str] = []
        paths: list[str] = []  # per record column: the key as is, and a dotted key as a path
        plan: list[tuple[int, int]] = []  # (how to read it, where) for `_cells`
        plain = True
        for column in columns:
            if column in FIELD_COLUMNS:
                sql = FIELD_COLUMNS[column]
                how = {"tags": 2, "note": 3}.get(column, 1)
                if as_csv:  # SQLite writes the cell: tags joined by commas, no note as ""
                    sql, how = CSV_FIELDS.get(column, sql), 1
                plan.append((how, len(fields)))
                fields.append(sql)
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
        # a quick row's cells: picked from [*its JSON values, *its run_fields cells]
        count = len(paths) if paths and plain else 0
        quick_plan = as_csv and all(how != 0 for how, _ in plan)  # no dotted keys
        picks = [at if how == 4 else count + at for how, at in plan]
        pick = itemgetter(*picks) if len(picks) > 1 else (lambda got: (got[picks[0]],))
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
                for r in self.db.execute(ROW_SQL.format(extra="", marks=part_marks), part):
                    fallback[r[7]] = _row(r)["record"] | {"commit": r[2]}
            quick: dict[int, Sequence[Any]] = {}
            if quick_plan:
                ready = [
                    rid
                    for rid, r in found.items()
                    if r[3] and rid not in fallback and _scalars_only(r[4])
                ]
                for rid in ready:
                    r = found[rid]
                    got = json.loads(r[4])[:count] if count else []  # one path is asked twice
                    got.extend(r[5:])
                    quick[rid] = pick(got)
            for rid in chunk:
                r = found.get(rid)
                if r is None:
                    continue
                if not r[3]:
                    yield r[0], None, r[2]
                elif rid in quick:
                    yield r[0], quick[rid], r[2]
                elif rid in fallback:
                    got = [cell(fallback[rid], c) for c in columns]
                    yield r[0], [csv_value(v) for v in got] if as_csv else got, r[2]
                elif as_csv:
                    yield r[0], [csv_value(v) for v in _cells(plan, r[4], r[5:])], r[2]
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


@contextlib.contextmanager
def _placing(repo: store.Repo, path: Path) -> Iterator[None]:
    """Hold the lock under which an index file is created or linked into place, having
    removed the -wal and -shm of a file deleted meanwhile (a process that died holding it, or
    a user who deleted it): SQLite would replay that stale journal onto the new file. Under
    the lock no legitimate one can exist yet: they are made only once the file is there."""
    fd = repo.open_lock(path.with_name(path.name + ".flock"))
    try:
        with contextlib.suppress(OSError):  # a filesystem without flock: placed unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        if not os.path.exists(path):
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(str(path) + suffix).unlink()
        yield
    finally:
        os.close(fd)


def _link_new(built: Path, path: Path) -> bool:
    """Put the file `built` at `path` unless a file is there already (another process's:
    replacing it under its readers would pair their -wal and -shm files with ours); whether
    it was put there."""
    try:
        os.link(built, path)
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links: a rename, checked just before
        if os.path.exists(path):
            return False
        os.replace(built, path)
    with contextlib.suppress(OSError):  # the new name lasts a crash
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return True


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


def _scalars_only(extracted: str | None) -> bool:
    """Whether json_extract's array of values (or none) holds no list, table or bool, which a
    CSV cell writes otherwise than as is; a string holding one of these takes the longer way."""
    return extracted is None or (
        extracted.find("[", 1) < 0
        and "{" not in extracted
        and "true" not in extracted
        and "false" not in extracted
    )


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
