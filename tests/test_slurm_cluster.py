"""The test SLURM cluster (tests/slurm_cluster.py) schedules, runs, limits and cancels real jobs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster

import gittrack


def test_wrap_job_writes_a_file(slurm: SlurmCluster, tmp_path: Path) -> None:
    job = slurm.sbatch(None, "--wrap", "echo job $SLURM_JOB_ID on $SLURMD_NODENAME > out.txt",
                       cwd=tmp_path)  # fmt: skip
    assert slurm.wait(job) == "COMPLETED"
    assert (tmp_path / "out.txt").read_text() == f"job {job} on {slurm.node}\n"
    assert slurm.job(job)["ExitCode"] == "0:0"


def test_job_script_runs_this_python_with_the_test_environment(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    """sbatch exports the submitter's environment: the job imports this worktree's gittrack."""
    script = f"""\
#!/bin/sh
#SBATCH --job-name=envcheck
"{sys.executable}" -c 'import gittrack, os; print(gittrack.__file__, os.environ["HOME"])'
"""
    job = slurm.sbatch(script, "--output=env.out", cwd=tmp_path)
    assert slurm.wait(job) == "COMPLETED"
    expected = f"{gittrack.__file__} {slurm.env['HOME']}\n"
    assert (tmp_path / "env.out").read_text() == expected


def test_squeue_shows_a_running_job_and_scancel_ends_it(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    job = slurm.sbatch(None, "--job-name=sleeper", "--wrap", "echo started; sleep 300",
                       cwd=tmp_path)  # fmt: skip
    slurm.wait_state(job, "RUNNING")
    out = tmp_path / f"slurm-{job}.out"
    deadline = time.monotonic() + 20
    while not out.exists() or not out.read_text():  # RUNNING comes before the script starts
        assert time.monotonic() < deadline, "the job script did not start"
        time.sleep(0.05)
    queue = {entry["id"]: entry for entry in slurm.squeue()}
    assert queue[job] == {
        "id": job, "state": "RUNNING", "name": "sleeper", "nodes": slurm.node, "reason": "None",
    }  # fmt: skip
    slurm.scancel(job)
    assert slurm.wait(job, timeout=20) == "CANCELLED"
    assert job not in {entry["id"] for entry in slurm.squeue()}
    text = out.read_text()
    assert text.startswith("started\n")
    assert f"*** JOB {job} ON {slurm.node} CANCELLED AT" in text


def test_array_job_runs_every_task(slurm: SlurmCluster, tmp_path: Path) -> None:
    job = slurm.sbatch(
        None, "--array=0-4", "--output=/dev/null",
        "--wrap", "echo $SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID > task-$SLURM_ARRAY_TASK_ID.txt",
        cwd=tmp_path,
    )  # fmt: skip
    assert slurm.wait(job) == "COMPLETED"
    assert sorted(slurm.jobs(job)) == [f"{job}_{i}" for i in range(5)]
    written = {path.name: path.read_text() for path in tmp_path.glob("task-*.txt")}
    assert written == {f"task-{i}.txt": f"{job} {i}\n" for i in range(5)}


def test_job_over_its_memory_limit_is_killed(slurm: SlurmCluster, tmp_path: Path) -> None:
    script = f"""\
#!/bin/sh
"{sys.executable}" -c 'import time; x = bytearray(400_000_000); time.sleep(30)'
echo survived > survived.txt
"""
    job = slurm.sbatch(script, "--mem=50M", cwd=tmp_path)
    assert slurm.wait(job, timeout=30) == "FAILED"
    assert slurm.job(job)["ExitCode"] == "0:9"  # SIGKILL
    out = (tmp_path / f"slurm-{job}.out").read_text()
    assert "Exceeded job memory limit" in out
    assert not (tmp_path / "survived.txt").exists()


@pytest.mark.slow
def test_job_over_its_time_limit_times_out(slurm: SlurmCluster, tmp_path: Path) -> None:
    """SLURM counts time limits in minutes and checks them every 30 s: this takes 60-90 s."""
    job = slurm.sbatch(None, "--time=1", "--wrap", "sleep 600", cwd=tmp_path)
    slurm.wait_state(job, "RUNNING")
    assert slurm.wait(job, timeout=150) == "TIMEOUT"
    assert slurm.job(job)["Reason"] == "TimeLimit"
    out = (tmp_path / f"slurm-{job}.out").read_text()
    assert f"*** JOB {job} ON {slurm.node} CANCELLED AT" in out
    assert "DUE TO TIME LIMIT ***" in out
