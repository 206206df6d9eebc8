"""Helpers the benchmarks share: the git environment, process pools and big histories."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("GITTRACK_BENCH_CACHE", "/tmp/gittrack-bench-cache"))


def env() -> dict[str, str]:
    """The environment of benchmark processes: this checkout's gittrack, a fixed identity."""
    return {
        **os.environ,
        "PYTHONPATH": str(HERE.parent),
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.org",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.org",
    }


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def settle(repo: Path) -> None:
    """Pack a history written by fast-import as git's roll-ups pack one that gittrack recorded:
    one pack, deltas chosen afresh (the newest trees whole, older ones deltas of them).
    fast-import stores each new version of a shard folder as a delta of the one before, so
    reading the newest resolved a chain of up to 50 deltas: 2-13 ms a shard folder at 100,000
    runs (0.6-1.1 ms in a history recorded run by run), and `git diff-tree` of a sync's 1,000
    runs took 0.15 s instead of 0.06 s."""
    git(repo, "repack", "-a", "-d", "-f", "-q")


def run_processes(repo: Path, script: str, runs: int, workers: int) -> float:
    """Seconds to run `python SCRIPT --x i` for i < runs, `workers` processes at a time."""
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(
            pool.map(
                lambda i: subprocess.run(
                    [sys.executable, script, "--x", str(i)],
                    cwd=repo,
                    env=env(),
                    check=True,
                    capture_output=True,
                ),
                range(runs),
            )
        )
    return time.perf_counter() - start


def timed_cpu(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, with every process it waited for) of one process
    run to its exit: CPU time stays comparable on a loaded machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stdout}\n{proc.stderr}")
    return elapsed, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def trivial_record(command: str, i: int) -> Any:
    """The record of the i-th run of the trivial benchmark script (`--x i`, metric y = 2i)."""
    from gittrack.model.record import RunRecord

    return RunRecord(
        id=os.urandom(16).hex(),
        command=command,
        status="completed",
        argv=["--x", str(i)],
        params={"x": i},
        metrics={"y": 2 * i},
    )


def finish_fast_import(proc: subprocess.Popen[bytes], chunks: list[bytes]) -> None:
    """Send the last commands to a `git fast-import --done` process and wait for it."""
    assert proc.stdin
    proc.stdin.write(b"".join(chunks) + b"done\n")
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")


def fill_history(repo: Path, n: int, command: str, per_commit: int = 1) -> None:
    """Append `n` completed runs of `command` to the runs branch through one `git fast-import`.

    `per_commit` runs share a commit (1: one commit per run, as recorded); the tip tree is the
    same either way, and that is what recording reads and rewrites.
    """
    sys.path.insert(0, str(HERE.parent))
    from gittrack import store as gitstore
    from gittrack.model.record import run_folder

    store = gitstore.find_repo(repo)
    tip = gitstore.tip(store)
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"], cwd=repo, stdin=subprocess.PIPE
    )
    assert proc.stdin
    stamp = f"{int(time.time())} +0000"
    for first in range(0, n, per_commit):
        count = min(per_commit, n - first)
        message = f"{count} runs of {command}\n".encode()
        chunk = [
            f"commit {gitstore.RUNS_REF}\ncommitter bench <bench@example.org> {stamp}\n".encode(),
            f"data {len(message)}\n".encode() + message,
        ]
        if first == 0 and tip:
            chunk.append(f"from {tip[0]}\n".encode())
        for i in range(first, first + count):
            record = trivial_record(command, i)
            data = record.to_toml().encode()
            path = f"{run_folder(record.id)}/run.toml"
            chunk.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
        proc.stdin.write(b"".join(chunk))
    proc.stdin.write(b"done\n")
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    store.close()


