"""Overhead of recording a run, and how the repository grows with the runs recorded.

1. Overhead: a trivial click script run as `python tracked.py` (`@gittrack.command()`) against
   the same script untracked (`@click.command()`), interleaved and paired (median of the
   differences), in one run: with 0 runs recorded and after histories of 10,000, 100,000 and
   1,000,000 runs (quick: 1,000). Histories are built with git fast-import
   (benchmarks/common.py; up to 10,000 runs one commit a run, 100,000 in commits of 1,000) and
   1,000,000 as one commit written as packs (fast-import takes hours there); the tip tree,
   which recording reads and rewrites, is the same. One more history of 1,000,000 runs
   (quick: 1,000) is in gittrack 0.1's one-level layout (`runs/<ab>/<id>`): nearly every run
   measured there is the first in its shard and moves that shard's folders to their sub-shards,
   the one-time cost of an old history. Cached under /tmp. Wall and CPU time (user + system of the process and the git
   processes it waited for) and each process's own peak memory (VmHWM). A plain
   `git add && git commit` of a small file is the floor of any git-based recorder.
2. Storage: runs recorded one by one through the real write path, without any user action
   (gittrack packs in the background): 1,000 and 10,000 runs by `gittrack sweep -j 2` (real
   worker processes), 100,000 (with `--big`) by an in-process loop calling the write path the
   CLI uses at a run's end (`store.write_run`, with the record and files of a real run, new id
   and params each time). Size of `.git/objects`, files under it, bytes a
   run.
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
sys.path.insert(0, str(HERE))

from common import cached_repo, fill_history, fill_history_packed, settle  # noqa: E402

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
ENV["PYTHONPATH"] = str(HERE.parent)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds (with the children it waited for) and peak RSS in KiB of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV
    )
    assert proc.stderr
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {err}")
    hwm = [line for line in err.splitlines() if line.startswith("VmHWM")]
    return elapsed, usage.ru_utime + usage.ru_stime, int(hwm[-1].split()[1])


def setup_repo(repo: Path) -> Path:
    """A git repository at `repo` with the two scripts committed and `gittrack init` done."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q")
    git(repo, "config", "user.name", "bench")
    git(repo, "config", "user.email", "bench@example.org")
    (repo / "tracked.py").write_text(TRACKED)
    (repo / "untracked.py").write_text(UNTRACKED)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "scripts")
    subprocess.run(
        [sys.executable, "-m", "gittrack", "-C", str(repo), "init"],
        check=True,
        capture_output=True,
        env=ENV,
    )
    return repo


def make_repo(root: Path) -> Path:
    return setup_repo(root / "project")


def history_repo(root: Path, n: int, legacy: bool = False) -> Path:
    """A copy of the cached repository holding `n` runs (built on first use); with `legacy`,
    in gittrack 0.1's one-level layout, so that every run measured moves a shard."""

    def build(path: Path) -> None:
        setup_repo(path)
        if n > 100_000 or legacy:
            fill_history_packed(path, n, "tracked.py", legacy=legacy)
        else:
            fill_history(path, n, "tracked.py", per_commit=1 if n <= 10_000 else 1_000)
        if n:  # one pack, too: else the first runs measured start a roll-up behind them
            settle(path)
        # the memo files (gittrack writes one per recorded run) for runs without a memo key: an
        # empty folder. Without it the first run builds them from the lookup table, which is
        # built first: the index's cost (minutes at 1,000,000 runs), not recording's.
        (path / ".git" / "gittrack" / "memo").mkdir(parents=True, exist_ok=True)

    name = f"record-v1layout-{n}" if legacy else f"record-v3-{n}"
    return cached_repo(name, build, root / f"history-{n}")


def measure(repo: Path, reps: int) -> dict[str, float]:
    tracked, untracked, overhead, cpu, mem_t, mem_u, commit = [], [], [], [], [], [], []
    cpu_u: list[float] = []
    py = sys.executable
    for script in ("tracked.py", "untracked.py"):  # warm-up: bytecode caches, packages listing
        timed([py, script, "--x", "-1"], repo)
    for i in range(reps):
        t, tc, m = timed([py, "tracked.py", "--x", str(i)], repo)
        tracked.append(t)
        mem_t.append(m)
        u, uc, m = timed([py, "untracked.py", "--x", str(i)], repo)
        untracked.append(u)
        mem_u.append(m)
        overhead.append(t - u)
        cpu.append(tc - uc)
        cpu_u.append(uc)
        (repo / "note.txt").write_text(str(i))
        start = time.perf_counter()
        git(repo, "add", "note.txt")
        git(repo, "commit", "-qm", f"note {i}")
        commit.append(time.perf_counter() - start)
    return {
        "tracked_s": statistics.median(tracked),
        "untracked_s": statistics.median(untracked),
        "overhead_s": statistics.median(overhead),
        "cpu_overhead_s": statistics.median(cpu),
        "untracked_cpu_s": statistics.median(cpu_u),
        "mem_overhead_mib": statistics.median(t - u for t, u in zip(mem_t, mem_u, strict=True))
        / 1024,
        "git_commit_s": statistics.median(commit),
    }


