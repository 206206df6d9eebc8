"""The runs branch's tip is read as it is now, also by a process whose `git cat-file` has read
the refs before: that git keeps its copy of packed-refs while the file's size, inode and times
look unchanged, so a `git gc` that rewrote packed-refs unnoticed (within a tick of the file
system's clock, onto a recycled inode) left it naming a tip the branch had left. A writer that
asked it built every retry on that tip and failed its compare-and-swap until it gave up ("is at
X but expected Y"); while it retried, its hold on gc kept any gc from rewriting the file again."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import git

from gittrack import store
from gittrack.model.record import RunRecord


def _record(n: int) -> RunRecord:
    return RunRecord(id=f"{n:032x}", command="x", status="completed")


def _ask(probe: subprocess.Popen[bytes]) -> str:
    assert probe.stdin and probe.stdout
    probe.stdin.write(f"{store.RUNS_REF}\n".encode())
    probe.stdin.flush()
    return probe.stdout.readline().split()[0].decode()


def test_the_branch_is_read_anew_after_a_gc_repacked_the_refs_unnoticed(
    tracked_repo: Path,
) -> None:
    repo = store.find_repo(tracked_repo)
    old = store.write_run(repo, _record(1), {})
    new = store.write_run(repo, _record(2), {})  # another writer's run ...
    tree = git(tracked_repo, "rev-parse", f"{new}^{{tree}}")
    packed = tracked_repo / ".git" / "packed-refs"
    for _ in range(50):  # again when git noticed the rewrite (the clock ticked meanwhile)
        git(tracked_repo, "update-ref", store.RUNS_REF, old)  # ... not yet landed
        git(tracked_repo, "pack-refs", "--all")  # the ref only in packed-refs, as after a gc
        repo.close()
        assert store.list_run_ids(repo) == [_record(1).id]  # read through this process's git
        # a git that has read packed-refs too: whether git can tell the rewrite below
        probe = subprocess.Popen(
            ["git", "cat-file", "--batch-check"],
            cwd=tracked_repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert _ask(probe) == old
            text = packed.read_bytes().replace(old.encode(), new.encode())
            with open(
                packed, "r+b"
            ) as fh:  # in place: the inode a rename onto a recycled one gives
                fh.write(text)
            unnoticed = _ask(probe) == old
        finally:
            probe.communicate()
        if unnoticed:
            break
    else:
        pytest.skip("git noticed every rewrite of packed-refs here")
    # the other writer's run has landed: a gc packed the branch, its loose ref is gone
    assert not (tracked_repo / ".git" / store.RUNS_REF).exists()
    assert store.list_run_ids(repo) == [_record(1).id, _record(2).id]
    assert store.write_run(repo, _record(2), {}, if_absent=True) == ""  # there: not again
    assert store.tip(repo) == (new, tree)
    assert git(tracked_repo, "rev-parse", store.RUNS_REF) == new
    retries = store.STATS["retries"]
    landed = store.write_run(repo, _record(3), {})
    assert store.STATS["retries"] == retries  # built on the branch as it is, at once
    assert git(tracked_repo, "rev-parse", f"{landed}^") == new
    assert git(tracked_repo, "rev-parse", store.RUNS_REF) == landed
