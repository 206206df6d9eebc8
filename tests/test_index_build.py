"""A big index build decodes records in worker processes: the same rows as on one core, and a
worker that dies or a build left halfway costs only time. A sync starts its diff early."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lookup_support import die_holding_the_index, scan, with_other_ids, write_runs

from gittrack import store as gitstore
from gittrack.index import build, workers
from gittrack.index.db import Index
from gittrack.model.record import Input, Output
from gittrack.ops import tags as notes

TABLES = (
    "run_fields",
    "records",
    "kv",
    "keys",
    "shapes",
    "tags",
    "members",
    "lineage_edges",
    "lineage_outputs",
    "lineage_memo",
)


def history(repo: Path) -> list[str]:
    """Runs of every kind a build meets: plain, nested and list values, tags and git notes,
    lineage, an unreadable record and a folder without run.toml."""
    specs: list[dict[str, Any]] = scan(23)
    specs += [
        {"name": "nested", "params": {"opt": {"lr": 0.1, "layers": [1, 2, 2]}, "s": "3.5"}},
        {"name": "listy", "metrics": {"loss": [0.5, 0.25, 0.5]}, "tags": ["a", "b"]},
        {
            "name": "child",
            "parent": "0000" + "0a1b2c3d" * 3 + "beef",
            "memo": "m" * 16,
            "inputs": [Input(run="0001" + "0a1b2c3d" * 3 + "beef", output="x", md5="d" * 32)],
            "outputs": {"y": Output(path="y", md5="e" * 32, size=3)},
            "experiment": "sweep",
        },
    ]
    ids = write_runs(repo, specs)
    r = gitstore.find_repo(repo)
    notes.add_tags(r, ids[3], ["reference"])
    notes.set_note(r, ids[4], "checked by hand")
    writer = gitstore.ObjectWriter(r)
    blob = writer.write("blob", b"schema = 2\nid = [broken")
    other = writer.write("blob", b"not a record")
    gitstore.commit_to_branch(
        r,
        "by hand",
        {
            "runs/ba/bad0" + "0" * 28 + "/run.toml": ("100644", blob),
            "runs/ee/ee00" + "0" * 28 + "/notes.txt": ("100644", other),
        },
    )
    r.close()
    return ids


def dump(repo: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the run and lineage tables, ids included, after a first build."""
    path = gitstore.find_repo(repo).state_dir / "index.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    ix = Index(gitstore.find_repo(repo))
    ix.sync()
    found = {t: sorted(map(tuple, ix.db.execute(f"SELECT * FROM {t}")), key=repr) for t in TABLES}
    found["memo order"] = ix.db.execute("SELECT * FROM lineage_memo ORDER BY rowid").fetchall()
    ix.close()
    return found