def overhead_table(
    histories: list[int], reps: int, legacy: tuple[int, ...] = ()
) -> list[dict[str, float]]:
    """The recording overhead over histories of each size; the `legacy` sizes in gittrack 0.1's
    layout, where each run measured is (nearly always) the first in its shard and moves it."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, old in [*((n, False) for n in histories), *((n, True) for n in legacy)]:
            start = time.perf_counter()
            if n == 0:
                repo = make_repo(Path(tmp) / "fresh")
            else:
                repo = history_repo(Path(tmp), n, legacy=old)
            ready = time.perf_counter() - start
            rows.append({"history": n, "legacy": old, "ready_s": ready, **measure(repo, reps)})
            subprocess.run(["rm", "-rf", str(repo)], check=True)
    print(f"\nRecording overhead (median of {reps} paired runs; load average {load()})")
    print(
        f"{'runs recorded':>14} {'untracked':>10} {'tracked':>10} {'overhead':>9} "
        f"{'untracked cpu':>14} {'cpu overhead':>13} {'goal':>6} {'git commit':>11} "
        f"{'mem overhead':>13}"
    )
    for row in rows:
        print(
            f"{str(row['history']) + (' (0.1)' if row['legacy'] else ''):>14} "
            f"{row['untracked_s'] * 1000:>8.0f}ms "
            f"{row['tracked_s'] * 1000:>8.0f}ms {row['overhead_s'] * 1000:>7.1f}ms "
            f"{row['untracked_cpu_s'] * 1000:>12.1f}ms {row['cpu_overhead_s'] * 1000:>11.1f}ms "
            f"{'20ms':>6} "
            f"{row['git_commit_s'] * 1000:>9.0f}ms {row['mem_overhead_mib']:>10.1f}MiB"
        )
    return rows


# -- storage ----------------------------------------------------------------------------------


def objects_size(repo: Path) -> tuple[int, int]:
    """(bytes on disk, files) under .git/objects."""
    size = files = 0
    for folder, _, names in os.walk(repo / ".git" / "objects"):
        for name in names:
            try:  # a roll-up renames and removes its temporary files meanwhile
                size += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except FileNotFoundError:
                continue
            files += 1
    return size, files


def wait_for_housekeeping(repo: Path, timeout: float = 600.0) -> None:
    """Wait until no repack started by gittrack runs (they are detached, so poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-f", f"repack.*{repo}"], capture_output=True, text=True)
        busy = (repo / ".git" / "gc.pid").exists() or out.stdout.strip()
        if not busy and not list((repo / ".git" / "objects" / "pack").glob("tmp_*")):
            return
        time.sleep(0.5)


def record_sweep(repo: Path, n: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "gittrack", "-q", "sweep", "tracked.py", "--x", f"0:{n}", "-j", "2"],
        cwd=repo,
        check=True,
        capture_output=True,
        env=ENV,
    )
    return time.perf_counter() - start


LOOP = """
import os, sys, subprocess
from pathlib import Path
from gittrack import store
from gittrack.model.record import RunRecord
from gittrack.recording.invoke import run_script

run_script(Path("tracked.py"), ["--x", "-1"])  # one real run: its record is the template
repo = store.find_repo(".")
tip = subprocess.run(["git", "log", "-1", "--format=%(trailers:key=Run-Id,valueonly)",
                      store.RUNS_REF], capture_output=True, text=True).stdout.strip()
template = RunRecord.from_toml(store.read_record_bytes(repo, tip), tip)
files = {n: (store.read_run_file(repo, tip, n) or b"")
         for n in store.run_files(repo, tip) if n != "run.toml"}
for i in range(int(sys.argv[1]) - 1):
    template.id = os.urandom(16).hex()
    template.argv, template.params, template.metrics = ["--x", str(i)], {"x": i}, {"y": 2 * i}
    store.write_run(repo, template, files)
"""


def record_loop(repo: Path, n: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", LOOP, str(n)],
        cwd=repo,
        check=True,
        capture_output=True,
        env={**ENV, "GITTRACK_VERBOSITY": "-1"},
    )
    return time.perf_counter() - start


def storage_table(sizes: list[int], reps: int) -> list[dict[str, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            repo = make_repo(Path(tmp) / f"storage-{n}")
            before, _ = objects_size(repo)
            how = "sweep -j 2" if n <= 10_000 else "in-process loop"
            took = record_sweep(repo, n) if n <= 10_000 else record_loop(repo, n)
            wait_for_housekeeping(repo)
            size, files = objects_size(repo)
            runs = len(
                subprocess.run(
                    ["git", "rev-list", "gittrack/runs"], cwd=repo, capture_output=True, text=True
                ).stdout.split()
            )
            measured = measure(repo, reps)
            rows.append(
                {
                    "runs": n,
                    "how": how,
                    "took_s": took,
                    "bytes": size - before,
                    "files": files,
                    "commits": runs,
                    **measured,
                }
            )
            subprocess.run(["rm", "-rf", str(repo)], check=True)
    print(f"\nStorage of runs recorded one by one (load average {load()})")
    print(
        f"{'runs':>8} {'recorded by':>16} {'took':>7} {'.git/objects':>13} {'files':>7} "
        f"{'a run':>8} {'goal':>7} {'overhead then':>14} {'cpu':>7}"
    )
    for row in rows:
        print(
            f"{row['runs']:>8} {row['how']:>16} {row['took_s']:>6.0f}s "
            f"{row['bytes'] / 2**20:>10.1f}MiB {row['files']:>7} "
            f"{row['bytes'] / row['runs']:>6.0f} B {'2 KiB':>7} "
            f"{row['overhead_s'] * 1000:>12.1f}ms {row['cpu_overhead_s'] * 1000:>5.1f}ms"
        )
    return rows


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main(quick: bool = False, big: bool = False) -> dict[str, list[dict[str, float]]]:
    reps = 7 if quick else 21
    histories = [0, 1_000] if quick else [0, 10_000, 100_000, 1_000_000]
    sizes = [300] if quick else [1_000, 10_000, *([100_000] if big else [])]
    return {
        "overhead": overhead_table(histories, reps, legacy=(1_000,) if quick else (1_000_000,)),
        "storage": storage_table(sizes, 5 if quick else 11),
    }


if __name__ == "__main__":
    main(quick="--quick" in sys.argv, big="--big" in sys.argv)
