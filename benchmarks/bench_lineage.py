"""Lineage and sweep speed: `gittrack lineage -o x.svg` of a 2,000-run flow and of the folded
flow of an analysis of 100,000 runs, ancestry in 10,000 runs, sweep throughput.

The two lineage goals are timed as whole `gittrack lineage RUN -o x.svg` processes (start-up,
index read, graph, `dot`), wall and CPU time (user+sys of the process and its children), the
median of five, beside two baselines from the same run: `dot -Tsvg` alone on the DOT source that
gittrack hands to it, and the start-up of `gittrack --version`. Those histories are written with
`git fast-import`, one commit per run as the storage contract says, once: later runs copy them
from the benchmarks' cache (benchmarks/common.py, `cached_repo`); the one-time index build is
done first and reported, not timed in the lineage rows. The ancestry and sweep rows are timed in
process (histories written as one commit holding every run folder).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gittrack import store
from gittrack.index.db import Index
from gittrack.index.edges import ready
from gittrack.library import lineage
from gittrack.model.record import Code, Input, Output, RunRecord, run_folder
from gittrack.store import project

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cached_repo, finish_fast_import

ROOT = Path(__file__).resolve().parents[1]
SIM = """\
import click
import gittrack


@gittrack.command()
@click.option("--x", type=int, default=0)
def main(x):
    return {"y": x * 2}


if __name__ == "__main__":
    main()
