"""The runs branch moved in-process with git's lock-file protocol, and left to git when needed."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git

from gittrack import store
from gittrack.model.record import RunRecord
from gittrack.store import reflock

RUNS_LOCK = Path(".git") / "refs" / "heads" / "gittrack" / "runs.lock"


def _logging_git(folder: Path, log: Path) -> dict[str, str]:
    """The environment of a process whose `git` logs its subcommand, then runs the real git."""
    real = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    folder.mkdir()
    (folder / "git").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    (folder / "git").chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def _sim(repo: Path, *args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "sim.py", *args], cwd=repo, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr


def _record(n: int) -> RunRecord:
    return RunRecord(id=f"{n:032x}", command="x", status="completed")


def test_a_run_moves_the_branch_as_git_would_without_update_ref(
    tracked_repo: Path, tmp_path: Path
) -> None:
    log = tmp_path / "git.log"
    env = _logging_git(tmp_path / "bin", log)
    _sim(tracked_repo, "--steps", "1", env=env)  # the shared blobs (empty logs) exist from here
    before = git(tracked_repo, "rev-parse", "gittrack/runs")
    log.write_text("")
    _sim(tracked_repo, "--steps", "2", env=env)
    assert not [c for c in log.read_text().splitlines() if "update-ref" in c]
    after = git(tracked_repo, "rev-parse", "gittrack/runs")
    assert git(tracked_repo, "rev-parse", "gittrack/runs^") == before
    # the reflog line git itself writes: old, new, the committer, the time, no message
    line = (tracked_repo / ".git" / "logs" / store.RUNS_REF).read_text().splitlines()[-1]
    assert line.startswith(f"{before} {after} Ada Tester <ada@example.org> ")
    assert line.split(" ")[-1][0] in "+-" and "\t" not in line
    assert git(tracked_repo, "log", "-g", "-1", "--format=%H %gN", "gittrack/runs") == (
        f"{after} Ada Tester"
    )
    assert not (tracked_repo / RUNS_LOCK).exists()
    git(tracked_repo, "fsck", "--strict")


def test_a_new_commits_first_run_creates_its_code_ref_without_update_ref(
    tracked_repo: Path, tmp_path: Path
) -> None:
    """The keep-alive ref of code committed since the last run is created in-process too: the
    lock, the value, no reflog (git keeps none for refs outside refs/heads by default)."""
    log = tmp_path / "git.log"
    env = _logging_git(tmp_path / "bin", log)
    _sim(tracked_repo, "--steps", "1", env=env)
    (tracked_repo / "notes.txt").write_text("a new commit\n")
    git(tracked_repo, "add", "notes.txt")
    git(tracked_repo, "commit", "-qm", "notes")
    head = git(tracked_repo, "rev-parse", "HEAD")
    log.write_text("")
    _sim(tracked_repo, "--steps", "2", env=env)
    assert not [c for c in log.read_text().splitlines() if "update-ref" in c]
    ref = tracked_repo / ".git" / "refs" / "gittrack" / "code" / head
    assert ref.read_text() == head + "\n"
    assert git(tracked_repo, "rev-parse", f"refs/gittrack/code/{head}") == head
    assert not (tracked_repo / ".git" / "logs" / "refs" / "gittrack" / "code" / head).exists()
    assert not list((tracked_repo / ".git" / "refs").rglob("*.lock"))
    git(tracked_repo, "fsck", "--strict")


def test_a_new_code_ref_is_left_to_git_when_git_would_log_it(tracked_repo: Path) -> None:
    repo = store.find_repo(tracked_repo)
    tip = git(tracked_repo, "rev-parse", "gittrack/runs")
    commit = git(tracked_repo, "commit-tree", "-p", tip, "-m", "next", f"{tip}^{{tree}}")
    head = git(tracked_repo, "rev-parse", "HEAD")
    lines = [f"update {store.RUNS_REF} {commit} {tip}", f"update refs/gittrack/code/{head} {head}"]
    git(tracked_repo, "config", "core.logAllRefUpdates", "always")
    assert reflock.update(repo, lines) is None
    git(tracked_repo, "config", "core.logAllRefUpdates", "true")
    logs = tracked_repo / ".git" / "logs" / "refs" / "gittrack" / "code"
    logs.mkdir(parents=True)
    (logs / head).write_text("")  # a reflog already kept for it: git appends to it
    assert reflock.update(repo, lines) is None
    (logs / head).unlink()
    done = reflock.update(repo, lines)
    assert done is not None and done.returncode == 0
    assert git(tracked_repo, "rev-parse", "gittrack/runs") == commit
    assert git(tracked_repo, "rev-parse", f"refs/gittrack/code/{head}") == head
    git(tracked_repo, "fsck", "--strict")


def test_a_new_code_ref_to_a_missing_commit_is_left_to_git(tracked_repo: Path) -> None:
    repo = store.find_repo(tracked_repo)
    tip = git(tracked_repo, "rev-parse", "gittrack/runs")
    commit = git(tracked_repo, "commit-tree", "-p", tip, "-m", "next", f"{tip}^{{tree}}")
    gone = "1" * 40
    lines = [f"update {store.RUNS_REF} {commit} {tip}", f"update refs/gittrack/code/{gone} {gone}"]
    assert reflock.update(repo, lines) is None  # git says what is wrong with it
    assert git(tracked_repo, "rev-parse", "gittrack/runs") == tip
    assert not (tracked_repo / ".git" / "refs" / "gittrack" / "code" / gone).exists()


def test_a_stale_old_value_is_refused_and_nothing_moves(tracked_repo: Path) -> None:
    repo = store.find_repo(tracked_repo)
    first = store.write_run(repo, _record(1), {})
    second = store.write_run(repo, _record(2), {})
    done = reflock.update(repo, [f"update {store.RUNS_REF} {first} {first}"])
    assert done is not None and done.returncode == 1
    assert f"is at {second} but expected {first}" in done.stderr.decode()
    assert git(tracked_repo, "rev-parse", "gittrack/runs") == second
    assert not (tracked_repo / RUNS_LOCK).exists()


def test_a_held_ref_lock_is_left_alone_and_reported_as_git_reports_it(tracked_repo: Path) -> None:
    repo = store.find_repo(tracked_repo)
    tip = git(tracked_repo, "rev-parse", "gittrack/runs")
    commit = git(tracked_repo, "commit-tree", "-p", tip, "-m", "next", f"{tip}^{{tree}}")
    (tracked_repo / RUNS_LOCK).write_text("held by another writer\n")
    done = reflock.update(repo, [f"update {store.RUNS_REF} {commit} {tip}"])
    assert done is not None and done.returncode == 1
    assert "File exists" in done.stderr.decode()  # what commit_to_branch clears when stale
    assert (tracked_repo / RUNS_LOCK).read_text() == "held by another writer\n"
    assert git(tracked_repo, "rev-parse", "gittrack/runs") == tip


def test_a_verified_ref_that_moved_refuses_the_whole_update(tracked_repo: Path) -> None:
    repo = store.find_repo(tracked_repo)
    tip = git(tracked_repo, "rev-parse", "gittrack/runs")
    commit = git(tracked_repo, "commit-tree", "-p", tip, "-m", "next", f"{tip}^{{tree}}")
    head = git(tracked_repo, "rev-parse", "HEAD")
    git(tracked_repo, "update-ref", "refs/gittrack/code/" + head, head)
    lines = [f"update {store.RUNS_REF} {commit} {tip}", f"verify refs/gittrack/code/{head} {tip}"]
    done = reflock.update(repo, lines)
    assert done is not None and done.returncode == 1
    assert git(tracked_repo, "rev-parse", "gittrack/runs") == tip
    assert not list((tracked_repo / ".git" / "refs").rglob("*.lock"))
    done = reflock.update(repo, [lines[0], f"verify refs/gittrack/code/{head} {head}"])
    assert done is not None and done.returncode == 0
    assert git(tracked_repo, "rev-parse", "gittrack/runs") == commit


def test_a_packed_branch_is_left_to_git(tracked_repo: Path) -> None:
    repo = store.find_repo(tracked_repo)
    first = store.write_run(repo, _record(1), {})
    git(tracked_repo, "pack-refs", "--all")  # the branch now lives in packed-refs only
    assert not (tracked_repo / ".git" / store.RUNS_REF).exists()
    commit = git(tracked_repo, "commit-tree", "-p", first, "-m", "next", f"{first}^{{tree}}")
    assert reflock.update(repo, [f"update {store.RUNS_REF} {commit} {first}"]) is None
    second = store.write_run(repo, _record(2), {})  # through git
    assert git(tracked_repo, "rev-parse", "gittrack/runs^") == first
    assert git(tracked_repo, "rev-parse", "gittrack/runs") == second
    git(tracked_repo, "fsck", "--strict")


def test_a_reference_transaction_hook_still_runs(tracked_repo: Path) -> None:
    hook = tracked_repo / ".git" / "hooks" / "reference-transaction"
    seen = tracked_repo.parent / "hook.log"
    hook.write_text(f'#!/bin/sh\necho "$1" >> {seen}\ncat >/dev/null\n')
    hook.chmod(0o755)
    store.write_run(store.find_repo(tracked_repo), _record(1), {})
    assert "committed" in seen.read_text().split()


def test_other_config_and_a_checked_out_branch_are_left_to_git(tracked_repo: Path) -> None:
    repo = store.find_repo(tracked_repo)
    tip = git(tracked_repo, "rev-parse", "gittrack/runs")
    commit = git(tracked_repo, "commit-tree", "-p", tip, "-m", "next", f"{tip}^{{tree}}")
    line = [f"update {store.RUNS_REF} {commit} {tip}"]
    git(tracked_repo, "config", "core.hooksPath", "elsewhere")
    assert reflock.update(repo, line) is None
    git(tracked_repo, "config", "--unset", "core.hooksPath")
    git(tracked_repo, "symbolic-ref", "HEAD", store.RUNS_REF)  # its moves are logged for HEAD
    assert reflock.update(repo, line) is None
    git(tracked_repo, "symbolic-ref", "HEAD", "refs/heads/main")
    assert reflock.update(repo, [f"update refs/heads/main {commit} {tip}"]) is None
    assert git(tracked_repo, "rev-parse", "gittrack/runs") == tip


WRITER = """
import sys
from gittrack import store
from gittrack.model.record import RunRecord
repo = store.find_repo(".")
for i in range(int(sys.argv[2])):
    store.write_run(repo, RunRecord(id=f"{int(sys.argv[1]):04x}{i:028x}", command="x"), {})
