"""A real SLURM on this machine (tests/slurm_cluster.py): throughput and cancelling.

1. Throughput of N trivial tracked runs (quick: 20, else 200) on one shared repository: a SLURM
   array job whose tasks each run `python trivial.py --x $SLURM_ARRAY_TASK_ID`, and
   `gittrack submit` of the same grid, against the same runs as local processes (2 at a time, as
   many as the node's cores) and `gittrack sweep -j`, in the same run. Measured from submission
   to the last run committed.
2. Cancelling: time from `scancel` of a job whose run is running to the run recorded
   (`interrupted`) on the runs branch; median of 5.
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
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from bench_scale import make_repo, run_count  # noqa: E402
from common import env, run_processes  # noqa: E402

SLOW = """
import time, click, gittrack

@gittrack.command()
@click.option("--i", type=int, default=0)
def main(i):
    print("started", flush=True)
    time.sleep(300)

if __name__ == "__main__":
    main()
"""


def wait_runs(repo: Path, count: int, timeout: float = 1800.0) -> float:
    """Seconds until `count` runs are on the runs branch (polling git every 50 ms)."""
    start = time.perf_counter()
    while run_count(repo) < count:
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"only {run_count(repo)} of {count} runs after {timeout:.0f} s")
        time.sleep(0.05)
    return time.perf_counter() - start


def throughput(root: Path, cluster: object, runs: int) -> list[tuple[str, float]]:
    from slurm_cluster import SlurmCluster

    assert isinstance(cluster, SlurmCluster)
    workers = cluster.cpus
    rows: list[tuple[str, float]] = []
    repo = make_repo(root / "processes")
    took = run_processes(repo, "trivial.py", runs, workers)
    rows.append((f"local processes, {workers} at a time", runs / took))
    repo = make_repo(root / "sweep")
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gittrack",
            "sweep",
            "trivial.py",
            "--x",
            f"0:{runs}",
            "-j",
            str(workers),
        ],
        cwd=repo,
        env=env(),
        check=True,
        capture_output=True,
    )
    rows.append((f"gittrack sweep -j {workers}", runs / (time.perf_counter() - start)))
    slurm_env = {**env(), **cluster.extra_env}
    repo = make_repo(root / "array")
    start = time.perf_counter()
    cluster.sbatch(
        None,
        f"--array=0-{runs - 1}",
        "--output=/dev/null",
        "--mem=200M",
        "--wrap",
        f'"{sys.executable}" trivial.py --x $SLURM_ARRAY_TASK_ID',
        cwd=repo,
        env=slurm_env,
    )
    wait_runs(repo, runs)
    rows.append(("SLURM array job", runs / (time.perf_counter() - start)))
    repo = make_repo(root / "submit")
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gittrack",
            "submit",
            "trivial.py",
            "--x",
            f"0:{runs}",
            "--name",
            "bench",
            "--cores",
            "1",
            "--memory",
            "200MB",
        ],
        cwd=repo,
        env=slurm_env,
        check=True,
        capture_output=True,
    )
    wait_runs(repo, runs)
    rows.append(("gittrack submit (array job)", runs / (time.perf_counter() - start)))
    return rows


def cancelling(root: Path, cluster: object, times: int) -> list[float]:
    from slurm_cluster import SlurmCluster

    assert isinstance(cluster, SlurmCluster)
    repo = make_repo(root / "cancel")
    (repo / "slow.py").write_text(SLOW)
    subprocess.run(["git", "add", "slow.py"], cwd=repo, check=True, env=env())
    subprocess.run(["git", "commit", "-qm", "slow"], cwd=repo, check=True, env=env())
    running = repo / ".git" / "gittrack" / "running"
    seconds = []
    for i in range(times):
        job = cluster.sbatch(
            None,
            "--output=/dev/null",
            "--mem=200M",
            "--wrap",
            f'"{sys.executable}" slow.py --i {i}',
            cwd=repo,
            env={**env(), **cluster.extra_env},
        )
        while not (
            running.is_dir() and any((p / "stdout.log").exists() for p in running.iterdir())
        ):
            time.sleep(0.02)
        time.sleep(0.5)
        start = time.perf_counter()
        cluster.scancel(job)
        wait_runs(repo, i + 1, timeout=60)
        seconds.append(time.perf_counter() - start)
        cluster.wait(job)
    return seconds


def main(quick: bool = False) -> dict[str, object]:
    from slurm_cluster import SlurmCluster, _missing

    missing = _missing()
    if missing:
        print(f"SKIPPED: {', '.join(missing)} not found (install slurm-wlm and munge)")
        return {}
    runs = 20 if quick else 200
    os.environ.pop("SLURM_CONF", None)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="gtbench-") as tmp:
        root = Path(tmp)
        slurm_root = Path(tempfile.mkdtemp(prefix="slurm-bench-"))
        cluster = SlurmCluster(slurm_root, "gtbench")
        try:
            cluster.start()
            results["throughput"] = rows = throughput(root, cluster, runs)
            base = rows[0][1]
            print(
                f"\nThroughput of {runs} trivial runs on one repository (one node, "
                f"{cluster.cpus} cores)"
            )
            print(f"{'how':<34} {'runs/s':>8} {'vs processes':>13}")
            for label, rate in rows:
                print(f"{label:<34} {rate:>8.2f} {rate / base:>12.2f}x")
            results["cancel"] = seconds = cancelling(root, cluster, 3 if quick else 5)
            print(
                f"\nscancel of a running run until it is recorded interrupted ({len(seconds)} jobs)"
            )
            print(f"median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s")
        finally:
            cluster.stop()
            import shutil

            shutil.rmtree(slurm_root, ignore_errors=True)
    return results


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