@pytest.fixture
def parallel(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every build decodes in 2 workers, 4 runs a chunk; counts the chunks decoded here."""
    monkeypatch.setattr(build, "PARALLEL_MIN_RUNS", 0)
    monkeypatch.setattr(build, "CHUNK", 4)
    monkeypatch.setenv("GITTRACK_INDEX_WORKERS", "2")
    here = [0]
    real = workers.chunk_image

    def counted(chunk: workers.Chunk, shapes: Any) -> bytes:
        here[0] += bool(chunk[1])
        return real(chunk, shapes)

    monkeypatch.setattr(workers, "chunk_image", counted)
    return here


def serial(repo: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[Any, ...]]]:
    with monkeypatch.context() as m:
        m.setenv("GITTRACK_INDEX_WORKERS", "0")
        m.setattr(build, "PARALLEL_MIN_RUNS", 0)
        return dump(repo)


def test_a_parallel_build_gives_the_rows_of_a_serial_one(
    repo: Path, monkeypatch: pytest.MonkeyPatch, parallel: list[int]
) -> None:
    history(repo)
    expected = serial(repo, monkeypatch)
    assert len(expected["run_fields"]) == 28 and expected["lineage_memo"]
    assert dump(repo) == expected
    assert parallel == [0]  # every chunk was decoded by a worker


@pytest.mark.parametrize(
    "worker",
    [
        "import sys; sys.stdin.buffer.read(100); sys.exit(3)",  # dies in its first chunk
        "import sys; sys.stdin.buffer.read(100); sys.stdout.buffer.write(b'\\x05' + bytes(12))",
        "import sys; sys.stdin.buffer.read(100); sys.stdout.buffer.write(bytes([8] + [0] * 7)"
        " + b'garbage!')",  # a damaged image
        "import sys; sys.stdin.buffer.read(100); sys.stdout.buffer.write(b'\\xff' * 8)",  # 2**64
    ],
)
def test_a_worker_that_dies_or_talks_nonsense_costs_only_speed(
    repo: Path, monkeypatch: pytest.MonkeyPatch, parallel: list[int], worker: str
) -> None:
    history(repo)
    expected = serial(repo, monkeypatch)
    monkeypatch.setattr(workers, "COMMAND", [sys.executable, "-c", worker])
    assert dump(repo) == expected
    assert parallel[0] > 0  # decoded here instead


def test_a_worker_that_cannot_start_costs_only_speed(
    repo: Path, monkeypatch: pytest.MonkeyPatch, parallel: list[int]
) -> None:
    history(repo)
    expected = serial(repo, monkeypatch)
    monkeypatch.setattr(workers, "COMMAND", [str(repo / "no-such-python")])
    assert dump(repo) == expected
    assert parallel[0] == 7  # all 28 runs, 4 a chunk, here


def test_a_build_interrupted_halfway_leaves_a_usable_index(
    repo: Path, monkeypatch: pytest.MonkeyPatch, parallel: list[int]
) -> None:
    ids = history(repo)
    assert len(dump(repo)["run_fields"]) == 28
    subprocess.run(  # the branch rewritten: the next sync rebuilds everything
        ["git", "update-ref", "refs/heads/gittrack/runs", "gittrack/runs~2"], cwd=repo, check=True
    )
    pools: list[workers.Pool] = []
    real_pool, real_take = workers.Pool, build.Loader.take_chunk

    def pool(count: int) -> workers.Pool:
        pools.append(real_pool(count))
        procs.extend(p for p in pools[-1].procs if p is not None)
        return pools[-1]

    def take(self: build.Loader, chunk: workers.Chunk, image: bytes) -> None:
        if chunk[0] < self.total - 4:  # the third chunk
            raise KeyboardInterrupt
        real_take(self, chunk, image)

    procs: list[subprocess.Popen[bytes]] = []
    monkeypatch.setattr(workers, "Pool", pool)
    monkeypatch.setattr(build.Loader, "take_chunk", take)
    ix = Index(gitstore.find_repo(repo))
    with pytest.raises(KeyboardInterrupt):
        ix.sync()
    ix.close()
    assert len(procs) == 2 and all(p.returncode is not None for p in procs)  # none left
    path = gitstore.find_repo(repo).state_dir / "index.sqlite"
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM run_fields").fetchone() == (28,)  # as it was
    db.close()
    monkeypatch.setattr(build.Loader, "take_chunk", real_take)
    ix = Index(gitstore.find_repo(repo))
    assert ix.count() == 25  # the next sync finishes the job
    assert ix.get(ids[0]) is not None and ix.get(ids[-1]) is None
    ix.close()


def test_a_big_sync_decodes_in_workers_too(
    repo: Path, monkeypatch: pytest.MonkeyPatch, parallel: list[int]
) -> None:
    ids = write_runs(repo, scan(5))
    ix = Index(gitstore.find_repo(repo))
    assert ix.count() == 5
    write_runs(repo, [{"id": f"{i:04x}" + "ffee" * 7, "name": f"new-{i}"} for i in range(9)])
    ix.sync()
    assert ix.count() == 14 and parallel == [0]
    assert ix.get(ids[0]) is not None
    assert sorted(r[0] for r in ix.query("SELECT name FROM runs WHERE name LIKE 'new-%'")) == [
        f"new-{i}" for i in range(9)
    ]
    ix.close()


def test_a_sync_reads_the_diff_started_before_its_checks(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_runs(repo, scan(3))
    ix = Index(gitstore.find_repo(repo))
    assert ix.count() == 3
    started: list[gitstore.RunChanges] = []
    real = gitstore.RunChanges

    def early(*args: Any) -> gitstore.RunChanges:
        started.append(real(*args))
        return started[-1]

    monkeypatch.setattr(gitstore, "RunChanges", early)
    read: list[bytes] = []
    real_output = real.output
    monkeypatch.setattr(real, "output", lambda self: read.append(real_output(self)) or read[-1])
    write_runs(repo, [{"id": "ffff" + "0" * 28, "name": "new", "params": {"temp": 5}}])
    ix.sync()
    assert ix.count() == 4 and ix.get("ffff" + "0" * 28) is not None
    assert len(started) == 1 and len(read) == 1 and b"runs/ff/ff/ffff" in read[0]
    assert started[0].proc.returncode == 0 and started[0].out.closed
    subprocess.run(  # rewritten: a full rebuild, the diff started is stopped unread
        ["git", "update-ref", "refs/heads/gittrack/runs", "gittrack/runs~2"], cwd=repo, check=True
    )
    ix.sync()
    assert ix.count() == 2 and len(started) == 2 and len(read) == 1
    assert started[1].proc.returncode is not None and started[1].out.closed
    ix.close()


def test_the_number_of_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITTRACK_INDEX_WORKERS", "3")
    assert workers.count() == 3
    monkeypatch.setenv("GITTRACK_INDEX_WORKERS", "0")
    assert workers.count() == 0
    monkeypatch.delenv("GITTRACK_INDEX_WORKERS")
    cores = min(len(os.sched_getaffinity(0)), 4)
    assert workers.count() == cores
    # cores kept busy by others: workers still win (18 s against 25 s at 100,000 runs)
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    assert workers.count() == cores
    monkeypatch.setattr(sys, "executable", "/opt/app/bin/app")  # embedded: never
    assert workers.count() == 0


def test_a_first_build_interrupted_leaves_no_file_and_one_built_meanwhile_is_kept(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = write_runs(repo, scan(3))
    state = gitstore.find_repo(repo).state_dir
    stale = state / "index.sqlite.1-00000000.part"  # left by a build killed long ago
    stale.write_bytes(b"half a database")
    os.utime(stale, (10_000.0, 10_000.0))
    real_take = build.Loader.take

    def interrupted(self: build.Loader, prepared: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(build.Loader, "take", interrupted)
    ix = Index(gitstore.find_repo(repo))
    with pytest.raises(KeyboardInterrupt):
        ix.sync()
    ix.close()
    assert sorted(p.name for p in state.iterdir() if p.name.startswith("index")) == []
    monkeypatch.setattr(build.Loader, "take", real_take)

    others: list[int] = []

    def meanwhile(self: build.Loader, prepared: Any) -> None:  # another process's build
        if not others:
            others.append(1)
            other = Index(gitstore.find_repo(repo))
            other.sync()
            other.db.execute("UPDATE run_fields SET name = 'built by the other one'")
            other.close()
        real_take(self, prepared)

    monkeypatch.setattr(build.Loader, "take", meanwhile)
    ix = Index(gitstore.find_repo(repo))
    ix.sync()
    names = {r[0] for r in ix.query("SELECT name FROM run_fields")}
    assert names == {"built by the other one"}  # kept, not replaced
    assert ix.get(ids[0]) is not None
    ix.close()
    assert not list(state.glob("*.part"))


def test_a_first_build_that_meets_an_index_opened_meanwhile_reads_it_synced(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process opened the index (an empty table, not yet synced) while this one built
    its own aside: this one keeps that file, and must bring it up to the branch before it
    reads (it listed "0 of 2101 runs" once)."""
    ids = write_runs(repo, scan(3))
    real_take = build.Loader.take
    others: list[int] = []

    def meanwhile(self: build.Loader, prepared: Any) -> None:
        if not others:
            others.append(1)
            other = Index(gitstore.find_repo(repo))
            assert other.db.execute("SELECT count(*) FROM run_fields").fetchone() == (0,)
            other.close()
        real_take(self, prepared)

    monkeypatch.setattr(build.Loader, "take", meanwhile)
    ix = Index(gitstore.find_repo(repo))
    found = ix.select(limit=10)
    assert sorted(r["id"] for r in found) == sorted(ids)
    ix.close()


RACE = """
import os, sys, time
from pathlib import Path
from gittrack import store
from gittrack.index.db import Index
start = Path(sys.argv[2])
while not start.exists():
    time.sleep(0.001)
ix = Index(store.find_repo(sys.argv[1]))
print(ix.count(), ix.query("PRAGMA integrity_check")[0][0])
"""


def test_first_builds_racing_over_a_stale_journal_all_read_the_whole_branch(
    repo: Path, tmp_path: Path
) -> None:
    """Six processes build the first index at once, where a deleted index left its journal:
    each links its own or keeps the one that won, never reads that journal, and all count
    every run of the branch."""
    write_runs(repo, scan(30))
    state = gitstore.find_repo(repo).state_dir
    die_holding_the_index(repo).unlink()  # its journal stays
    write_runs(repo, with_other_ids(scan(60))[30:])  # the branch moves on: the journal is stale
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(repo), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    go.touch()
    answers = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err for _, err in answers]
    assert [out.split() for out, _ in answers] == [["60", "ok"]] * 6
    assert not list(state.glob("*.part"))