"""


def test_writers_in_process_and_through_git_all_land(tracked_repo: Path) -> None:
    """Eight writers at once, half of them moving the branch through git (GIT_COMMITTER_DATE
    leaves it to git), half in-process: every commit lands on top of the one before."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(i), "15"],
            cwd=tracked_repo,
            env={**env, "GIT_COMMITTER_DATE": "2026-01-01T00:00:00"} if i % 2 else env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    subjects = git(tracked_repo, "log", "--format=%s", "gittrack/runs").splitlines()
    assert len(subjects) == 8 * 15 + 1  # every run, and the branch's first commit
    reflog = (tracked_repo / ".git" / "logs" / store.RUNS_REF).read_text().splitlines()
    assert len(reflog) == len(subjects)
    pairs = [line.split(" ")[:2] for line in reflog]
    assert all(new == nxt for (_, new), (nxt, _) in itertools.pairwise(pairs))
    assert not list((tracked_repo / ".git" / "refs").rglob("*.lock"))
    git(tracked_repo, "fsck", "--strict")


def test_objects_are_durable_before_the_branch_points_at_them(
    tracked_repo: Path, tmp_path: Path
) -> None:
    """The order a power cut needs, seen in the system calls: the pack and its index fsynced,
    then renamed into place, their folder fsynced, and only then the branch's lock renamed."""
    strace = subprocess.run(["which", "strace"], capture_output=True, text=True).stdout.strip()
    if not strace:
        pytest.skip("strace is not installed")
    _sim(tracked_repo, "--steps", "1")
    trace = tmp_path / "trace"
    traced = [strace, "-f", "-y", "-qq", "-o", str(trace), "-e", "trace=fsync,rename"]
    done = subprocess.run(
        [*traced, sys.executable, "sim.py", "--steps", "2"],
        cwd=tracked_repo,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip("ptrace is not permitted here")
    assert done.returncode == 0, done.stderr
    calls = [line.split(None, 1)[1] for line in trace.read_text().splitlines() if " " in line]

    def first(*words: str) -> int:
        return next(i for i, c in enumerate(calls) if all(w in c for w in words))

    ref = first("rename(", "runs.lock")
    pack_synced = max(first("fsync(", ".pack>"), first("fsync(", ".idx>"))
    packed = first("rename(", "tmp_gittrack_", ".idx")
    folder_synced = first("fsync(", "objects/pack>")
    assert pack_synced < packed < folder_synced < ref
    assert first("fsync(", "runs.lock>") < ref
    assert first("fsync(", "logs/refs/heads/gittrack/runs>") < ref


def test_after_a_gc_packs_the_refs_runs_of_the_same_code_still_need_no_git(
    tracked_repo: Path, tmp_path: Path
) -> None:
    """A gc packs the code's keep-alive ref: verified in packed-refs, it is not rewritten."""
    log = tmp_path / "git.log"
    env = _logging_git(tmp_path / "bin", log)
    _sim(tracked_repo, "--steps", "1", env=env)
    git(tracked_repo, "pack-refs", "--all")
    head = git(tracked_repo, "rev-parse", "HEAD")
    assert not (tracked_repo / ".git" / "refs" / "gittrack" / "code" / head).exists()
    _sim(tracked_repo, "--steps", "2", env=env)  # the branch is packed: git moves it
    log.write_text("")
    _sim(tracked_repo, "--steps", "3", env=env)
    assert not [c for c in log.read_text().splitlines() if "update-ref" in c]
    assert not (tracked_repo / ".git" / "refs" / "gittrack" / "code" / head).exists()
    assert git(tracked_repo, "rev-parse", f"refs/gittrack/code/{head}") == head
    assert len(git(tracked_repo, "log", "--format=%s", "gittrack/runs").splitlines()) == 4
    git(tracked_repo, "fsck", "--strict")


def test_a_packed_ref_that_is_only_verified_is_compared_in_packed_refs(tracked_repo: Path) -> None:
    repo = store.find_repo(tracked_repo)
    head = git(tracked_repo, "rev-parse", "HEAD")
    git(tracked_repo, "update-ref", f"refs/gittrack/code/{head}", head)
    git(tracked_repo, "pack-refs", "--all")
    tip = store.write_run(repo, _record(1), {})  # through git: the branch was packed
    commit = git(tracked_repo, "commit-tree", "-p", tip, "-m", "next", f"{tip}^{{tree}}")
    update = f"update {store.RUNS_REF} {commit} {tip}"
    done = reflock.update(repo, [update, f"verify refs/gittrack/code/{head} {tip}"])
    assert done is not None and done.returncode == 1
    assert f"is at {head} but expected {tip}" in done.stderr.decode()
    done = reflock.update(repo, [update, f"verify refs/gittrack/code/{head} {head}"])
    assert done is not None and done.returncode == 0
    assert git(tracked_repo, "rev-parse", "gittrack/runs") == commit
    assert not list((tracked_repo / ".git" / "refs").rglob("*.lock"))


RACER = """
import os, subprocess, sys
from gittrack import store
from gittrack.store import reflock
repo = store.find_repo(".")
commits, use_git, done = sys.argv[1].split(","), sys.argv[2] == "git", 0
while done < len(commits):
    try:
        current = open(os.path.join(repo.common_dir, store.RUNS_REF)).read().strip()
    except FileNotFoundError:  # between git's unlink of nothing and rename: read again
        continue
    if use_git:
        ok = subprocess.run(["git", "update-ref", store.RUNS_REF, commits[done], current],
                            capture_output=True).returncode == 0
    else:
        outcome = reflock.update(repo, [f"update {store.RUNS_REF} {commits[done]} {current}"])
        assert outcome is not None, "left to git"
        ok = outcome.returncode == 0
    done += ok
"""


def test_racing_writers_without_the_branch_lock_never_lose_an_update(tracked_repo: Path) -> None:
    """Five processes move the branch with compare-and-swap as fast as they can, one of them
    through git: every success is one reflog line whose old value is the line before's new one
    (no update lost, no lock of another writer taken away), and no lock is left."""
    tip = git(tracked_repo, "rev-parse", "gittrack/runs")
    tree = git(tracked_repo, "rev-parse", f"{tip}^{{tree}}")
    script = "".join(
        f"commit refs/heads/c{i}\ncommitter A <a@b> {i} +0000\ndata {len(str(i))}\n{i}\n"
        f"M 040000 {tree} x\n"
        for i in range(5 * 25)
    )
    done = subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=tracked_repo, input=script.encode()
    )
    assert done.returncode == 0
    commits = [git(tracked_repo, "rev-parse", f"refs/heads/c{i}") for i in range(5 * 25)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                RACER,
                ",".join(commits[25 * i : 25 * i + 25]),
                "git" if i == 0 else "gittrack",
            ],
            cwd=tracked_repo,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(5)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, errors
    reflog = (tracked_repo / ".git" / "logs" / store.RUNS_REF).read_text().splitlines()
    pairs = [line.split(" ")[:2] for line in reflog]
    moves = [p for p in pairs if p[1] in set(commits)]
    assert len(moves) == 5 * 25
    assert all(new == nxt for (_, new), (nxt, _) in itertools.pairwise(pairs))
    assert not list((tracked_repo / ".git" / "refs").rglob("*.lock"))


