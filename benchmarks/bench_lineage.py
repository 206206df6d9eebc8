"""Lineage and sweep speed: SVG of a 2,000-run flow, ancestry in 10,000 runs, sweep throughput.

Histories are written straight through store (one commit holding every run folder), so
building them takes seconds; the measured steps are the ones a user waits for.
"""

from __future__ import annotations

import datetime as dt
import os
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


def make_repo(folder: Path) -> store.Repo:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@x",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("GIT_")})
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


def rid(kind: str, n: int) -> str:
    return f"{kind}{n:031d}"[:32] if kind in "abcdef" else f"{n:032x}"


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
    """Sims in groups of `fan_in`, one analysis per group, one final run over the analyses."""
    records, analyses, n = [], [], 0
    groups = max(1, (total - 1) // (fan_in + 1))
    for g in range(groups):
        sims = []
        for s in range(fan_in):
            n += 1
            sims.append(f"{n:032x}")
            records.append(record(sims[-1], "sim.py", [], f"scan-{g}", {"temp": s, "seed": g}, n))
        n += 1
        analyses.append(f"{n:032x}")
        records.append(record(analyses[-1], "analyse.py", sims, t=n))
    n += 1
    final = f"{n:032x}"
    records.append(record(final, "fit.py", analyses, t=n))
    return records, final


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def main(quick: bool = False) -> list[tuple[str, float, float]]:
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        # 1. SVG of a 2,000-run flow with fan-in 50
        repo = make_repo(Path(tmp) / "fan")
        total = 400 if quick else 2000
        records, final = fan_in_history(total, 50)
        write_history(repo, records)
        ready(Index(repo))  # the one-time index build is not what is measured
        seconds, _ = timed(lambda: lineage.render(lineage.build(repo, final), "svg"))
        rows.append((f"lineage SVG, {len(records)} runs, fan-in 50", seconds, 5.0))
        seconds, _ = timed(lambda: lineage.render(lineage.build(repo, final, collapse=True), "svg"))
        rows.append(("  same, --collapse", seconds, 5.0))

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
        from gittrack.execute.sweep import sweep

        repo3 = make_repo(Path(tmp) / "sweep")
        n = 10 if quick else 40
        old = os.getcwd()
        os.chdir(repo3.root)
        try:
            seconds, report = timed(
                lambda: sweep("sim.py", ["--x", f"0:{n}"], jobs=2, name="bench")
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
