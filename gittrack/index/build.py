"""Building and syncing the lookup table's rows from the runs branch (inside a transaction).

A full build reads every record in one stream from git (`gitread`), turns each into its rows
(`rows.prepare`) and inserts them in batches, with the secondary indexes dropped until the end;
from 20,000 runs on, worker processes read and decode the records and send their rows
back (`workers`). A sync reads only the runs changed since the tip it last saw. Lineage edges,
outputs by md5 and memo keys (`edges`) are derived from the same parsed records in the same
pass.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from .. import store
from ..model.record import run_folder
from . import edges, gitread, rows, workers
from .notes_sync import note_texts, notes_by_run
from .sql import chunked
from .tables import INDEX_NAMES, INDEXES_SQL, TABLES, statements

BATCH = 5000  # runs inserted at a time: bounds memory during a full build
PARALLEL_MIN_RUNS = 20_000  # a build reading more runs decodes them in worker processes
CHUNK = 1000  # runs sent to a worker at a time
PROGRESS_MIN_RUNS = 2000  # a build reading more runs shows a progress bar on a terminal
# distinct values a loader remembers, of one key and in all (bounds its memory: a metric's
# values are mostly all different, and a history may have many keys); a value seen again past
# them may be stored twice, which queries cannot tell
MEMO_VALUES = 4096
MEMO_TOTAL = 1 << 18
INSERT_RUN = f"INSERT INTO run_fields (rid, shape, {rows.FIELDS}) VALUES ({', '.join('?' * 20)})"


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
    started: store.RunChanges | None = None,
) -> tuple[set[str], set[str], bool, list[tuple[str, str, str]]]:
    """Bring the run tables (and the lineage tables) from branch commit `known` to `tip`
    (`started`: their diff, when already under way).

    Returns (changed run ids, removed run ids, whether everything was rebuilt, the memo keys
    of the completed runs read).
    """
    bare: list[str] = []
    blobs: dict[str, str]
    if known and tip and store.is_ancestor(repo, known, tip):
        blobs = {}
        others: set[str] = set()
        changed_ids, removed = store.changed_runs(repo, known, tip, blobs, started, others)
        blobs = {i: blobs.get(i) or _record_rev(repo, tip, i) for i in sorted(changed_ids)}
        bare, removed = _bare_folders(repo, tip, (others | removed) - changed_ids, removed)
        rev_range, full = f"{known}..{tip}", False
        delete_runs(db, removed | blobs.keys() | set(bare))
    else:
        blobs = {}
        folders = store.list_run_ids(repo, rev=tip, blobs=blobs) if tip else []
        bare = [i for i in folders if i not in blobs]
        removed, rev_range, full = set(), tip, True
        for name in INDEX_NAMES:
            db.execute(f"DROP INDEX IF EXISTS {name}")
        for table in TABLES:
            db.execute(f"DELETE FROM {table}")
    lineage = edges.Derived(db, full)
    lineage.forget(sorted(blobs.keys() | set(bare) | removed))
    total = len(blobs) + len(bare)
    pool = workers.count() if total >= PARALLEL_MIN_RUNS else 0
    notes = notes_by_run(db) if full else notes_by_run(db, sorted(blobs))
    loader = Loader(db, notes, lineage, total, look_up=not full)
    bar = progress(loader.total)
    changed: set[str] = set()
    if (blobs or bare) and pool > 1:
        with _no_gc():
            listed = gitread.ordered(repo, blobs, rev_range, bare)
            texts = note_texts(db, list(notes)) if notes else {}
            chunks = workers.chunked(listed, loader.rid, texts, CHUNK)
            with (
                workers.Pool(pool) as decoders,
                contextlib.closing(decoders.decode(chunks, repo.root)) as got,
            ):
                for chunk, found_rows in got:
                    loader.take_chunk(chunk, found_rows)
                    changed.update(item[0] for item in chunk[1])
                    if bar is not None:
                        bar.update(len(chunk[1]))
    elif blobs or bare:
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


def _record_rev(repo: store.Repo, tip: str, run_id: str) -> str:
    """Where a changed run's run.toml is on `tip`, when the diff did not name its blob."""
    folder = store.find_run_folder(repo, run_id, tip) or run_folder(run_id)
    return f"{tip}:{folder}/run.toml"