HOLDER = """
import os, sys
from gittrack import store
from gittrack.store import reflock
repo = store.find_repo(".")
tip = store.tip(repo)[0]
commit = sys.argv[1]
real_fsync = reflock.fsync_all
def killed(fds):  # the process dies holding its ref locks: as SIGKILL while it fsyncs
    os._exit(9)
reflock.fsync_all = killed
reflock.update(repo, [f"update {store.RUNS_REF} {commit} {tip}"])
"""


def test_ref_locks_of_a_writer_that_died_holding_them_are_cleared_by_the_next(
    tracked_repo: Path,
) -> None:
    """A process killed between taking its ref locks and renaming them leaves them behind (no
    process can clean up after SIGKILL); the next writer finds their owner dead and clears them
    at once, instead of waiting for them to grow stale (STALE_REF_LOCK_S)."""
    tip = git(tracked_repo, "rev-parse", "gittrack/runs")
    commit = git(tracked_repo, "commit-tree", "-p", tip, "-m", "next", f"{tip}^{{tree}}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", HOLDER, commit], cwd=tracked_repo, env=env, capture_output=True
    )
    assert done.returncode == 9, done.stderr
    assert (tracked_repo / RUNS_LOCK).exists()  # left behind, as git's own would be
    repo = store.find_repo(tracked_repo)
    before = store.STATS["retries"]
    store.write_run(repo, _record(1), {})
    assert store.STATS["retries"] - before <= 2  # not the ~10 s of retries of a stale lock
    assert not list((tracked_repo / ".git" / "refs").rglob("*.lock"))
    assert git(tracked_repo, "rev-parse", "gittrack/runs^") == tip
    git(tracked_repo, "fsck", "--strict")
