"""Many writers on one repository: every run lands exactly once, git stays consistent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import git

WRITER = """
import os, sys, time
from pathlib import Path
from gittrack.recording.invoke import run_script
from gittrack import store
start = Path(sys.argv[1])
while not start.exists():
    time.sleep(0.005)
for i in range(int(sys.argv[2])):
    run_script(Path("sim.py"), ["--temp", str(int(sys.argv[3]) * 100 + i), "--steps", "1"])  # all distinct
print(store.STATS["commits"], store.STATS["retries"])
"""


def run_ids(repo: Path) -> list[str]:
    out = git(repo, "ls-tree", "-r", "--name-only", "gittrack/runs", "--", "runs")
    return [p.split("/")[-2] for p in out.splitlines() if p.endswith("/run.toml")]


def assert_consistent(repo: Path, runs: int) -> None:
    ids = run_ids(repo)
    assert len(ids) == len(set(ids)) == runs
    subjects = git(repo, "log", "--format=%s", "gittrack/runs").splitlines()
    assert len([s for s in subjects if s.startswith("run ")]) == runs  # exactly one commit per run
    assert len({s.split()[1] for s in subjects if s.startswith("run ")}) == runs
    fsck = subprocess.run(
        ["git", "fsck", "--no-dangling"], cwd=repo, capture_output=True, text=True
    )
    assert fsck.returncode == 0 and "error" not in fsck.stderr, fsck.stderr
    assert list((repo / ".git").rglob("*.lock")) == [
        p for p in (repo / ".git").rglob("*.lock") if p.name == "branch.lock"
    ]
    assert not list((repo / ".git" / "gittrack" / "running").glob("*"))
    assert git(repo, "status", "--porcelain") == ""


def test_sixteen_runs_started_at_once_all_land(tracked_repo: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "sim.py", "--temp", str(i)],
            cwd=tracked_repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(16)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 16
    assert_consistent(tracked_repo, 16)


@pytest.mark.slow
def test_two_hundred_runs_from_sixteen_processes(tracked_repo: Path) -> None:
    start = tracked_repo.parent / "start"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(start), str(13 if i < 8 else 12), str(i)],
            cwd=tracked_repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(16)
    ]
    time.sleep(0.5)
    start.touch()
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 16, [o[1][-500:] for o in outs]
    assert sum(int(o[0].splitlines()[-1].split()[0]) for o in outs) == 200
    assert_consistent(tracked_repo, 200)


def test_a_stale_ref_lock_left_by_a_crash_is_cleared(tracked_repo: Path) -> None:
    lock = tracked_repo / ".git" / "refs" / "heads" / "gittrack" / "runs.lock"
    lock.write_text("0" * 40 + "\n")
    old = time.time() - 60
    os.utime(lock, (old, old))
    proc = subprocess.run(
        [sys.executable, "sim.py"], cwd=tracked_repo, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert not lock.exists()
    assert_consistent(tracked_repo, 1)


def test_a_fresh_ref_lock_makes_the_writer_wait_not_fail(tracked_repo: Path) -> None:
    lock = tracked_repo / ".git" / "refs" / "heads" / "gittrack" / "runs.lock"
    lock.write_text("0" * 40 + "\n")
    proc = subprocess.Popen(
        [sys.executable, "sim.py"], cwd=tracked_repo, stderr=subprocess.PIPE, text=True
    )
    time.sleep(1.5)
    assert proc.poll() is None  # still retrying while another writer holds the ref
    lock.unlink()
    assert proc.wait(timeout=60) == 0
    assert_consistent(tracked_repo, 1)


def test_a_writer_killed_while_holding_the_branch_lock_blocks_nobody(tracked_repo: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time; fd = os.open('.git/gittrack/branch.lock', os.O_RDWR | os.O_CREAT);"
                "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(600)"
            ),
        ],
        cwd=tracked_repo,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "sim.py"], cwd=tracked_repo, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 20
    assert_consistent(tracked_repo, 1)
