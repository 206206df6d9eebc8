"""Building and syncing the lookup table's rows from the runs branch (inside a transaction).

A full build reads every record in one stream from git (`gitread`), turns each into its rows
(`records`) and inserts them in batches, with the secondary indexes dropped until the end; a
sync reads only the runs changed since the tip it last saw. Lineage edges, outputs by md5 and
memo keys (`edges`) are derived from the same parsed records in the same pass.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import sys
from collections.abc import Iterable
from typing import Any

from .. import store
from ..errors import RecordError
from ..model.record import run_folder
from ..model.values import FAMILIES, flat
from . import edges, gitread, records
from .notes_sync import notes_by_run
from .records import effective, exact, iso, joined, memberships
from .tables import INDEX_NAMES, INDEXES_SQL, RUN_COLUMNS, TABLES, statements

BATCH = 5000  # runs inserted at a time: bounds memory during a full build
PROGRESS_MIN_RUNS = 2000  # a build reading more runs shows a progress bar on a terminal
INSERT_RUN = f"INSERT INTO run_fields ({RUN_COLUMNS}) VALUES ({', '.join('?' * 20)})"


def progress(runs: int) -> Any:
    """A progress bar on stderr for reading many runs, when stderr is a terminal (else None)."""
    if runs <= PROGRESS_MIN_RUNS or not sys.stderr.isatty():
        return None
    if os.environ.get("GITTRACK_VERBOSITY", "").strip().startswith("-"):  # gittrack -q
        return None
    from tqdm import tqdm

    return tqdm(total=runs, unit="run", desc="indexing runs", file=sys.stderr, leave=False)


def sync_runs(
    db: sqlite3.Connection,
    repo: store.Repo,
    known: str,
    tip: str,
) -> tuple[set[str], set[str], bool, list[tuple[str, str, str]]]:
    """Bring the run tables (and the lineage tables) from branch commit `known` to `tip`.

    Returns (changed run ids, removed run ids, whether everything was rebuilt, the memo keys
    of the completed runs read).
    """
    bare: list[str] = []
    blobs: dict[str, str]
    if known and tip and store.is_ancestor(repo, known, tip):
        changed_ids, removed = store.changed_runs(repo, known, tip)
        blobs = {i: f"{tip}:{run_folder(i)}/run.toml" for i in sorted(changed_ids)}
        rev_range, full = f"{known}..{tip}", False
        delete_runs(db, removed | blobs.keys())
    else:
        blobs = {}
        folders = store.list_run_ids(repo, rev=tip, blobs=blobs) if tip else []
        bare = [i for i in folders if i not in blobs]
        removed, rev_range, full = set(), tip, True
        for name in INDEX_NAMES:
            db.execute(f"DROP INDEX IF EXISTS {name}")
        for table in TABLES:
            db.execute(f"DELETE FROM {table}")
    notes = notes_by_run(db) if full else notes_by_run(db, sorted(blobs))
    lineage = edges.Derived(db, full)
    lineage.forget(sorted(blobs.keys() | set(bare) | removed))
    loader = Loader(db, notes, lineage, len(blobs) + len(bare))
    bar = progress(loader.total)
    changed: set[str] = set()
    if blobs or bare:
        for run_id, commit, data in gitread.read_runs(repo, blobs, rev_range, bare):
            loader.add(run_id, commit, data)
            changed.add(run_id)
            if bar is not None and len(changed) % 1000 == 0:
                bar.update(1000)
    loader.flush()
    memos = lineage.finish()
    if bar is not None:
        bar.close()
    if full:
        for stmt in statements(INDEXES_SQL):
            db.execute(stmt)
        db.execute("ANALYZE")  # full statistics (~0.4 s at 100,000 runs): sampled ones mislead
    return changed, removed, full, memos


def delete_runs(db: sqlite3.Connection, ids: Iterable[str]) -> None:
    """Remove runs from the run tables (their lineage rows go with `edges.Derived.forget`)."""
    rids = [
        (r[0],) for i in ids for r in db.execute("SELECT rid FROM run_fields WHERE id = ?", (i,))
    ]
    db.executemany("DELETE FROM kv WHERE run = ?", rids)
    db.executemany("DELETE FROM tags WHERE run = ?", rids)
    db.executemany("DELETE FROM members WHERE run = ?", rids)
    db.executemany("DELETE FROM records WHERE rid = ?", rids)
    db.executemany("DELETE FROM run_fields WHERE rid = ?", rids)


class Loader:
    """Turns records into rows of every run table and inserts them a batch at a time.

    Runs come newest first (git log's order) and get their rids oldest first, so that rids
    follow the order runs were recorded in: each batch is written in reverse, in rid order.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        notes: dict[str, list[Any]],
        lineage: edges.Derived,
        total: int,
    ) -> None:
        self.db = db
        self.notes = notes
        self.lineage = lineage
        self.keys: dict[tuple[str, str], int] = {
            (f, k): i for i, f, k in db.execute("SELECT key_id, family, key FROM keys")
        }
        self.shapes: dict[str, int] = {
            k: i for i, k in db.execute("SELECT shape, keys FROM shapes")
        }
        self.shape_of: dict[tuple[Any, ...], int] = {}
        self.next_key = max(self.keys.values(), default=0) + 1
        self.next_shape = max(self.shapes.values(), default=0) + 1
        self.total = total
        self.rid = (db.execute("SELECT max(rid) FROM run_fields").fetchone()[0] or 0) + total
        self.runs: list[tuple[Any, ...]] = []
        self.texts: list[tuple[int, str | None]] = []
        self.kv: list[list[tuple[int, int, float | None, str]]] = []  # one list a run
        self.tags: list[tuple[str, int]] = []
        self.members: list[tuple[str, int]] = []
        self.new_keys: list[tuple[int, str, str]] = []
        self.new_shapes: list[tuple[int, str]] = []

    def add(self, run_id: str, commit: str, data: bytes | None) -> None:
        """Queue the rows of one run (an unreadable record gives a row with its problem)."""
        rid = self.rid
        self.rid -= 1
        problem = None
        try:
            if data is None:
                raise RecordError(run_id, "run.toml is missing")
            record, text = records.decode(data, run_id)
        except RecordError as exc:
            record, text, problem = {}, None, exc.reason
        notes = self.notes.get(run_id)
        tag_list, note = effective(record, notes)
        member_of = memberships(record, notes)
        started, finished = record.get("started"), record.get("finished")
        self.runs.append(
            (
                rid,
                run_id,
                record.get("name", ""),
                record.get("status", "") if problem is None else "unreadable",
                record.get("command", ""),
                record.get("experiment", ""),
                iso(started),
                iso(finished),
                record.get("duration_s"),
                commit,
                problem,
                timestamp(started),
                timestamp(finished),
                json.dumps(tag_list) if tag_list else "[]",
                note,
                record.get("rerun_of") or "",
                joined(record, member_of),
                exact(record, tag_list, note, member_of),
                self._shape(record),
                str((record.get("code") or {}).get("commit") or ""),
            )
        )
        self.texts.append((rid, text))
        key_ids = self.keys
        kv: list[tuple[int, int, float | None, str]] = []
        self.kv.append(kv)
        for family in FAMILIES:
            table = record.get(family)
            if not table:
                continue
            for name, num, value in records.family_values(table):
                key_id = key_ids.get((family, name))
                if key_id is None:
                    key_id = key_ids[(family, name)] = self.next_key
                    self.next_key += 1
                    self.new_keys.append((key_id, family, name))
                kv.append((rid, key_id, num, value))
        self.tags.extend((t, rid) for t in tag_list)
        self.members.extend((e, rid) for e in member_of)
        if text is not None:
            self.lineage.add(run_id, record)
        if len(self.runs) >= BATCH:
            self.flush()

    def _shape(self, record: dict[str, Any]) -> int:
        """The id of the record's column shape: its flat params and metrics keys, in order."""
        params, metrics = record.get("params") or {}, record.get("metrics") or {}
        nested = any(type(v) is dict for v in (*params.values(), *metrics.values()))
        signature = (*params, None, *metrics)
        found = None if nested else self.shape_of.get(signature)
        if found is not None:
            return found
        keys = json.dumps(
            [
                f"{family}.{k}"
                for family, table in (("params", params), ("metrics", metrics))
                for k in flat(table)
            ]
        )
        found = self.shapes.get(keys)
        if found is None:
            found = self.shapes[keys] = self.next_shape
            self.next_shape += 1
            self.new_shapes.append((found, keys))
        if not nested:
            self.shape_of[signature] = found  # flat tables: the keys alone give the shape
        return found

    def flush(self) -> None:
        """Insert the queued rows."""
        db = self.db
        db.executemany("INSERT INTO keys (key_id, family, key) VALUES (?, ?, ?)", self.new_keys)
        db.executemany("INSERT INTO shapes (shape, keys) VALUES (?, ?)", self.new_shapes)
        db.executemany(INSERT_RUN, reversed(self.runs))
        db.executemany("INSERT INTO records VALUES (?, ?)", reversed(self.texts))
        db.executemany(
            "INSERT OR IGNORE INTO kv VALUES (?, ?, ?, ?)",
            itertools.chain.from_iterable(reversed(self.kv)),
        )
        db.executemany("INSERT OR IGNORE INTO tags VALUES (?, ?)", self.tags)
        db.executemany("INSERT OR IGNORE INTO members VALUES (?, ?)", self.members)
        for rows in (self.runs, self.texts, self.kv, self.tags, self.members):
            rows.clear()
        self.new_keys.clear()
        self.new_shapes.clear()
        self.lineage.flush()


def timestamp(value: Any) -> float | None:
    """Epoch seconds of a record's time (a TOML datetime or ISO 8601 text), None when absent."""
    import datetime as dt

    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.astimezone()).timestamp()
    from .dates import timestamp as from_text

    return from_text(value)
