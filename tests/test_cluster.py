"""gittrack on a real SLURM (tests/slurm_cluster.py) and Ctrl-C on every executor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import git, write_script
from slurm_cluster import SlurmCluster

ROOT = Path(__file__).resolve().parents[1]

SLOW = """\
import os, time
from pathlib import Path
import click
import gittrack


@gittrack.command()
@click.option("--i", type=int, default=0)
@click.option("--marker-dir", default="")
@click.option("--sleep", type=float, default=60.0)
def main(i, marker_dir, sleep):
    if marker_dir:
        Path(marker_dir, f"{i}-{os.getpid()}").touch()
    print("started", flush=True)
    time.sleep(sleep)
    return {"slept": sleep}


if __name__ == "__main__":
    main()
"""

HOG = """\
import time
import click
import gittrack


@gittrack.command()
@click.option("--mb", type=int, default=400)
def main(mb):
    block = bytearray(mb * 1_000_000)
    time.sleep(30)
    return {"size": len(block)}


if __name__ == "__main__":
    main()
"""


ONE_CORE_1GB = ("--cores", "1", "--memory", "1GB")


def gittrack_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "gittrack", *args]


def env_with(base: dict[str, str] | None = None) -> dict[str, str]:
    return {**(base if base is not None else os.environ), "PYTHONPATH": str(ROOT)}


def gittrack(
    repo: Path, *args: str, env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess[str]:
    """`gittrack ARGS` run in `repo` (with `env` and gittrack importable), output as text."""
    return subprocess.run(
        gittrack_cmd(*args), cwd=repo, env=env_with(env), capture_output=True, text=True, **kwargs
    )


def slurm_sweep(temps: str) -> tuple[str, ...]:
    """The arguments of a sweep of sim.py over `temps` on SLURM, one core and 1GB a run."""
    return ("sweep", "sim.py", "--temp", temps, "--executor", "slurm", *ONE_CORE_1GB)


def submit_scan(memory: str, *more: str) -> tuple[str, ...]:
    """The arguments of `gittrack submit` of the scan over temp 1:3:0.5 the tests submit."""
    scan = ("submit", "sim.py", "--temp", "1:3:0.5", "--name", "scan", "--cores", "1")
    return (*scan, "--memory", memory, *more)


def sbatch_python(slurm: SlurmCluster, repo: Path, command: str, *options: str) -> str:
    """Submit `python COMMAND` in `repo` as a plain SLURM job with sbatch `options`; its id."""
    return slurm.sbatch(
        None,
        *options,
        "--wrap",
        f'"{sys.executable}" {command}',
        cwd=repo,
        env={"PYTHONPATH": str(ROOT)},
    )


def records(repo: Path, env: dict[str, str] | None = None) -> list[dict]:
    out = gittrack(repo, "ls", "--json", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_for(condition, what: str, timeout: float = 60.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} while waiting for {what}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def staged(repo: Path) -> list[Path]:
    running = repo / ".git" / "gittrack" / "running"
    return [p for p in running.iterdir() if (p / "run.toml").exists()] if running.is_dir() else []


def no_locks(repo: Path) -> list[str]:
    return [str(p) for p in (repo / ".git").rglob("*.lock")]


# -- missing or broken scheduler (no SLURM needed) ---------------------------------------------


def test_a_missing_sbatch_is_one_sentence_and_exit_2(tracked_repo: Path, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"  # a PATH with git and this Python, without SLURM's commands
    bindir.mkdir()
    (bindir / "git").symlink_to(subprocess.check_output(["which", "git"], text=True).strip())
    env = env_with({**os.environ, "PATH": f"{bindir}:{Path(sys.executable).parent}"})
    t0 = time.monotonic()
    proc = gittrack(tracked_repo, *slurm_sweep("1,2"), env=env, timeout=60)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 2
    assert proc.stderr == (
        "Error: sbatch not found: SLURM is not installed on this machine; use --executor local "
        "or dask.\n"
    )
    assert proc.stdout == ""


def test_a_slurm_controller_that_does_not_answer_is_one_sentence(
    tracked_repo: Path, tmp_path: Path
) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        "ClusterName=gone\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort=9\n"
        "AuthType=auth/none\nNodeName=n1\nPartitionName=p Nodes=n1\n"
    )
    t0 = time.monotonic()
    env = {**os.environ, "SLURM_CONF": str(conf)}
    proc = gittrack(tracked_repo, *slurm_sweep("1,2"), env=env, timeout=60)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("Error: SLURM does not answer (") and "scontrol ping" in line
    assert records(tracked_repo) == []


# -- Ctrl-C on the local and Dask executors ---------------------------------------------------


def interrupt_sweep(repo: Path, markers: Path, *extra: str, env: dict[str, str] | None = None):
    """Start a sweep of 3 slow runs with 2 at a time, Ctrl-C it once 2 started: (proc, out, err,
    seconds from Ctrl-C to exit)."""
    proc = subprocess.Popen(
        gittrack_cmd("sweep", "slow.py", "--i", "0,1,2", "--marker-dir", str(markers), *extra),
        cwd=repo,
        env=env_with(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(lambda: len(list(markers.iterdir())) == 2, "two runs to start", 90, proc)
        time.sleep(1.0)  # the runs are staged and announced
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C on a terminal: the whole process group
        out, err = proc.communicate(timeout=60)
        return proc, out, err, time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def check_interrupted(repo: Path, markers: Path, proc, out: str, err: str) -> None:
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "distributed" not in err, err
    assert err.splitlines()[-1] == "Interrupted."
    started = {int(m.name.split("-")[0]) for m in markers.iterdir()}
    assert len(started) == 2  # the third never started
    lines = out.splitlines()
    assert lines[0].split() == ["id", "status", "i"]
    rows = [line.split() for line in lines[1:4]]
    assert sorted(row[1] for row in rows) == ["cancelled", "interrupted", "interrupted"]
    assert {int(row[2]) for row in rows if row[1] == "interrupted"} == started
    assert lines[4].endswith("3 runs (1 cancelled, 2 interrupted)") and len(lines) == 5
    found = records(repo)
    assert sorted(r["status"] for r in found) == ["interrupted", "interrupted"]
    assert {r["params"]["i"] for r in found} == started


def test_ctrl_c_on_a_local_sweep(tracked_repo: Path, tmp_path: Path) -> None:
    write_script(tracked_repo, "slow.py", SLOW)
    markers = tmp_path / "markers"
    markers.mkdir()
    proc, out, err, seconds = interrupt_sweep(tracked_repo, markers, "-j", "2")
    assert seconds < 5
    check_interrupted(tracked_repo, markers, proc, out, err)


@pytest.mark.slow
def test_ctrl_c_on_a_dask_sweep(tracked_repo: Path, tmp_path: Path) -> None:
    write_script(tracked_repo, "slow.py", SLOW)
    markers = tmp_path / "markers"
    markers.mkdir()
    proc, out, err, seconds = interrupt_sweep(
        tracked_repo, markers, "--executor", "dask", "-j", "2"
    )
    assert seconds < 8
    check_interrupted(tracked_repo, markers, proc, out, err)


# -- on the real SLURM ------------------------------------------------------------------------


def show(repo: Path, run: str, env: dict[str, str]) -> dict:
    return json.loads(gittrack(repo, "show", run, "--json", env=env, check=True).stdout)


@pytest.mark.slow
def test_a_sweep_through_slurmcluster(tracked_repo: Path, slurm: SlurmCluster) -> None:
    seen: set[str] = set()
    proc = subprocess.Popen(
        gittrack_cmd(*slurm_sweep("1:3:0.5")),
        cwd=tracked_repo,
        env=env_with(slurm.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def watch() -> None:
        while proc.poll() is None:
            seen.update(f"{e['id']} {e['state']} {e['name']}" for e in slurm.squeue())
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    _, err = proc.communicate(timeout=180)
    watcher.join()
    assert proc.returncode == 0, err
    running = [s.split() for s in seen if " RUNNING " in s]
    assert running and {name for _, _, name in running} == {"dask-worker"}
    found = records(tracked_repo, slurm.env)
    assert sorted(r["params"]["temp"] for r in found) == [1.0, 1.5, 2.0, 2.5]
    assert {r["status"] for r in found} == {"completed"}
    jobs = {job for job, _, _ in running}
    for record in found:
        job = record["env"]["slurm"]
        assert job["job_id"] in jobs
        assert job["node"] == slurm.node and job["partition"] == slurm.partition
        assert (
            job["cpus"] == 1 and job["memory_mb"] == 954
        )  # 1GB, as dask-jobqueue asks (--mem=954M)
    assert git(tracked_repo, "status", "--porcelain") == ""  # no slurm-N.out left in the tree
    logs = list((tracked_repo / ".git" / "gittrack" / "jobs").glob("*.err"))
    assert logs, "the worker jobs' logs are under .git/gittrack/jobs"


@pytest.mark.slow
def test_an_array_job_of_20_plain_runs_on_the_shared_repository(
    tracked_repo: Path, slurm: SlurmCluster, tmp_path: Path
) -> None:
    job = sbatch_python(
        slurm,
        tracked_repo,
        "sim.py --temp $SLURM_ARRAY_TASK_ID",
        "--array=0-19",
        f"--output={tmp_path}/%A_%a.out",
        "--mem=200M",
    )
    assert slurm.wait(job, timeout=240) == "COMPLETED"
    found = records(tracked_repo, slurm.env)
    assert sorted(r["params"]["temp"] for r in found) == [float(i) for i in range(20)]
    assert {r["status"] for r in found} == {"completed"}
    assert sorted(r["env"]["slurm"]["array_task_id"] for r in found) == list(range(20))
    assert {r["env"]["slurm"]["array_job_id"] for r in found} == {job}
    assert len(git(tracked_repo, "log", "--format=%H", "gittrack/runs").splitlines()) == 21
    table = gittrack(
        tracked_repo,
        "ls",
        "--where",
        "env.slurm.array_task_id >= 10",
        "--columns",
        "id,env.slurm.node,env.slurm.array_task_id",
        "--format",
        "csv",
        env=slurm.env,
        check=True,
    ).stdout.splitlines()
    assert len(table) == 11 and {row.split(",")[1] for row in table[1:]} == {slurm.node}
    assert sorted(int(row.split(",")[2]) for row in table[1:]) == list(range(10, 20))
    assert no_locks(tracked_repo) == [] and staged(tracked_repo) == []
    subprocess.run(["git", "fsck", "--strict"], cwd=tracked_repo, check=True, capture_output=True)


@pytest.mark.slow
def test_gittrack_submit_makes_and_submits_an_array_job(
    tracked_repo: Path, slurm: SlurmCluster
) -> None:
    dry = gittrack(tracked_repo, *submit_scan("200MB", "--dry-run"), env=slurm.env, check=True)
    assert "#SBATCH --array=0-3\n" in dry.stdout and "#SBATCH --mem=200M\n" in dry.stdout
    assert "  2) ARGS=(--temp 2.0) ;;\n" in dry.stdout
    proc = gittrack(tracked_repo, *submit_scan("200MB"), env=slurm.env)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip()
    assert job.isdigit()
    assert proc.stderr.startswith(f"Submitted array job {job}: 4 runs (")
    script = tracked_repo / ".git" / "gittrack" / "jobs" / "scan.sbatch"
    assert script.read_text() == dry.stdout
    assert slurm.wait(job, timeout=120) == "COMPLETED"
    listed = gittrack(
        tracked_repo, "ls", "--where", "experiment = 'scan'", "--json", env=slurm.env, check=True
    )
    found = json.loads(listed.stdout)
    assert sorted(r["params"]["temp"] for r in found) == [1.0, 1.5, 2.0, 2.5]
    assert {r["experiment"] for r in found} == {"scan"} and {r["status"] for r in found} == {
        "completed"
    }
    by_task = {r["env"]["slurm"]["array_task_id"]: r for r in found}
    assert by_task[3]["params"]["temp"] == 2.5 and by_task[3]["env"]["slurm"]["array_job_id"] == job
    assert git(tracked_repo, "status", "--porcelain") == ""


@pytest.mark.slow
def test_scancel_of_a_running_run(tracked_repo: Path, slurm: SlurmCluster, tmp_path: Path) -> None:
    write_script(tracked_repo, "slow.py", SLOW)
    job = sbatch_python(
        slurm, tracked_repo, "slow.py --sleep 300", f"--output={tmp_path}/%j.out", "--mem=200M"
    )
    wait_for(lambda: bool(staged(tracked_repo)), "the run to be staged")
    time.sleep(0.5)
    t0 = time.monotonic()
    slurm.scancel(job)
    assert slurm.wait(job, timeout=30) == "CANCELLED"
    gittrack(tracked_repo, "doctor", env=slurm.env, check=True)
    (record,) = records(tracked_repo, slurm.env)
    assert time.monotonic() - t0 < 15
    assert record["status"] in ("interrupted", "died")
    assert record["error"]["message"].startswith(f"SLURM job {job} CANCELLED")
    assert record["env"]["slurm"]["job_id"] == job and record["env"]["slurm"]["node"] == slurm.node
    assert staged(tracked_repo) == []


@pytest.mark.slow
def test_a_run_over_its_memory_limit_is_died_with_slurms_reason(
    tracked_repo: Path, slurm: SlurmCluster, tmp_path: Path
) -> None:
    write_script(tracked_repo, "hog.py", HOG)
    job = sbatch_python(
        slurm, tracked_repo, "hog.py --mb 400", f"--output={tmp_path}/%j.out", "--mem=60M"
    )
    assert slurm.wait(job, timeout=60) == "FAILED"
    doctor = gittrack(tracked_repo, "doctor", env=slurm.env, check=True)
    (record,) = records(tracked_repo, slurm.env)
    assert record["status"] == "died", doctor.stdout
    assert record["env"]["slurm"]["job_id"] == job
    message = record["error"]["message"]
    assert message.startswith(f"SLURM job {job} FAILED")
    assert "Exceeded job memory limit" in message


@pytest.mark.slow
def test_ctrl_c_on_a_slurm_sweep(tracked_repo: Path, slurm: SlurmCluster, tmp_path: Path) -> None:
    write_script(tracked_repo, "slow.py", SLOW)
    markers = tmp_path / "markers"
    markers.mkdir()
    proc, out, err, seconds = interrupt_sweep(
        tracked_repo,
        markers,
        "--executor",
        "slurm",
        "-j",
        "2",
        "--cores",
        "1",
        "--memory",
        "500MB",
        env=slurm.env,
    )
    assert seconds < 10
    check_interrupted(tracked_repo, markers, proc, out, err)
    wait_for(lambda: slurm.squeue() == [], "the worker jobs to end", 30)
    for record in records(tracked_repo, slurm.env):
        assert record["env"]["slurm"]["node"] == slurm.node


def test_the_job_script_in_the_docs_is_what_submit_writes(tracked_repo: Path) -> None:
    doc = (ROOT / "docs" / "cluster.md").read_text()
    shown = doc.split("The job script it submits")[1].split("```bash\n")[1].split("```")[0]
    made = gittrack(tracked_repo, *submit_scan("1GB", "--dry-run"), check=True).stdout
    made = made.replace(str(tracked_repo), "/home/ada/project").replace(
        sys.executable, "/usr/bin/python3"
    )
    assert made == shown
