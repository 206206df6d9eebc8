"""Benchmark of the lookup table: queries, `show` and syncing at 100,000 runs.

A synthetic history (one commit per run on `gittrack/runs`, as the storage contract says) is
written fast through `git fast-import`; then the CLI and the index are timed in subprocesses
and compared with a full scan that parses every run.toml from git, measured in the same run.

    python benchmarks/bench_index.py            # 100,000 runs (a few minutes)
    python benchmarks/bench_index.py --quick    # 5,000 runs
    python benchmarks/bench_index.py --quick --dvc   # and `dvc exp show` at 200 experiments
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def append_runs(repo: Path, count: int, start: int = 0, seed: int = 1) -> list[str]:
    """Append `count` synthetic runs to the runs branch, one commit each, via git fast-import."""
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
    for i in range(start, start + count):
        run_id, text = synthetic_run(i, code, tree, rng)
        ids.append(run_id)
        body = text.encode()
        message = (
            f"run {run_id[:8]}: sim.py --temp {i}\n\nStatus: completed\nRun-Id: {run_id}\n".encode()
        )
        header = (
            f"commit refs/heads/gittrack/runs\n"
            f"committer Ada <ada@example.org> {stamp + 37 * (i - start)} +0000\n"
            f"data {len(message)}\n"
        ).encode()
        frm = f"from {tip}\n".encode() if i == start else b""
        path = f"runs/{run_id[:2]}/{run_id}/run.toml"
        chunks.append(
            header
            + message
            + frm
            + f"M 100644 inline {path}\ndata {len(body)}\n".encode()
            + body
            + b"\n"
        )
        if len(chunks) >= 500:
            proc.stdin.write(b"".join(chunks))
            chunks = []
    proc.stdin.write(b"".join(chunks) + b"done\n")
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
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


PEAK = """
import os, sys
if os.path.exists("/proc/self/status"):
    peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")]
    sys.stderr.write(f"peak-rss-kb {peak[0]}\\n")
"""


def run_py(repo: Path, code: str) -> tuple[float, int]:
    """Run Python code in a fresh process in `repo`: (wall seconds, its peak RSS in bytes).

    The peak is the process's own (VmHWM): `ru_maxrss` would count the benchmark's memory,
    which a forked child carries until it execs.
    """
    return timed(repo, [sys.executable, "-c", code + PEAK])


def timed(repo: Path, argv: list[str]) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {err}")
    peak = [int(line.split()[1]) for line in err.splitlines() if line.startswith("peak-rss-kb ")]
    return elapsed, (peak[0] if peak else usage.ru_maxrss) * 1024


def cli(repo: Path, *args: str) -> float:
    """Median wall time of five runs of `gittrack ARGS` as a user would start it."""
    return statistics.median(
        timed(repo, [sys.executable, "-m", "gittrack", *args])[0] for _ in range(5)
    )


FULL_SCAN = """
import subprocess, tomllib
ids = subprocess.run(["git", "ls-tree", "-r", "--name-only", "gittrack/runs", "runs"],
                     capture_output=True, text=True, check=True).stdout.split()
revs = "".join(f"gittrack/runs:{p}\\n" for p in ids if p.endswith("/run.toml"))
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
        timed(repo, [str(dvc), "exp", "show", "--no-pager", "--json"])[0] for _ in range(3)
    )
    (folder / "small").mkdir()
    small = make_repo(folder / "small")
    append_runs(small, count)
    run_py(
        small,
        "from gittrack import store; from gittrack.index.db import Index; Index(store.find_repo('.')).sync()",
    )
    return show, cli(small, "ls")


