"""Overhead of recording a run: a tracked trivial click script minus the same script untracked.

Measured side by side in one run, as medians over interleaved repetitions, with 0 runs recorded
and again after a history of 10,000 runs (built quickly through gitstore.import_runs). Also
shows a plain `git add && git commit` of a small file as the floor any git-based recorder has.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

TRACKED = """
import atexit, sys

@atexit.register
def peak():  # this process's own peak RSS (VmHWM), not what it inherited from the parent
    with open("/proc/self/status") as fh:
        sys.stderr.write([l for l in fh if l.startswith("VmHWM")][0])

import click, gittrack

@gittrack.command()
@click.option("--x", type=int, default=1)
def main(x):
    return {"y": x * 2}

if __name__ == "__main__":
    main()
"""
UNTRACKED = TRACKED.replace("import click, gittrack", "import click").replace(
    "@gittrack.command()", "@click.command()"
)


# as users run: bytecode caching on (a development shell may turn it off)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def timed(cmd: list[str], cwd: Path) -> tuple[float, int]:
    """Wall time in seconds and peak RSS in KiB of one child process (as it reports it)."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr}")
    hwm = [line for line in proc.stderr.splitlines() if line.startswith("VmHWM")]
    return elapsed, int(hwm[-1].split()[1])


def make_repo(root: Path) -> Path:
    repo = root / "project"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.name", "bench")
    git(repo, "config", "user.email", "bench@example.org")
    (repo / "tracked.py").write_text(TRACKED)
    (repo / "untracked.py").write_text(UNTRACKED)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "scripts")
    subprocess.run(
        [sys.executable, "-m", "gittrack", "-C", str(repo), "init"], check=True, capture_output=True
    )
    return repo


def fill_history(repo: Path, n: int) -> None:
    from gittrack import store as gitstore
    from gittrack.model.record import RunRecord

    store = gitstore.find_repo(repo)
    records = (
        RunRecord(
            id=os.urandom(16).hex(),
            command="tracked.py",
            status="completed",
            argv=["--x", str(i)],
            params={"x": i},
            metrics={"y": 2 * i},
        )
        for i in range(n)
    )
    gitstore.import_runs(store, records)
    store.close()


def measure(repo: Path, reps: int) -> dict[str, float]:
    tracked, untracked, mem_t, mem_u, commit = [], [], [], [], []
    py = sys.executable
    for script in ("tracked.py", "untracked.py"):  # warm-up: bytecode caches, packages listing
        timed([py, script, "--x", "-1"], repo)
    for i in range(reps):
        t, m = timed([py, "tracked.py", "--x", str(i)], repo)
        tracked.append(t)
        mem_t.append(m)
        u, m = timed([py, "untracked.py", "--x", str(i)], repo)
        untracked.append(u)
        mem_u.append(m)
        (repo / "note.txt").write_text(str(i))
        start = time.perf_counter()
        git(repo, "add", "note.txt")
        git(repo, "commit", "-qm", f"note {i}")
        commit.append(time.perf_counter() - start)
    return {
        "tracked_s": statistics.median(tracked),
        "untracked_s": statistics.median(untracked),
        "overhead_s": statistics.median(t - u for t, u in zip(tracked, untracked, strict=True)),
        "mem_overhead_mib": (statistics.median(mem_t) - statistics.median(mem_u)) / 1024,
        "git_commit_s": statistics.median(commit),
    }


def main(quick: bool = False) -> list[dict[str, object]]:
    reps = 5 if quick else 15
    history = 1_000 if quick else 10_000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp))
        first = measure(repo, reps)
        rows.append({"history": 0, **first})
        start = time.perf_counter()
        fill_history(repo, history)
        built = time.perf_counter() - start
        second = measure(repo, reps)
        rows.append({"history": history, **second})
    print(
        f"\nRecording overhead (median of {reps}; history of {history} runs built in {built:.1f} s)"
    )
    print(
        f"{'runs recorded':>14} {'untracked':>10} {'tracked':>10} {'overhead':>10} "
        f"{'goal':>8} {'git commit':>11} {'overhead/git commit':>20} {'mem overhead':>13}"
    )
    for row in rows:
        print(
            f"{row['history']:>14} {row['untracked_s'] * 1000:>8.0f}ms {row['tracked_s'] * 1000:>8.0f}ms "
            f"{row['overhead_s'] * 1000:>8.0f}ms {'100ms':>8} {row['git_commit_s'] * 1000:>9.0f}ms "
            f"{row['overhead_s'] / row['git_commit_s']:>19.1f}x {row['mem_overhead_mib']:>10.1f}MiB"
        )
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