def fill_history_packed(
    repo: Path, n: int, command: str, chunk: int = 100_000, legacy: bool = False
) -> None:
    """Add `n` completed runs of `command` to the runs branch in one commit, written as packs.

    git fast-import edits a folder's entries by a linear search, so filling the shard folders
    of a million runs one commit at a time takes hours; here each run's blob and folder tree go
    into a pack of `chunk` runs (gittrack's own pack writer), the 65,536 sub-shard trees, the
    256 shards and the rest into one more, and the branch moves once. The tip tree is the one a
    million recorded runs make; with `legacy`, the one gittrack 0.1 made (`runs/<ab>/<id>`).
    """
    sys.path.insert(0, str(HERE.parent))
    from gittrack import store as gitstore
    from gittrack._hashes import sha1
    from gittrack.store.packs import write_pack
    from gittrack.store.trees import MODE_BLOB, MODE_TREE, format_tree, parse_tree

    store = gitstore.find_repo(repo)
    packs = store.common_dir / "objects" / "pack"

    def sha(kind: str, data: bytes) -> str:
        return sha1(f"{kind} {len(data)}\0".encode() + data).hexdigest()

    shards: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    for first in range(0, n, chunk):
        objects: dict[str, tuple[str, bytes]] = {}
        for i in range(first, min(n, first + chunk)):
            record = trivial_record(command, i)
            blob = record.to_toml().encode()
            blob_id = sha("blob", blob)
            folder = format_tree({"run.toml": (MODE_BLOB, blob_id)})
            folder_id = sha("tree", folder)
            objects[blob_id] = ("blob", blob)
            objects[folder_id] = ("tree", folder)
            # where gittrack.model.run_folder puts it, or legacy_run_folder (no sub-shard)
            subshard = (record.id[:2], "" if legacy else record.id[2:4])
            shards.setdefault(subshard, {})[record.id] = (MODE_TREE, folder_id)
        write_pack(packs, objects, str(packs / f"tmp_bench_{first}"))
    tip = gitstore.tip(store)
    assert tip is not None
    root = parse_tree(store.reader().read(tip[1])[2])  # type: ignore[index]
    runs = {}
    if "runs" in root:
        runs = parse_tree(store.reader().read(root["runs"][1])[2])  # type: ignore[index]
        assert not runs, "fill_history_packed starts from an empty runs folder"
    objects = {}

    def tree(entries: dict[str, tuple[str, str]]) -> tuple[str, str]:
        data = format_tree(entries)
        objects[sha("tree", data)] = ("tree", data)
        return MODE_TREE, sha("tree", data)

    by_shard: dict[str, dict[str, tuple[str, str]]] = {}
    for (shard, sub), entries in shards.items():
        if legacy:
            by_shard[shard] = entries
        else:
            by_shard.setdefault(shard, {})[sub] = tree(entries)
    for shard, subs in by_shard.items():
        runs[shard] = tree(subs)
    runs_tree = format_tree(runs)
    root["runs"] = (MODE_TREE, sha("tree", runs_tree))
    objects[root["runs"][1]] = ("tree", runs_tree)
    root_tree = format_tree(root)
    root_id = sha("tree", root_tree)
    objects[root_id] = ("tree", root_tree)
    stamp = f"{int(time.time())} +0000"
    commit = (
        f"tree {root_id}\nparent {tip[0]}\nauthor bench <bench@example.org> {stamp}\n"
        f"committer bench <bench@example.org> {stamp}\n\n{n} runs of {command}\n"
    ).encode()
    commit_id = sha("commit", commit)
    objects[commit_id] = ("commit", commit)
    write_pack(packs, objects, str(packs / "tmp_bench_top"))
    git(repo, "update-ref", gitstore.RUNS_REF, commit_id, tip[0])
    store.close()


def cached_repo(name: str, build, dest: Path) -> Path:
    """`dest` as a copy of a repository built once by `build(path)` in CACHE/name.

    Object files are hard-linked (git never changes one in place), everything else is copied.
    """
    cached = CACHE / name
    if not (cached / ".complete").exists():
        shutil.rmtree(cached, ignore_errors=True)
        cached.mkdir(parents=True)
        build(cached)
        (cached / ".complete").touch()
    shutil.copytree(cached, dest, symlinks=True, ignore=shutil.ignore_patterns("objects"))
    subprocess.run(["cp", "-al", str(cached / ".git/objects"), str(dest / ".git")], check=True)
    (dest / ".complete").unlink()
    return dest