def main(quick: bool = False, dvc: bool | None = None) -> list[dict[str, object]]:
    """Build the history, measure, print the table; returns its rows.

    `dvc` adds `dvc exp show` at 200 experiments (minutes: each `dvc exp run` takes seconds);
    by default only in the full run.
    """
    n = 5_000 if quick else 100_000
    dvc = bool(dvc)  # `dvc exp show` at 200 experiments takes ~10 minutes: only with --dvc
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="gittrack-bench-index-") as tmp:
        repo = make_repo(Path(tmp))
        t0 = time.perf_counter()
        ids = append_runs(repo, n)
        built = time.perf_counter() - t0
        print(f"synthetic history: {n:,} runs in {built:.1f} s (git fast-import)", file=sys.stderr)

        scan, scan_rss = run_py(repo, FULL_SCAN)
        build, build_rss = run_py(
            repo,
            "from gittrack import store; from gittrack.index.db import Index; Index(store.find_repo('.')).sync()",
        )
        ls = cli(repo, "ls", "--where", QUERY, "--limit", "20")
        sort = cli(
            repo,
            "ls",
            "--where",
            "params.seed in (1, 3) and name like 'scan-1%'",
            "--sort=-metrics.energy",
            "--limit",
            "10",
        )
        show = cli(repo, "show", ids[n // 2][:6])
        # every run as JSON and as CSV, whole process to /dev/null: (seconds, peak RSS bytes)
        dumps = {
            fmt: min(
                timed(repo, [sys.executable, "-m", "gittrack", "ls", "--format", fmt])
                for _ in range(3)
            )
            for fmt in ("json", "csv")
        }
        bare, _ = timed(repo, [sys.executable, "-c", "import gittrack.cli"])
        append_runs(repo, 1_000, start=n)
        sync, sync_rss = run_py(
            repo,
            "from gittrack import store; from gittrack.index.db import Index; Index(store.find_repo('.')).sync()",
        )
        size = (repo / ".git" / "gittrack" / "index.sqlite").stat().st_size
        versus_dvc = dvc_comparison(Path(tmp), 200) if dvc else None

    def row(
        what: str, value: float, target: float, baseline: float | None = None, unit: str = "s"
    ) -> None:
        rows.append(
            {"what": what, "value": value, "target": target, "baseline": baseline, "unit": unit}
        )

    row(f"ls --where ... --limit 20 (warm, {n:,} runs)", ls, 0.300, scan)
    row("ls --where ... --sort=-metrics.energy --limit 10", sort, 0.300, scan)
    row("show <6-char prefix>", show, 0.200, scan)
    for fmt, (took, peak) in dumps.items():
        row(f"ls --format {fmt}, all {n:,} runs", took, 2.0)
        row(f"peak memory of ls --format {fmt}", peak / 2**20, 150.0, None, "MiB")
    row("first index build", build, 60.0)
    row("sync 1,000 new runs", sync, 2.0)
    row("peak memory of the first build", build_rss / 2**20, 200.0, scan_rss / 2**20, "MiB")
    row("peak memory of a sync", sync_rss / 2**20, 200.0, None, "MiB")
    if versus_dvc:
        row(
            "ls at 200 runs (baseline: dvc exp show, 200 exps)", versus_dvc[1], 0.300, versus_dvc[0]
        )
    print(
        f"\nLookup table at {n:,} runs (index file {size / 2**20:.0f} MiB; python + import gittrack.cli alone: {bare * 1000:.0f} ms)"
    )
    print("baseline: a full scan parsing every run.toml from git (or what the row names)")
    print(f"{'measure':<52} {'gittrack':>10} {'target':>9} {'baseline':>10} {'speed-up':>9}  ok")
    for r in rows:
        value, target, base = float(r["value"]), float(r["target"]), r["baseline"]  # type: ignore[arg-type]
        unit = str(r["unit"])
        show_v = f"{value * 1000:.0f} ms" if unit == "s" and value < 10 else f"{value:.1f} {unit}"
        show_t = (
            f"{target * 1000:.0f} ms" if unit == "s" and target < 10 else f"{target:.0f} {unit}"
        )
        show_b = "" if base is None else (f"{float(base):.1f} {unit}")  # type: ignore[arg-type]
        ratio = "" if base is None or unit != "s" else f"{float(base) / value:.0f}x"  # type: ignore[arg-type]
        ok = "yes" if value <= target else "NO"
        print(f"{r['what']:<52} {show_v:>10} {show_t:>9} {show_b:>10} {ratio:>9}  {ok}")
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv, dvc=True if "--dvc" in sys.argv else None)
