"""Decoding the records of a big build on every core: worker processes fed chunks of the stream.

The one process that writes the database lists the runs in commit order (`gitread.ordered`)
and sends them, a chunk at a time, to worker processes (`python -m gittrack.index.workers`:
nothing of the caller's main module is run again, as multiprocessing's spawn would).
A worker reads their records from git (a `git cat-file` of its own), parses and checks them
(`rows.prepare`) and sends back their rows as plain values in one `marshal` dump, which the
writer inserts as it inserts the rows it decodes itself (`build.Loader.take`): each row is
built once, in the database that keeps it. Chunks are taken in the order they were sent, and
rids, key and shape ids are given by the writer in that order, so the rows are those of a
build on one core. A worker that cannot start, dies or answers nonsense costs only speed: its
chunks are decoded in-process.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .gitread import BlobReader, Named
from .rows import Prepared, Shapes, prepare

# (rid of the first run, the items, the texts of their runs' git notes): a chunk as sent, its
# items naming each run.toml's object (`gitread.Named`), or as decoded, with its bytes
# (`gitread.Found`: run id, commit, run.toml bytes or None)
Chunk = tuple[int, list[Any], dict[str, list[str]]]
HEADER = 8  # bytes of the length before each message
MAX_MESSAGE = 1 << 30  # a chunk of a thousand records is a few MiB
COMMAND = [sys.executable, "-m", "gittrack.index.workers"]
PREPARED_FIELDS = 11  # the parts of a `rows.Prepared`


def count() -> int:
    """How many worker processes a big build uses: the cores this process may run on, up to 4,
    however busy they are (on two cores kept busy by others, a build of 100,000 runs took 18 s
    with workers and 25 s without). GITTRACK_INDEX_WORKERS sets it (0 or 1: in-process); none
    when this is not a Python executable that can start them."""
    setting = os.environ.get("GITTRACK_INDEX_WORKERS", "").strip()
    if setting.isdigit():
        return int(setting)
    if not Path(sys.executable or "-").name.lower().startswith(("python", "pypy")):
        return 0  # embedded (an application's own executable): decode in-process
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS
        cores = os.cpu_count() or 1
    return min(cores, 4)


def chunk_image(chunk: Chunk, shapes: Shapes) -> bytes:
    """The rows of every run of a chunk (`rows.prepare`), as the message a worker sends (also
    what the writer decodes in-process when a worker fails)."""
    _, items, texts = chunk
    notes = _parsed(texts)
    return marshal.dumps(
        [prepare(run_id, commit, data, notes.get(run_id), shapes) for run_id, commit, data in items]
    )


def with_data(chunk: Chunk, reader: BlobReader) -> Chunk:
    """A chunk as sent, with the bytes of each run.toml read in place of its object name."""
    rid, items, texts = chunk
    data = reader.read([name for _, _, name in items])
    return rid, [(r, c, d) for (r, c, _), d in zip(items, data, strict=True)], texts


def rows_of(chunk: Chunk, message: bytes | None) -> list[Prepared] | None:
    """The rows a worker sent for `chunk`, or None when its message is not what a worker
    writes (a damaged or truncated answer): then the chunk is decoded in-process."""
    if not message:
        return None
    try:
        found = marshal.loads(message)
    except (EOFError, ValueError, TypeError):
        return None
    if type(found) is not list or len(found) != len(chunk[1]):
        return None
    for (run_id, _, _), got in zip(chunk[1], found, strict=True):
        if type(got) is not tuple or len(got) != PREPARED_FIELDS:
            return None
        fields = got[0]
        if type(fields) is not tuple or not fields or fields[0] != run_id:
            return None
    return found


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
    """A worker: decode chunks from stdin (their records read from the repository whose root
    the first message names), write their rows to stdout, until stdin ends."""
    shapes = Shapes()
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    first = _receive(inp)
    if first is None:
        return
    reader = BlobReader(marshal.loads(first))
    # a chunk's values make no reference cycles: collected once a chunk, not every few
    # hundred allocations (~10% of the decoding)
    gc.disable()
    gc.freeze()
    try:
        while (message := _receive(inp)) is not None:
            _send(out, chunk_image(with_data(marshal.loads(message), reader), shapes))
            gc.collect()
    finally:
        reader.close()


class Pool:
    """Worker processes decoding chunks in order (see the module docstring); a context manager
    that stops them on leaving."""

    def __init__(self, workers: int) -> None:
        root = str(Path(__file__).resolve().parents[2])  # this gittrack, not another one
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        self.procs: list[subprocess.Popen[bytes] | None] = []
        self.reader = BlobReader(".")  # for chunks decoded in-process (`decode` says where)
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
        self.reader.close()
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

    def decode(
        self, chunks: Iterable[Chunk], root: Path | str
    ) -> Generator[tuple[Chunk, list[Prepared]], None, None]:
        """(chunk, its rows) of each chunk, in order, their records read from the repository
        at `root` (the first message each worker gets); chunk i goes to worker i mod n."""
        self.reader.root = str(root)
        for at, proc in enumerate(self.procs):
            try:
                if proc is not None and proc.stdin is not None:
                    _send(proc.stdin, marshal.dumps(str(root)))
            except (OSError, ValueError):
                self._dead(at)
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
                found = None
                if ok and proc is not None and proc.stdout is not None:
                    with contextlib.suppress(OSError, ValueError):
                        found = rows_of(chunk, _receive(proc.stdout))
                    if found is None:
                        self._dead(at)
                if found is None:
                    found = marshal.loads(chunk_image(with_data(chunk, self.reader), self.shapes))
                yield chunk, found
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
    items: Iterable[Named], rid: int, texts: dict[str, list[str]], size: int
) -> Iterator[Chunk]:
    """`items` in chunks of `size`, each with the rid of its first run (rids count down) and
    the git notes texts of its runs."""
    batch: list[Named] = []
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
