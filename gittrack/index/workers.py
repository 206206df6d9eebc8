"""Decoding the records of a big build on every core: worker processes fed chunks of the stream.

The one process that writes the database reads the records from git and sends them, a chunk at
a time, to worker processes (`python -m gittrack.index.workers`: nothing of the caller's main
module is run again, as multiprocessing's spawn would). A worker parses and checks them
(`rows.prepare`) and sends back their rows as a small SQLite database image, which the writer
copies into the index in SQL (`build.Loader.take_chunk`): no row goes through Python twice.
Chunks are taken in the order they were sent, and rids, key and shape ids are given by the
writer in that order, so the rows are those of a build on one core. A worker that cannot start
or dies costs only speed: its chunks are decoded in-process.
"""

from __future__ import annotations

import contextlib
import itertools
import marshal
import os
import queue
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .rows import FIELDS, Shapes, prepare

Item = tuple[str, str, bytes | int | None]  # (run id, commit, run.toml: bytes, None, size)
# (rid of the first run, the items, the texts of their runs' git notes)
Chunk = tuple[int, list[Item], dict[str, list[str]]]
HEADER = 8  # bytes of the length before each message
MAX_MESSAGE = 1 << 30  # a chunk of a thousand records is a few MiB
COMMAND = [sys.executable, "-m", "gittrack.index.workers"]

# the tables of a chunk's image: the index's own columns, without keys or constraints, and
# local key and shape ids (numbered in first-seen order) that the writer maps to its own
CHUNK_SQL = f"""
CREATE TABLE run_fields (rid INTEGER PRIMARY KEY, shape INTEGER, {FIELDS});
CREATE TABLE records (rid INTEGER PRIMARY KEY, record TEXT);
CREATE TABLE kv (run INTEGER, key INTEGER, num REAL, text TEXT);
CREATE TABLE keys (local INTEGER PRIMARY KEY, family TEXT, key TEXT);
CREATE TABLE shapes (local INTEGER PRIMARY KEY, keys TEXT);
CREATE TABLE tags (tag TEXT, run INTEGER);
CREATE TABLE members (experiment TEXT, run INTEGER);
CREATE TABLE lineage_edges (child TEXT, parent TEXT, kind TEXT, output TEXT, md5 TEXT,
    commit_sha TEXT);
CREATE TABLE lineage_outputs (md5 TEXT, size INTEGER, run TEXT, name TEXT, started TEXT);
CREATE TABLE lineage_memo (key TEXT, run TEXT, started TEXT);
"""
FIELD_TYPES = (
    "id TEXT, name TEXT, status TEXT, command TEXT, experiment TEXT, started TEXT, finished TEXT, "
    "duration_s REAL, commit_sha TEXT, problem TEXT, started_ts REAL, finished_ts REAL, "
    "tags TEXT, note TEXT, rerun_of TEXT, joined TEXT, exact INTEGER, code_commit TEXT"
)
CHUNK_SQL = CHUNK_SQL.replace(f"shape INTEGER, {FIELDS})", f"shape INTEGER, {FIELD_TYPES})")


def count() -> int:
    """How many worker processes a big build uses: the cores this process may run on, up to 4,
    none when the load average says they are all busy (workers on busy cores only add their
    own cost). GITTRACK_INDEX_WORKERS sets it (0 or 1: in-process); none when this is not a
    Python executable that can start them."""
    setting = os.environ.get("GITTRACK_INDEX_WORKERS", "").strip()
    if setting.isdigit():
        return int(setting)
    if not Path(sys.executable or "-").name.lower().startswith(("python", "pypy")):
        return 0  # embedded (an application's own executable): decode in-process
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS
        cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] >= cores
    except (AttributeError, OSError):  # pragma: no cover - Windows
        busy = False
    return 0 if busy else min(cores, 4)


def chunk_image(chunk: Chunk, shapes: Shapes) -> bytes:
    """The rows of every run of a chunk as an SQLite database image (what a worker does, and
    the fallback in-process)."""
    rid, items, texts = chunk
    notes = _parsed(texts)
    runs, records, tags, members = [], [], [], []
    kv: list[list[tuple[int, int, float | None, str]]] = []  # a list a run
    edges, outputs, memos = [], [], []
    keys: dict[tuple[str, str], int] = {}
    shape_ids: dict[str, int] = {}
    for run_id, commit, data in items:
        fields, text, shape_keys, names, nums, values, tag_list, member_of, e, o, m = prepare(
            run_id, commit, data, notes.get(run_id), shapes
        )
        shape = shape_ids.setdefault(shape_keys, len(shape_ids) + 1)
        runs.append((rid, shape, *fields))
        records.append((rid, text))
        ids = [keys.setdefault(name, len(keys) + 1) for name in names]
        kv.append(list(zip(itertools.repeat(rid), ids, nums, values)))
        tags += [(t, rid) for t in tag_list]
        members += [(x, rid) for x in member_of]
        if text is not None:
            edges += e
            outputs += o
            if m is not None:
                memos.append(m)
        rid -= 1
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(CHUNK_SQL)
        marks = ", ".join("?" * 20)
        db.executemany(f"INSERT INTO run_fields VALUES ({marks})", reversed(runs))
        db.executemany("INSERT INTO records VALUES (?, ?)", reversed(records))
        db.executemany("INSERT INTO kv VALUES (?, ?, ?, ?)", itertools.chain(*reversed(kv)))
        db.executemany(
            "INSERT INTO keys VALUES (?, ?, ?)", [(i, f, k) for (f, k), i in keys.items()]
        )
        db.executemany("INSERT INTO shapes VALUES (?, ?)", [(i, k) for k, i in shape_ids.items()])
        db.executemany("INSERT INTO tags VALUES (?, ?)", tags)
        db.executemany("INSERT INTO members VALUES (?, ?)", members)
        db.executemany("INSERT INTO lineage_edges VALUES (?, ?, ?, ?, ?, ?)", edges)
        db.executemany("INSERT INTO lineage_outputs VALUES (?, ?, ?, ?, ?)", outputs)
        db.executemany("INSERT INTO lineage_memo VALUES (?, ?, ?)", memos)
        db.commit()
        return db.serialize()
    finally:
        db.close()


