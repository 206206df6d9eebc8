"""Nothing recorded is lost: failures, interrupts, kills at any moment, compare-and-swap."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import branch_log, git, run_python, wait_for_housekeeping, write_script

from gittrack import store
from gittrack.model.record import RunRecord, run_folder

SLOW = """
import sys, time, click, gittrack

@gittrack.command()
@click.option("--seconds", type=float, default=30.0)
def main(seconds):
    print("started", flush=True)
    time.sleep(seconds)
    return {"slept": seconds}

if __name__ == "__main__":
    main()
"""


def ls_json(repo: Path) -> list[dict]:
    return json.loads(run_python(repo, "-m", "gittrack", "ls", "--json").stdout)


def test_failing_simulation_is_recorded_as_failed(tracked_repo: Path, run_cli) -> None:
    result = run_cli(tracked_repo, "run", "sim.py", "--temp", "-1")
    assert result.exit_code == 1
    assert "ValueError: negative temperature" in result.output
    shown = result.output.split("Traceback")[1]
    assert "tracker.py" not in shown and "core.py" not in shown  # the script's frames only
    assert "recorded (failed in" in result.output
    record = ls_json(tracked_repo)[0]
    assert record["status"] == "failed" and record["exit_code"] == 1
    assert record["error"]["type"] == "ValueError"
    assert 'raise ValueError("negative temperature")' in record["error"]["traceback"]
    proc = run_python(tracked_repo, "sim.py", "--temp", "-2", check=False)
    assert proc.returncode == 1 and "ValueError: negative temperature" in proc.stderr
    assert [r["status"] for r in ls_json(tracked_repo)] == ["failed", "failed"]
    for stored in (r["error"]["traceback"] for r in ls_json(tracked_repo)):
        # what was kept starts where the script failed, as the terminal showed it
        assert "recording/command.py" not in stored and "click/core.py" not in stored, stored
        assert stored.splitlines()[1].startswith('  File "') and "sim.py" in stored.splitlines()[1]


def test_ctrl_c_is_recorded_as_interrupted(tracked_repo: Path) -> None:
    write_script(tracked_repo, "slow.py", SLOW)
    proc = subprocess.Popen(
        [sys.executable, "slow.py"], cwd=tracked_repo, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout and proc.stdout.readline().strip() == "started"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) != 0
    record = ls_json(tracked_repo)[0]
    assert record["status"] == "interrupted" and record["exit_code"] == 130
    assert record["params"] == {"seconds": 30.0}


def test_sigkill_shows_died_and_is_recorded_once(tracked_repo: Path) -> None:
    write_script(tracked_repo, "slow.py", SLOW)
    proc = subprocess.Popen(
        [sys.executable, "slow.py"], cwd=tracked_repo, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout and proc.stdout.readline().strip() == "started"
    proc.kill()
    proc.wait()
    rows = ls_json(tracked_repo)
    assert [(r["status"], r["params"]) for r in rows] == [("died", {"seconds": 30.0})]
    assert not branch_log(tracked_repo)[0].endswith("slow.py")  # reads never write
    doctor = subprocess.run(
        [sys.executable, "-m", "gittrack", "doctor"],
        cwd=tracked_repo,
        capture_output=True,
        text=True,
    )
    assert doctor.returncode == 0 and "recorded as died" in doctor.stdout
    assert branch_log(tracked_repo)[0].endswith("slow.py")
    rows = ls_json(tracked_repo)
    died_id = rows[0]["id"]
    stdout = git(tracked_repo, "show", f"gittrack/runs:{run_folder(died_id)}/stdout.log")
    assert stdout == "started"
    assert ls_json(tracked_repo) == rows  # listed once, not again from local state
    git(tracked_repo, "fsck", "--strict")


@pytest.mark.slow
def test_sigkill_at_any_moment_leaves_a_consistent_repo(tracked_repo: Path) -> None:
    """Kill trivial runs at spread-out moments, including while they commit."""
    timings = []
    for attempt in range(12):
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "sim.py", "--steps", str(attempt)],
            cwd=tracked_repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if attempt == 0:
            proc.wait()
            timings.append(time.perf_counter() - start)
            continue
        time.sleep(timings[0] * attempt / 11)
        proc.kill()
        proc.wait()
    rows = ls_json(tracked_repo)
    steps = sorted(r["params"]["steps"] for r in rows if r["status"] == "completed")
    assert steps[0] == 0
    assert {r["status"] for r in rows} <= {"completed", "died"}
    assert len({r["id"] for r in rows}) == len(rows)
    git(tracked_repo, "fsck", "--strict")
    # a run killed while it moved the branch leaves its ref locks (nothing cleans up after
    # SIGKILL, git's own locks neither): the next run clears those of dead processes at once
    after = run_python(tracked_repo, "sim.py", "--steps", "99")
    assert "recorded (completed" in after.stderr
    wait_for_housekeeping(tracked_repo)  # a roll-up the runs started holds gc's lock meanwhile
    assert not list((tracked_repo / ".git").rglob("*.lock"))
    assert not list((tracked_repo / ".git" / "gittrack" / "reflocks").glob("*"))


def test_compare_and_swap_refuses_a_stale_old_value(tracked_repo: Path) -> None:
    repo = store.find_repo(tracked_repo)
    first = store.write_run(repo, RunRecord(id="aa" * 16, command="x", status="completed"), {})
    second = store.write_run(repo, RunRecord(id="bb" * 16, command="x", status="completed"), {})
    stale = store._update_refs(repo, [f"update {store.RUNS_REF} {first} {first}"])
    assert stale.returncode != 0
    assert git(tracked_repo, "rev-parse", "gittrack/runs") == second
    assert git(tracked_repo, "rev-parse", "gittrack/runs^") == first


def test_a_run_written_again_keeps_only_its_new_files(tracked_repo: Path) -> None:
    repo = store.find_repo(tracked_repo)
    record = RunRecord(id="cc" * 16, command="x", status="died")
    store.write_run(repo, record, {"stdout.log": b"partial\n", "stderr.log": b"oops\n"})
    record.status = "completed"
    store.write_run(repo, record, {"stdout.log": b"whole\n"})
    folder = f"gittrack/runs:{run_folder(record.id)}"
    assert git(tracked_repo, "ls-tree", "--name-only", folder).split() == [
        "run.toml",
        "stdout.log",
    ]
    assert git(tracked_repo, "show", f"{folder}/stdout.log") == "whole"
    git(tracked_repo, "fsck", "--strict")


def test_unwritable_repo_fails_before_the_simulation_starts(tracked_repo: Path) -> None:
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    proc = subprocess.run(
        [sys.executable, "sim.py"],
        cwd=tracked_repo,
        capture_output=True,
        text=True,
        preexec_fn=limit,
    )
    assert proc.returncode == 1
    assert "simulating" not in proc.stdout
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"Error: Cannot write to the git repository at {tracked_repo} (File too large)."
        )
    )
    assert "Traceback" not in proc.stderr
    assert len(branch_log(tracked_repo)) == 1


def test_an_unwritable_state_folder_is_one_sentence_not_an_unexpected_error(
    tracked_repo: Path,
) -> None:
    """No index can be written in .git/gittrack (read-only, as another user's folder of a
    shared repository is): `ls` says what cannot be written and how to fix it, instead of
    "unexpected OperationalError: unable to open database file"."""
    assert subprocess.run([sys.executable, "sim.py"], cwd=tracked_repo).returncode == 0
    state = tracked_repo / ".git" / "gittrack"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state}/index.sqlite{suffix}").unlink(missing_ok=True)
    # as root, without the capabilities that let root write anywhere (util-linux's setpriv)
    unprivileged = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    if os.geteuid() != 0:
        unprivileged = []
    state.chmod(0o555)
    try:
        proc = subprocess.run(
            [*unprivileged, sys.executable, "-m", "gittrack", "ls"],
            cwd=tracked_repo,
            capture_output=True,
            text=True,
        )
    finally:
        state.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == (
        f"Error: Cannot write to the git repository at {state} (unable to open database"
        " file). Check its permissions and free disk space before running."
    )
    listed = subprocess.run(
        [sys.executable, "-m", "gittrack", "ls"], cwd=tracked_repo, capture_output=True, text=True
    )
    assert listed.returncode == 0 and "1 of 1 runs" in listed.stdout, listed.stderr


def test_ctrl_c_during_a_local_sweep_records_every_running_run_as_interrupted(
    tracked_repo: Path,
) -> None:
    write_script(tracked_repo, "slow.py", SLOW)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gittrack", "sweep", "slow.py", "--seconds", "30,31,32", "-j", "2"],
        cwd=tracked_repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    running = tracked_repo / ".git" / "gittrack" / "running"
    deadline = time.monotonic() + 60
    while not (
        running.is_dir() and len([p for p in running.iterdir() if (p / "stdout.log").exists()]) == 2
    ):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C on a terminal does: the whole process group
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 15  # workers were stopped, not waited for
    assert proc.returncode == 130 and "Traceback" not in err
    assert sorted(r["status"] for r in ls_json(tracked_repo)) == ["interrupted", "interrupted"]


def test_ctrl_c_of_gittrack_run_exits_130(tracked_repo: Path) -> None:
    write_script(tracked_repo, "slow.py", SLOW)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gittrack", "run", "slow.py"],
        cwd=tracked_repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout and proc.stdout.readline().strip() == "started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err and "recorded (interrupted" in err
    assert ls_json(tracked_repo)[0]["status"] == "interrupted"
