"""Benchmark of the lookup table (issue goals of the index), each beside its baseline.

A synthetic history (one commit per run on `gittrack/runs`, as the storage contract says) is
written fast through `git fast-import` and cached under the temporary folder, keyed by
HISTORY_VERSION and size (build it once: 1,000,000 runs take long); then the CLI and the index
are timed as whole processes (wall, CPU of the process and its git children, peak memory of the
largest process) and compared with a full scan that parses every run.toml from git, measured in
the same run.

    python benchmarks/bench_index.py              # 100,000 runs (and 1,000 for `show`)
    python benchmarks/bench_index.py --quick      # 5,000 runs
    python benchmarks/bench_index.py --million    # and `ls`/`show` at 1,000,000 runs
    python benchmarks/bench_index.py --quick --dvc   # and `dvc exp show` at 200 experiments
"""

from __future__ import annotations

import compileall
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import finish_fast_import, settle

from gittrack.model.record import run_folder

ROOT = Path(__file__).resolve().parents[1]
HISTORY_VERSION = 4  # of the synthetic record and history: bump to rebuild cached histories
CACHE = Path(tempfile.gettempdir()) / "gittrack-bench-index"
QUERY = "params.temp >= 200 and (metrics.energy < -1.5 or status = 'failed')"

TEMPLATE = """\
schema = 2
id = "{id}"
command = "sim.py"
status = "{status}"
name = "scan-{i}"
argv = [
    "--temp",
    "{temp}",
    "--seed",
    "{seed}",
]
started = {started}
finished = {finished}
duration_s = {duration}
exit_code = {exit_code}
experiment = "{experiment}"
tags = [{tags}]

[param_sources]
temp = "commandline"
seed = "commandline"
steps = "default"
method = "default"

[metrics]
energy = {energy}
acceptance = {acceptance}

[env]
python = "3.11.2"
implementation = "CPython"
platform = "Linux-6.1.0-x86_64-with-glibc2.36"
host = "node{host}"
user = "ada"
gittrack = "0.1.0"

[logs]
stdout = "stdout.log"

[params]
temp = {temp}
steps = 1000
seed = {seed}
method = "{method}"

[code]
commit = "{code}"
tree = "{tree}"
hash = "{hash}"
dirty = false
script = "sim.py"
head = "{code}"
branch = "main"
detached = false
shallow = false

[code.files."sim.py"]
blob = "{blob}"
dirty = false
"""


def synthetic_run(i: int, code: str, tree: str, rng: random.Random) -> tuple[str, str]:
    """(run id, run.toml text) of the i-th synthetic run: a temperature/seed scan."""
    import datetime as dt

    run_id = f"{rng.getrandbits(128):032x}"
    started = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=37 * i)
    duration = round(rng.uniform(1, 600), 3)
    failed = rng.random() < 0.05
    temp = 50 * rng.randint(1, 20)
    text = TEMPLATE.format(
        id=run_id,
        i=i,
        status="failed" if failed else "completed",
        temp=float(temp),
        seed=rng.randint(0, 9),
        started=started.isoformat(sep=" ").replace(".000", ""),
        finished=(started + dt.timedelta(seconds=duration)).isoformat(sep=" "),
        duration=duration,
        exit_code=1 if failed else 0,
        experiment=f"exp-{i // 1000}",
        tags='"reference"' if i % 997 == 0 else "",
        energy=round(rng.gauss(-1.0, 0.5), 6),
        acceptance=round(rng.random(), 4),
        host=i % 16,
        method=rng.choice(["verlet", "leapfrog"]),
        code=code,
        tree=tree,
        hash="e" * 64,
        blob="d" * 40,
    )
    return run_id, text


