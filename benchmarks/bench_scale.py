"""Scaling out: Dask vs local processes, many concurrent writers, push/pull of big histories.

1. Throughput of trivial tracked runs: a pool of `python sim.py` processes (the baseline), the
   local executor of `gittrack sweep -j`, and a local Dask cluster with the same number of
   workers, on a shared filesystem and shipping code by bundle (cluster start-up excluded).
2. Contention: 16 processes recording at once on one repository vs one process alone.
3. Sharing: `gittrack push`/`pull` of a history of 10,000 runs (quick: 1,000), then of one new
   run, and joining diverged branches, against plain `git push`/`git fetch` of the same refs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import env, git, run_processes  # noqa: E402

TRIVIAL = """
import click, gittrack

@gittrack.command()
@click.option("--x", type=int, default=1)
def main(x):
    return {"y": x * 2}

if __name__ == "__main__":
    main()
"""

WRITER = """
import sys
from pathlib import Path
from gittrack import store as gitstore
from gittrack.recording.invoke import run_script
start = Path(sys.argv[1])
while not start.exists():
    pass
for i in range(int(sys.argv[2])):
    run_script(Path("trivial.py"), ["--x", str(int(sys.argv[3]) + i)])  # distinct: no reuse
print(gitstore.STATS["commits"], gitstore.STATS["retries"])
"""


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "trivial.py").write_text(TRIVIAL)
    git(path, "add", ".")
    git(path, "commit", "-qm", "trivial script")
    subprocess.run(
        [sys.executable, "-m", "gittrack", "-C", str(path), "init"],
        check=True,
        capture_output=True,
        env=env(),
    )
    return path


def run_count(repo: Path) -> int:
    out = git(repo, "ls-tree", "-r", "--name-only", "gittrack/runs", "--", "runs")
    return sum(1 for line in out.splitlines() if line.endswith("/run.toml"))


# -- 1. throughput --------------------------------------------------------------------------


def throughput(root: Path, runs: int, workers: int) -> list[tuple[str, float]]:
    from gittrack import store as gitstore
    from gittrack.execute.dask_executor import connect, run_tasks

    rows = []
    repo = make_repo(root / "local")
    rows.append(
        ("python sim.py processes", runs / run_processes(repo, "trivial.py", runs, workers))
    )
    assert run_count(repo) == runs
    from gittrack.execute.executors import LocalExecutor, Task

    repo = make_repo(root / "sweep-local")
    tasks = [
        Task(str(repo / "trivial.py"), ["--x", str(i)], repo=str(repo), cwd=str(repo))
        for i in range(runs)
    ]
    os.environ.update(env())
    start = time.perf_counter()
    results = list(LocalExecutor(jobs=workers).run(tasks))
    rows.append(("local executor (sweep -j)", runs / (time.perf_counter() - start)))
    assert [r.status for r in results] == ["completed"] * runs and run_count(repo) == runs
    with connect("dask", workers=workers) as client:
        for label, shared in (("dask, shared filesystem", True), ("dask, code by bundle", False)):
            repo = make_repo(root / label.replace(" ", "-").replace(",", ""))
            store = gitstore.find_repo(repo)
            tasks = [Task("trivial.py", ["--x", str(i)]) for i in range(runs)]
            start = time.perf_counter()
            outcomes = run_tasks(store, tasks, client=client, shared_fs=shared, progress=False)
            rows.append((label, runs / (time.perf_counter() - start)))
            assert [o.status for o in outcomes] == ["completed"] * runs and run_count(repo) == runs
    return rows


# -- 2. contention --------------------------------------------------------------------------


def contention(root: Path, writers: int, each: int) -> list[tuple[str, float, int]]:
    rows = []
    for n, per in ((1, writers * each), (writers, each)):
        repo = make_repo(root / f"writers-{n}")
        go = repo.parent / f"go-{n}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(go), str(per), str(w * 10_000)],
                cwd=repo,
                env=env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for w in range(n)
        ]
        time.sleep(1.0)  # let every writer import gittrack first
        start = time.perf_counter()
        go.touch()
        outs = [p.communicate()[0].splitlines()[-1].split() for p in procs]
        elapsed = time.perf_counter() - start
        commits = sum(int(o[0]) for o in outs)
        assert commits == run_count(repo) == n * per
        rows.append((f"{n} writer(s)", commits / elapsed, sum(int(o[1]) for o in outs)))
    return rows


# -- 3. push / pull -------------------------------------------------------------------------


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sharing(root: Path, history: int) -> list[tuple[str, float, float]]:
    from gittrack import store as gitstore
    from gittrack.model.record import RunRecord
    from gittrack.ops import sync

    os.environ.update(env())
    alice = make_repo(root / "alice")
    store = gitstore.find_repo(alice)
    records = (
        RunRecord(
            id=os.urandom(16).hex(),
            command="trivial.py",
            status="completed",
            argv=["--x", str(i)],
            params={"x": i},
            metrics={"y": 2 * i},
        )
        for i in range(history)
    )
    gitstore.import_runs(store, records)
    for c in range(20):  # runs reference a few code commits
        git(alice, "commit", "-q", "--allow-empty", "-m", f"code {c}")
        git(
            alice,
            "update-ref",
            f"refs/gittrack/code/{git(alice, 'rev-parse', 'HEAD').strip()}",
            "HEAD",
        )
    specs = [
        "refs/heads/gittrack/runs:refs/heads/gittrack/runs",
        "refs/gittrack/code/*:refs/gittrack/code/*",
    ]
    rows = []
    # baseline: plain git moving the same refs
    plain = root / "plain.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(plain))
    git_push = timed(lambda: git(alice, "push", "-q", str(plain), "main", *specs))
    remote = root / "remote.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    git(alice, "remote", "add", "origin", str(remote))
    git(alice, "push", "-q", "origin", "main")
    rows.append((f"push {history} runs", timed(lambda: sync.push(store, data=False)), git_push))
    bob = root / "bob"
    git(root, "clone", "-q", str(remote), str(bob))
    bob_store = gitstore.find_repo(bob)
    fetch_dir = root / "fetch"
    git(root, "clone", "-q", str(plain), str(fetch_dir))
    git_fetch = timed(
        lambda: git(
            fetch_dir,
            "fetch",
            "-q",
            "origin",
            "+refs/heads/gittrack/runs:refs/heads/gittrack/runs",
            "+refs/gittrack/code/*:refs/gittrack/code/*",
        )
    )
    rows.append(
        (f"pull {history} runs (fresh clone)", timed(lambda: sync.pull(bob_store)), git_fetch)
    )
    assert run_count(bob) == history
    subprocess.run(
        [sys.executable, "trivial.py", "--x", "1"],
        cwd=alice,
        env=env(),
        check=True,
        capture_output=True,
    )
    incremental_push = timed(lambda: git(alice, "push", "-q", str(plain), *specs))
    rows.append(("push 1 new run", timed(lambda: sync.push(store, data=False)), incremental_push))
    incremental_fetch = timed(
        lambda: git(
            fetch_dir, "fetch", "-q", "origin", "+refs/heads/gittrack/runs:refs/heads/gittrack/runs"
        )
    )
    rows.append(
        ("pull 1 new run (fast-forward)", timed(lambda: sync.pull(bob_store)), incremental_fetch)
    )
    subprocess.run(
        [sys.executable, "trivial.py", "--x", "2"],
        cwd=alice,
        env=env(),
        check=True,
        capture_output=True,
    )
    sync.push(store, data=False)
    proc = subprocess.run(
        [sys.executable, "trivial.py", "--x", "3"],
        cwd=bob,
        env=env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    rows.append(
        ("pull, diverged (merge commit)", timed(lambda: sync.pull(bob_store)), incremental_fetch)
    )
    assert run_count(bob) == history + 3
    return rows


def main(quick: bool = False) -> dict[str, list[tuple[object, ...]]]:
    runs = 8 if quick else 48
    workers = max(2, min(4, os.cpu_count() or 2))
    each = 2 if quick else 12
    history = 1_000 if quick else 10_000
    results: dict[str, list[tuple[object, ...]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results["throughput"] = rows = throughput(root / "throughput", runs, workers)
        base = rows[0][1]
        print(f"\nThroughput of {runs} trivial runs, {workers} workers")
        print(f"{'executor':<28} {'runs/s':>8} {'vs processes':>13}")
        for label, rate in rows:
            print(f"{label:<28} {rate:>8.2f} {rate / base:>12.2f}x")

        results["contention"] = rows = contention(root / "contention", 16, each)
        base = rows[0][1]
        print(f"\nContention: {16 * each} runs recorded by 1 and by 16 concurrent processes")
        print(f"{'writers':<14} {'commits/s':>10} {'vs 1 writer':>12} {'CAS retries':>12}")
        for label, rate, retries in rows:
            print(f"{label:<14} {rate:>10.2f} {rate / base:>11.2f}x {retries:>12}")

        results["sharing"] = rows = sharing(root / "sharing", history)
        print(f"\nSharing a history of {history} runs through a bare git remote")
        print(f"{'operation':<34} {'gittrack':>9} {'plain git':>10} {'ratio':>7}")
        for label, ours, plain in rows:
            print(f"{label:<34} {ours:>8.2f}s {plain:>9.2f}s {ours / plain:>6.1f}x")
    return results


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