def _parsed(texts: dict[str, list[str]]) -> dict[str, list[Any]]:
    if not texts:
        return {}
    from ..model.notes import parse_note

    return {run_id: [parse_note(t.encode()) for t in notes] for run_id, notes in texts.items()}


def _send(out: IO[bytes], data: bytes) -> None:
    out.write(len(data).to_bytes(HEADER, "little"))
    out.write(data)
    out.flush()


def _receive(inp: IO[bytes]) -> bytes | None:
    """The next message, or None at the end of the stream (or a truncated one)."""
    head = inp.read(HEADER)
    if len(head) < HEADER:
        return None
    size = int.from_bytes(head, "little")
    if size > MAX_MESSAGE:  # nonsense: never allocate it
        return None
    data = inp.read(size)
    return data if len(data) == size else None


def serve() -> None:
    """A worker: decode chunks from stdin, write their images to stdout, until stdin ends."""
    shapes = Shapes()
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while (message := _receive(inp)) is not None:
        _send(out, chunk_image(marshal.loads(message), shapes))


class Pool:
    """Worker processes decoding chunks in order (see the module docstring); a context manager
    that stops them on leaving."""

    def __init__(self, workers: int) -> None:
        root = str(Path(__file__).resolve().parents[2])  # this gittrack, not another one
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        self.procs: list[subprocess.Popen[bytes] | None] = []
        for _ in range(workers):
            try:
                proc = subprocess.Popen(
                    COMMAND,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
            except OSError:
                proc = None
            self.procs.append(proc)
        self.shapes = Shapes()  # for chunks decoded in-process

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(kill=True)

    def close(self, kill: bool = False) -> None:
        """Stop the workers: at the end of their input, or killed first (when leaving early,
        so that no thread stays blocked writing to a busy one)."""
        procs, self.procs = self.procs, [None] * len(self.procs)
        for proc in procs:
            if proc is None:
                continue
            if kill:
                with contextlib.suppress(OSError):
                    proc.kill()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _dead(self, at: int) -> None:
        proc = self.procs[at]
        self.procs[at] = None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()

    def decode(self, chunks: Iterable[Chunk]) -> Generator[tuple[Chunk, bytes], None, None]:
        """(chunk, its image) of each chunk, in order; chunk i goes to worker i mod n."""
        sent: queue.Queue[tuple[Chunk, bool] | None] = queue.Queue(maxsize=2 * len(self.procs))
        stop = threading.Event()
        failure: list[BaseException] = []

        def produce() -> None:  # a thread: reads `chunks` (the git stream) and feeds workers
            try:
                for i, chunk in enumerate(chunks):
                    if stop.is_set():
                        return
                    proc = self.procs[i % len(self.procs)]
                    pipe = proc.stdin if proc is not None else None
                    ok = pipe is not None
                    if pipe is not None:
                        try:
                            _send(pipe, marshal.dumps(chunk))
                        except (OSError, ValueError):
                            ok = False  # gone: the chunk is decoded in-process
                    sent.put((chunk, ok))
            except BaseException as exc:  # a git error: raised by the reader below
                failure.append(exc)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()  # stops the git processes behind it, when left early
                sent.put(None)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        finished = False
        try:
            i = 0
            while (entry := sent.get()) is not None:
                chunk, ok = entry
                at = i % len(self.procs)
                i += 1
                proc = self.procs[at]
                image = None
                if ok and proc is not None and proc.stdout is not None:
                    with contextlib.suppress(OSError, ValueError):
                        image = _receive(proc.stdout)
                    if not image:
                        self._dead(at)
                yield chunk, image or chunk_image(chunk, self.shapes)
            finished = True
            if failure:
                raise failure[0]
        finally:
            stop.set()
            self.close(kill=not finished)
            while producer.is_alive():  # let it finish its last put, then end
                with contextlib.suppress(queue.Empty):
                    sent.get(timeout=0.1)


def chunked(
    items: Iterable[Item], rid: int, texts: dict[str, list[str]], size: int
) -> Iterator[Chunk]:
    """`items` in chunks of `size`, each with the rid of its first run (rids count down) and
    the git notes texts of its runs."""
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield rid, batch, {r: texts[r] for r, _, _ in batch if r in texts}
            rid -= len(batch)
            batch = []
    if batch:
        yield rid, batch, {r: texts[r] for r, _, _ in batch if r in texts}


if __name__ == "__main__":
    serve()