def _bare_folders(
    repo: store.Repo, tip: str, ids: set[str], removed: set[str]
) -> tuple[list[str], set[str]]:
    """(the folders of `ids` on `tip` without a run.toml, the runs removed): of the folders
    where only other files changed or run.toml went, as a full build lists them (a folder
    without run.toml is an unreadable run; an emptied one is gone)."""
    if not ids:
        return [], removed
    with_toml: dict[str, str] = {}
    present = set(store.run_folders(repo, ids, tip, with_toml))
    bare = sorted(present - with_toml.keys())
    return bare, (removed | (ids - present)) - present


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """No cyclic garbage collection while the rows of a big build stream through (plain values
    making no reference cycles: the collector would only walk them, again and again)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def delete_runs(db: sqlite3.Connection, ids: Iterable[str]) -> None:
    """Remove runs from the run tables (their lineage rows go with `edges.Derived.forget`)."""
    rids = []
    for chunk, marks in chunked(sorted(ids)):
        rids += db.execute(f"SELECT rid FROM run_fields WHERE id IN ({marks})", chunk).fetchall()
    if not rids:
        return
    db.executemany("DELETE FROM run_vals WHERE run = ?", rids)
    db.executemany("DELETE FROM tags WHERE run = ?", rids)
    db.executemany("DELETE FROM members WHERE run = ?", rids)
    db.executemany("DELETE FROM records WHERE rid = ?", rids)
    db.executemany("DELETE FROM run_fields WHERE rid = ?", rids)


class Loader:
    """Takes the rows of each run (`rows.prepare`), gives them their ids and inserts them a
    batch at a time.

    Runs come newest first (git log's order) and get their rids oldest first, so that rids
    follow the order runs were recorded in: each batch is written in reverse, in rid order.
    Key, value and shape ids are given in the order runs come, whichever process decoded
    them. `look_up`: a value not seen yet in this load is looked up in the table (a sync; a
    full build starts from none).
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        notes: dict[str, list[Any]],
        lineage: edges.Derived,
        total: int,
        look_up: bool = False,
    ) -> None:
        self.db = db
        self.look_up = look_up
        self.notes = notes
        self.lineage = lineage
        self.keys: dict[tuple[str, str], int] = {
            (f, k): i for i, f, k in db.execute("SELECT key_id, family, key FROM keys")
        }
        self.shapes: dict[str, int] = {
            k: i for i, k in db.execute("SELECT shape, keys FROM shapes")
        }
        self.key_ids: dict[tuple[tuple[str, str], ...], tuple[int, ...]] = {}
        self.memo = rows.Shapes()
        self.next_key = max(self.keys.values(), default=0) + 1
        self.next_shape = max(self.shapes.values(), default=0) + 1
        self.vals: dict[tuple[int, float | None, str], str] = {}
        self.remembered: dict[int, int] = {}  # values in `vals` by key id
        self.next_val = (db.execute("SELECT max(val) FROM vals").fetchone()[0] or 0) + 1
        self.new_vals: list[tuple[int, int, float | None, str]] = []
        self.total = total
        self.rid = (db.execute("SELECT max(rid) FROM run_fields").fetchone()[0] or 0) + total
        self.runs: list[tuple[Any, ...]] = []
        self.texts: list[tuple[int, str | None]] = []
        self.kv: list[tuple[int, tuple[int, ...], tuple[float | None, ...], tuple[str, ...]]] = []
        self.tags: list[tuple[str, int]] = []
        self.members: list[tuple[str, int]] = []
        self.new_keys: list[tuple[int, str, str]] = []
        self.new_shapes: list[tuple[int, str]] = []

    def add(self, run_id: str, commit: str, data: bytes | int | None) -> None:
        """Queue the rows of one run (an unreadable record gives a row with its problem)."""
        self.take(rows.prepare(run_id, commit, data, self.notes.get(run_id), self.memo))

    def take(self, prepared: rows.Prepared) -> None:
        """Queue the rows of one run decoded by `rows.prepare` (here or in a worker)."""
        fields, text, shape_keys, names, nums, values, tag_list, member_of, e, o, m = prepared
        rid = self.rid
        self.rid -= 1
        self.runs.append((rid, self._shape_id(shape_keys), *fields))
        self.texts.append((rid, text))
        ids = self.key_ids.get(names)
        if ids is None:
            ids = self.key_ids[names] = tuple(self._key_id(f, k) for f, k in names)
        if ids:
            self.kv.append((rid, ids, nums, values))
        if tag_list:
            self.tags.extend((t, rid) for t in tag_list)
        if member_of:
            self.members.extend((x, rid) for x in member_of)
        if text is not None:
            self.lineage.add_rows(e, o, m)
        if len(self.runs) >= BATCH:
            self.flush()

    def take_chunk(self, chunk: workers.Chunk, found: list[rows.Prepared]) -> None:
        """Queue the rows of a chunk decoded by a worker (`workers.rows_of`), in its order."""
        for prepared in found:
            self.take(prepared)

    def _shape_id(self, keys: str) -> int:
        shape = self.shapes.get(keys)
        if shape is None:
            shape = self.shapes[keys] = self.next_shape
            self.next_shape += 1
            self.new_shapes.append((shape, keys))
        return shape

    def _new_ids(self) -> None:
        """Insert the keys and shapes given ids since the last time."""
        self.db.executemany(
            "INSERT INTO keys (key_id, family, key) VALUES (?, ?, ?)", self.new_keys
        )
        self.db.executemany("INSERT INTO shapes (shape, keys) VALUES (?, ?)", self.new_shapes)
        self.new_keys.clear()
        self.new_shapes.clear()

    def _key_id(self, family: str, name: str) -> int:
        key_id = self.keys.get((family, name))
        if key_id is None:
            key_id = self.keys[(family, name)] = self.next_key
            self.next_key += 1
            self.new_keys.append((key_id, family, name))
        return key_id

    def _val(self, key_id: int, num: float | None, text: str) -> str:
        """The id of a value of a key as text (how `flush` writes it), given it when new (see
        MEMO_VALUES and MEMO_TOTAL)."""
        value = (key_id, num, text)
        known = self.vals.get(value)
        if known is not None:
            return known
        val = None
        if self.look_up:
            row = self.db.execute(
                "SELECT val FROM vals WHERE key_id = ? AND num IS ? AND text = ? LIMIT 1", value
            ).fetchone()
            val = row[0] if row else None
        if val is None:
            val = self.next_val
            self.next_val += 1
            self.new_vals.append((val, *value))
        if len(self.vals) >= MEMO_TOTAL:  # start again: the values met often come back first
            self.vals.clear()
            self.remembered.clear()
        held = self.remembered.get(key_id, 0)
        if held < MEMO_VALUES:
            self.vals[value] = str(val)
            self.remembered[key_id] = held + 1
        return str(val)

    def flush(self) -> None:
        """Insert the queued rows."""
        db = self.db
        self._new_ids()
        db.executemany(INSERT_RUN, reversed(self.runs))
        db.executemany("INSERT INTO records VALUES (?, ?)", reversed(self.texts))
        known, val = self.vals.get, self._val
        # a run's value ids as one JSON list: a row a run to bind, not one a value; zip gives
        # the (key id, number, text) keys of `vals` as they are
        lists = [
            (
                rid,
                f"[{','.join([known(v) or val(*v) for v in zip(ids, nums, texts, strict=False)])}]",
            )
            for rid, ids, nums, texts in reversed(self.kv)
        ]
        db.executemany("INSERT INTO vals VALUES (?, ?, ?, ?)", self.new_vals)
        db.executemany("INSERT OR IGNORE INTO run_vals SELECT ?, value FROM json_each(?)", lists)
        self.new_vals.clear()
        db.executemany("INSERT OR IGNORE INTO tags VALUES (?, ?)", self.tags)
        db.executemany("INSERT OR IGNORE INTO members VALUES (?, ?)", self.members)
        for queued in (self.runs, self.texts, self.kv, self.tags, self.members):
            queued.clear()
        self.lineage.flush()