def append_runs(
    repo: Path, count: int, start: int = 0, seed: int = 1, per_commit: int = 1
) -> list[str]:
    """Append `count` synthetic runs to the runs branch via git fast-import: one commit each
    (`per_commit` > 1 puts that many runs in a commit, for histories too big to write one
    commit a run: at 1,000,000 runs each commit rewrites shard trees of ~3,900 entries, and
    fast-import would take hours; the index reads the same tip tree either way)."""
    rng = random.Random(seed * 1_000_003 + start)
    code = git(repo, "rev-parse", "HEAD")
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    tip = git(repo, "rev-parse", "refs/heads/gittrack/runs")
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"], cwd=repo, stdin=subprocess.PIPE
    )
    assert proc.stdin
    ids = []
    stamp = 1_704_067_200 + start * 37
    chunks: list[bytes] = []
    for first in range(start, start + count, per_commit):
        batch = [
            synthetic_run(i, code, tree, rng)
            for i in range(first, min(first + per_commit, start + count))
        ]
        ids += [run_id for run_id, _ in batch]
        trailers = "".join(f"Run-Id: {run_id}\n" for run_id, _ in batch)
        message = f"run {batch[0][0][:8]}: sim.py --temp {first}\n\nStatus: completed\n{trailers}".encode()
        header = (
            f"commit refs/heads/gittrack/runs\n"
            f"committer Ada <ada@example.org> {stamp + 37 * (first - start)} +0000\n"
            f"data {len(message)}\n"
        ).encode()
        frm = f"from {tip}\n".encode() if first == start else b""
        files = b"".join(
            f"M 100644 inline {run_folder(run_id)}/run.toml\ndata {len(text.encode())}\n".encode()
            + text.encode()
            + b"\n"
            for run_id, text in batch
        )
        chunks.append(header + message + frm + files)
        if len(chunks) >= 500:
            proc.stdin.write(b"".join(chunks))
            chunks = []
    finish_fast_import(proc, chunks)
    return ids


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(folder: Path) -> Path:
    """A git repository with one code commit and an initialised runs branch."""
    repo = folder / "project"
    repo.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.org",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.org",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("GIT_")})
    git(repo, "init", "-q", "-b", "main")
    (repo / "sim.py").write_text("print('simulate')\n")
    git(repo, "add", "sim.py")
    git(repo, "commit", "-qm", "code")
    run_py(
        repo,
        "from gittrack import store; from gittrack.store import project; project.init(store.find_repo('.'))",
    )
    return repo


# run before the measured Python code: at its exit, the process reports its own peak (VmHWM)
# and the largest of the processes it waited for (git, index workers)
PEAK = """
import atexit, os, resource, sys
def _report_peak():
    if os.path.exists("/proc/self/status"):
        peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")]
        sys.stderr.write(f"peak-rss-kb {peak[0]}\\n")
    sys.stderr.write(f"children-rss-kb {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n")
atexit.register(_report_peak)
"""
GITTRACK = PEAK + (
    "import runpy; sys.argv[0] = 'gittrack'; "
    "runpy.run_module('gittrack', run_name='__main__', alter_sys=True)"
)


def run_py(repo: Path, code: str) -> Timing:
    """Run Python code in a fresh process in `repo` (see `timed`)."""
    return timed(repo, [sys.executable, "-c", PEAK + code])


class Timing(NamedTuple):
    """One whole process: wall seconds, CPU seconds (user + sys, its git children included),
    its own peak RSS and that of its largest process (itself or a child), in bytes."""

    wall: float
    cpu: float
    peak: int
    largest: int


def timed(repo: Path, argv: list[str], exit_code: int = 0) -> Timing:
    """Run `argv` in `repo` to its end: its wall and CPU time and peak memory.

    The process's own peak is VmHWM and the largest is the greater of it and the `ru_maxrss`
    of the children it waited for (git, index workers), both reported by the process itself
    (PEAK). wait4's `ru_maxrss` for the process would count the benchmark's own memory, which a
    forked child carries until it execs (3.7 GiB after building a million-run history here); it
    is the figure only for a process that reports nothing (not Python).
    """
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    err = proc.stderr.read().decode() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != exit_code:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err}")
    reported: dict[str, int] = {}
    for line in err.splitlines():
        name, _, value = line.partition(" ")
        if name in ("peak-rss-kb", "children-rss-kb") and value.isdigit():
            reported[name] = int(value) * 1024
    if "peak-rss-kb" not in reported:
        largest = usage.ru_maxrss * 1024
        return Timing(elapsed, usage.ru_utime + usage.ru_stime, largest, largest)
    peak = reported["peak-rss-kb"]
    largest = max(peak, reported.get("children-rss-kb", 0))
    return Timing(elapsed, usage.ru_utime + usage.ru_stime, peak, largest)


