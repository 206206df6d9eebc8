"""Helpers the benchmarks share: the git environment, process pools and big histories."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def fill_history(repo: Path, n: int, command: str, per_commit: int = 1) -> None:
    """Append `n` completed runs of `command` to the runs branch through one `git fast-import`.

    `per_commit` runs share a commit (1: one commit per run, as recorded); the tip tree is the
    same either way, and that is what recording reads and rewrites.
    """
    sys.path.insert(0, str(HERE.parent))
    from gittrack import store as gitstore
    from gittrack.model.record import RunRecord, run_folder

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
            record = RunRecord(
                id=os.urandom(16).hex(),
                command=command,
                status="completed",
                argv=["--x", str(i)],
                params={"x": i},
                metrics={"y": 2 * i},
            )
            data = record.to_toml().encode()
            path = f"{run_folder(record.id)}/run.toml"
            chunk.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
        proc.stdin.write(b"".join(chunk))
    proc.stdin.write(b"done\n")
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
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