"""


HISTORY_VERSION = 2  # of the cached histories below: bump when their records change


def git_identity() -> None:
    os.environ.update(
        {
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "b@x",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "b@x",
        }
    )


def make_repo(folder: Path) -> store.Repo:
    git_identity()
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    (folder / "sim.py").write_text(SIM)
    subprocess.run(["git", "add", "sim.py"], cwd=folder, check=True)
    subprocess.run(["git", "commit", "-qm", "sim"], cwd=folder, check=True)
    repo = store.find_repo(folder)
    project.init(repo)
    return repo


def write_history(repo: store.Repo, records: list[RunRecord]) -> None:
    writer = store.ObjectWriter(repo)
    edits: dict[str, store.Entry] = {}
    for record in records:
        edits.update(
            {
                f"{run_folder(record.id)}/{k}": v
                for k, v in store.write_blobs(
                    writer, {"run.toml": record.to_toml().encode()}
                ).items()
            }
        )
    store.commit_to_branch(repo, f"bench: {len(records)} runs", edits)


def fast_import(repo: store.Repo, records: list[RunRecord]) -> None:
    """Append the records to the runs branch, one commit each, through `git fast-import`."""
    tip = repo.git("rev-parse", store.RUNS_REF).stdout.decode().strip()
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"], cwd=repo.root, stdin=subprocess.PIPE
    )
    assert proc.stdin
    stamp = 1_704_067_200
    chunks: list[bytes] = []
    for i, rec in enumerate(records):
        body = rec.to_toml().encode()
        message = f"run {rec.id[:8]}: {rec.command}\n\nRun-Id: {rec.id}\n".encode()
        chunks.append(
            f"commit {store.RUNS_REF}\ncommitter bench <b@x> {stamp + i} +0000\n".encode()
            + f"data {len(message)}\n".encode()
            + message
            + (f"from {tip}\n".encode() if i == 0 else b"")
            + f"M 100644 inline {run_folder(rec.id)}/run.toml\ndata {len(body)}\n".encode()
            + body
            + b"\n"
        )
        if len(chunks) >= 500:
            proc.stdin.write(b"".join(chunks))
            chunks = []
    finish_fast_import(proc, chunks)


def process(cwd: Path, argv: list[str], stdout: Path | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole process; CPU is user+sys of it and its children."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = stdout.open("wb") if stdout else subprocess.DEVNULL
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if stdout:
        out.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def median_process(cwd: Path, argv: list[str], repeat: int = 5) -> tuple[float, float]:
    """Median wall and median CPU seconds of `repeat` runs of a whole process."""
    times = [process(cwd, argv) for _ in range(repeat)]
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def lineage_rows(repo: store.Repo, final: str, what: str, goal: float) -> list[tuple]:
    """`gittrack lineage FINAL -o x.svg` whole, beside `dot -Tsvg` on its DOT and start-up."""
    gittrack = [sys.executable, "-m", "gittrack"]
    svg = repo.root / "x.svg"
    dot_file = repo.root / "x.dot"
    process(repo.root, [*gittrack, "lineage", final, "--format", "dot"], stdout=dot_file)
    wall, cpu = median_process(repo.root, [*gittrack, "lineage", final, "-o", str(svg)])
    assert svg.stat().st_size > 0
    dot_wall, dot_cpu = median_process(repo.root, ["dot", "-Tsvg", str(dot_file), "-o", "y.svg"])
    up_wall, up_cpu = median_process(repo.root, [*gittrack, "--version"])
    return [
        (f"lineage -o x.svg, {what} (wall)", wall, goal),
        ("  CPU, user+sys with children", cpu, 0.0),
        ("  baseline: dot -Tsvg on the same DOT (wall)", dot_wall, 0.0),
        ("  baseline: dot -Tsvg, CPU", dot_cpu, 0.0),
        ("  baseline: gittrack --version (wall)", up_wall, 0.0),
        ("  baseline: gittrack --version, CPU", up_cpu, 0.0),
    ]


def sweeps_history(sweeps: int, size: int) -> tuple[list[RunRecord], str]:
    """`sweeps` experiments of `size` runs, one analysis per sweep over all its runs, a final
    fit over the analyses: the flow of an analysis of sweeps * size runs."""
    records, analyses, n = [], [], 0
    for g in range(sweeps):
        sims = []
        for s in range(size):
            n += 1
            sims.append(hid(n))
            records.append(record(sims[-1], "sim.py", [], f"scan-{g}", {"temp": s, "seed": g}, n))
        n += 1
        analyses.append(hid(n))
        records.append(record(analyses[-1], "analyse.py", sims, t=n))
    n += 1
    final = hid(n)
    records.append(record(final, "fit.py", analyses, t=n))
    return records, final


def hid(n: int) -> str:
    """The n-th run id, spread over the runs/xx/ folders as real (random) ids are."""
    return hashlib.md5(str(n).encode()).hexdigest()


def record(
    run_id: str,
    command: str,
    inputs: list[str],
    experiment: str = "",
    params: dict | None = None,
    t: int = 0,
) -> RunRecord:
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=t)
    rec = RunRecord(
        id=run_id,
        command=command,
        status="completed",
        started=start,
        finished=start,
        experiment=experiment,
        params=params or {},
        code=Code(commit="0" * 40),
        inputs=[Input(run=i, output="data", md5="0" * 32) for i in inputs],
    )
    rec.outputs["data"] = Output(path="data.npy", md5=f"{int(run_id, 16):032x}", size=10)
    return rec


def fan_in_history(total: int, fan_in: int) -> tuple[list[RunRecord], str]:
    """About `total` runs: sims in groups of `fan_in`, one analysis per group, a final fit."""
    return sweeps_history(max(1, (total - 1) // (fan_in + 1)), fan_in)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def main(quick: bool = False) -> list[tuple[str, float, float]]:
    rows: list[tuple[str, float, float]] = []
    git_identity()
    with tempfile.TemporaryDirectory() as tmp:
        # 1. SVG of a 2,000-run flow with fan-in 50, and 2. the folded flow of 100,000 runs
        for name, (records, final), goal in (
            ("fan", fan_in_history(400 if quick else 2000, 50), 1.0),
            ("wide", sweeps_history(20, 250 if quick else 5000), 2.0),
        ):
            t0 = time.perf_counter()
            repo = store.find_repo(
                cached_repo(
                    f"lineage-v{HISTORY_VERSION}-{name}-{len(records)}",
                    lambda path, records=records: fast_import(make_repo(path), records),
                    Path(tmp) / name,
                )
            )
            written = time.perf_counter() - t0
            build = process(repo.root, [sys.executable, "-m", "gittrack", "ls", "--limit", "1"])
            what = f"{len(records):,} runs" + (" (20 sweeps, folded)" if name == "wide" else "")
            rows += lineage_rows(repo, final, what, goal)
            rows.append(("  (history: git fast-import once, then a cached copy)", written, 0.0))
            rows.append(("  (first index build by `gittrack ls`, once)", build[0], 0.0))

        # 2. ancestry in a 10,000-run history
        repo2 = make_repo(Path(tmp) / "deep")
        records, final = fan_in_history(2000 if quick else 10_000, 50)
        write_history(repo2, records)
        build_s, _ = timed(lambda: ready(Index(repo2)))
        seconds, (seen, _) = timed(lambda: lineage.walk(Index(repo2), final))
        found = seen - {final}
        assert len(found) == len(records) - 1, len(found)
        rows.append((f"ancestry, {len(records)} runs ({len(found)} ancestors)", seconds, 1.0))
        scan_s, _ = timed(
            lambda: [
                RunRecord.from_toml(d or b"", "x")
                for _, d in repo2.reader().read_many(
                    f"{store.RUNS_REF}:{run_folder(i)}/run.toml" for i in store.list_run_ids(repo2)
                )
            ]
        )
        rows.append(("  baseline: parse every run.toml", scan_s, 0.0))
        rows.append(("  (first index build, once)", build_s, 0.0))

        # 3. sweep throughput, -j 2, trivial runs
        from gittrack.execute.sweep import SweepOptions, sweep

        repo3 = make_repo(Path(tmp) / "sweep")
        n = 10 if quick else 40
        old = os.getcwd()
        os.chdir(repo3.root)
        try:
            seconds, report = timed(
                lambda: sweep("sim.py", ["--x", f"0:{n}"], SweepOptions(jobs=2, name="bench"))
            )
        finally:
            os.chdir(old)
        assert report.counts == {"completed": n}, report.counts
        rows.append((f"sweep -j 2, {n} runs (runs/s; target >= 5)", n / seconds, 5.0))
        t0 = time.perf_counter()
        for x in range(3):
            subprocess.run(
                [sys.executable, "sim.py", "--x", str(1000 + x)],
                cwd=repo3.root,
                check=True,
                capture_output=True,
            )
        per_process = 3 / (time.perf_counter() - t0)
        rows.append(("  baseline: one 'python sim.py' at a time (runs/s)", per_process, 0.0))
    print(f"{'measurement':<52} {'value':>9} {'target':>8} {'ratio':>7}")
    for name, value, target in rows:
        ratio = f"{value / target:7.2f}" if target else "       "
        shown = f"{target:8.1f}" if target else "        "
        print(f"{name:<52} {value:9.3f} {shown} {ratio}")
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