def cli(repo: Path, *args: str, times: int = 5, exit_code: int = 0) -> Timing:
    """The median run (by wall time) of `gittrack ARGS` as a user would start it."""
    runs = sorted(
        (timed(repo, [sys.executable, "-c", GITTRACK, *args], exit_code) for _ in range(times)),
        key=lambda t: t.wall,
    )
    return runs[len(runs) // 2]


SYNC = "from gittrack import store; from gittrack.index.db import Index; Index(store.find_repo('.')).sync()"


def build_index(repo: Path) -> Timing:
    """A first index build, whole process: the index file is removed first."""
    for suffix in ("", "-wal", "-shm"):
        (repo / ".git" / "gittrack" / f"index.sqlite{suffix}").unlink(missing_ok=True)
    return run_py(repo, SYNC)


def history(n: int) -> tuple[Path, list[str]]:
    """A repository with `n` synthetic runs, built once and cached (see HISTORY_VERSION)."""
    folder = CACHE / f"v{HISTORY_VERSION}-{n}"
    if not (folder / "ready").exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        repo = make_repo(folder)
        t0 = time.perf_counter()
        ids = append_runs(repo, n, per_commit=1 if n <= 100_000 else 10_000)
        settle(repo)
        took = time.perf_counter() - t0
        print(f"synthetic history: {n:,} runs in {took:.1f} s (git fast-import)", file=sys.stderr)
        (folder / "ids.txt").write_text("\n".join(ids))
        (folder / "ready").write_text("")
    return folder / "project", (folder / "ids.txt").read_text().split()


# the plain way to answer a query without an index: every run.toml's blob id from one
# `git ls-tree -r`, their bytes from one `git cat-file --batch`, each parsed by tomllib (naming
# them `gittrack/runs:<path>` instead made git walk the trees for each: over 17 minutes at a
# million runs)
FULL_SCAN = """
import subprocess, tomllib
listing = subprocess.run(["git", "ls-tree", "-r", "gittrack/runs", "runs"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
revs = "".join(line.split()[2] + "\\n" for line in listing if line.endswith("/run.toml"))
out = subprocess.run(["git", "cat-file", "--batch"], input=revs.encode(), capture_output=True).stdout
found, pos = [], 0
while pos < len(out):
    nl = out.index(b"\\n", pos); size = int(out[pos:nl].split()[2]); body = out[nl + 1: nl + 1 + size]
    pos = nl + 2 + size
    r = tomllib.loads(body.decode())
    if r["params"]["temp"] >= 200 and (r["metrics"]["energy"] < -1.5 or r["status"] == "failed"):
        found.append((r["started"], r["id"]))
found.sort(reverse=True)
print(found[:20])
"""


DVC_TRAIN = """\
import json, yaml
temp = yaml.safe_load(open("params.yaml"))["temp"]
json.dump({"energy": -temp / 100.0}, open("metrics.json", "w"))
"""
DVC_YAML = """\
stages:
  sim:
    cmd: python train.py
    deps: [train.py]
    params: [temp]
    metrics:
      - metrics.json:
          cache: false
"""


def dvc_comparison(folder: Path, count: int) -> tuple[float, float] | None:
    """(`dvc exp show` with `count` experiments, `gittrack ls` with `count` runs) in seconds."""
    dvc = Path(sys.executable).with_name("dvc")
    if not dvc.exists():
        return None
    repo = folder / "dvc-project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text(DVC_TRAIN)
    (repo / "params.yaml").write_text("temp: 1\n")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    subprocess.run([str(dvc), "init", "-q"], cwd=repo, check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "dvc project")
    for i in range(count):
        subprocess.run(
            [str(dvc), "exp", "run", "-q", "-S", f"temp={i + 1}"],
            cwd=repo,
            check=True,
            capture_output=True,
        )
    show = statistics.median(
        timed(repo, [str(dvc), "exp", "show", "--no-pager", "--json"]).wall for _ in range(3)
    )
    (folder / "small").mkdir()
    small = make_repo(folder / "small")
    append_runs(small, count)
    run_py(small, SYNC)
    return show, cli(small, "ls").wall


def main(
    quick: bool = False, dvc: bool | None = None, million: bool = False
) -> list[dict[str, object]]:
    """Measure, print the table; returns its rows.

    `million` adds `ls` and `show` at 1,000,000 runs (the history and its index are built
    once and cached); `dvc` adds `dvc exp show` at 200 experiments (~10 minutes).
    """
    n = 5_000 if quick else 100_000
    rows: list[dict[str, object]] = []
    # as installed (pip compiles the package): with PYTHONDONTWRITEBYTECODE set and no fresh
    # bytecode, every process would compile gittrack's sources anew (~40 ms of each `ls`)
    compileall.compile_dir(ROOT / "gittrack", quiet=1)

    def row(
        what: str,
        t: Timing | float,
        goal: float,
        baseline: Timing | float | None = None,
        unit: str = "s",
    ) -> None:
        rows.append({"what": what, "t": t, "goal": goal, "baseline": baseline, "unit": unit})

    repo, ids = history(n)
    small, small_ids = history(1_000)
    scan = run_py(repo, FULL_SCAN)
    build = build_index(repo)
    row(f"first index build, {n:,} runs", build, 5.0, scan)
    row("  peak memory of its largest process", build.largest / 2**20, 200.0, None, "MiB")
    ls = cli(repo, "ls", "--where", QUERY, "--limit", "20")
    row(f"ls --where Q --limit 20, {n:,} runs", ls, 0.150, scan)
    sort = cli(
        repo,
        "ls",
        "--where",
        "params.seed in (1, 3) and name like 'scan-1%'",
        "--sort=-metrics.energy",
        "--limit",
        "10",
    )
    row(f"ls --where ... --sort=-metrics.energy --limit 10, {n:,}", sort, 0.300, scan)
    run_py(small, SYNC)
    row("show <6-char prefix>, 1,000 runs", cli(small, "show", small_ids[500][:6]), 0.200)
    row(f"show <6-char prefix>, {n:,} runs", cli(repo, "show", ids[n // 2][:6]), 0.200, scan)
    typo = cli(repo, "show", "scam-5", exit_code=1)  # "Did you mean scan-5, ...?"
    row(f"show <a name with a typo>, {n:,} runs", typo, 0.200, scan)
    for fmt in ("json", "csv"):
        dump = min(
            (
                timed(repo, [sys.executable, "-c", GITTRACK, "ls", "--format", fmt])
                for _ in range(3)
            ),
            key=lambda t: t.wall,
        )
        row(f"ls --format {fmt}, all {n:,} runs", dump, 2.0)
        row(f"  peak memory of ls --format {fmt}", dump.peak / 2**20, 150.0, None, "MiB")
    bare = timed(repo, [sys.executable, "-c", "import gittrack.cli"])
    row("python + import gittrack.cli", bare, 0.150)
    tip = git(repo, "rev-parse", "refs/heads/gittrack/runs")
    append_runs(repo, 1_000, start=n)
    settle(repo)  # the new runs rolled up with the rest, as after their own runs or a pull
    sync = run_py(repo, SYNC)
    git(repo, "update-ref", "refs/heads/gittrack/runs", tip)  # the cached history as it was
    run_py(repo, SYNC)
    row(f"sync of 1,000 new runs at {n:,}", sync, 0.300)
    row("  peak memory of its largest process", sync.largest / 2**20, 200.0, None, "MiB")
    size = (repo / ".git" / "gittrack" / "index.sqlite").stat().st_size
    if million:
        big, big_ids = history(1_000_000)
        if not (big / ".git" / "gittrack" / "index.sqlite").exists():
            built = build_index(big)
            print(
                f"first index build at 1,000,000 runs: {built.wall:.1f} s wall, "
                f"{built.cpu:.1f} s CPU, largest process {built.largest / 2**20:.0f} MiB",
                file=sys.stderr,
            )
        big_scan = run_py(big, FULL_SCAN)
        row(
            "ls --where Q --limit 20, 1,000,000 runs",
            cli(big, "ls", "--where", QUERY, "--limit", "20"),
            0.150,
            big_scan,
        )
        row(
            "show <6-char prefix>, 1,000,000 runs",
            cli(big, "show", big_ids[500_000][:6]),
            0.200,
            big_scan,
        )
    if dvc:
        versus = dvc_comparison(Path(tempfile.mkdtemp(prefix="gittrack-bench-dvc-")), 200)
        if versus:
            row("ls at 200 runs (baseline: dvc exp show, 200 exps)", versus[1], 0.300, versus[0])

    load = os.getloadavg()
    print(
        f"\nLookup table at {n:,} runs (index file {size / 2**20:.0f} MiB); "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        "whole processes; CPU = user + sys of the process and its git children; baseline: a"
        " full scan parsing every run.toml from git"
    )
    print(
        f"{'measure':<52} {'wall':>9} {'CPU':>8} {'goal':>8} {'baseline':>16} {'speed-up':>8}  met"
    )
    for r in rows:
        t, goal, base, unit = r["t"], float(r["goal"]), r["baseline"], str(r["unit"])  # type: ignore[arg-type]
        value = t.wall if isinstance(t, Timing) else float(t)  # type: ignore[arg-type]
        cpu = f"{t.cpu:.2f} s" if isinstance(t, Timing) else ""
        shown = f"{value * 1000:.0f} ms" if unit == "s" and value < 10 else f"{value:.1f} {unit}"
        goal_text = f"{goal * 1000:.0f} ms" if unit == "s" and goal < 10 else f"{goal:.0f} {unit}"
        base_text, ratio = "", ""
        if isinstance(base, Timing):
            base_text = f"{base.wall:.1f} s ({base.cpu:.1f} CPU)"
            ratio = f"{base.wall / value:.0f}x"
        elif base is not None:
            base_text = f"{float(base):.1f} {unit}"  # type: ignore[arg-type]
        ok = "yes" if value <= goal else "NO"
        print(
            f"{r['what']:<52} {shown:>9} {cpu:>8} {goal_text:>8} {base_text:>16} {ratio:>8}  {ok}"
        )
    return rows


if __name__ == "__main__":
    main(
        quick="--quick" in sys.argv,
        dvc=True if "--dvc" in sys.argv else None,
        million="--million" in sys.argv,
    )
