"""gittrack push / pull: runs shared through a real bare git remote between real clones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import branch_log, fsck_clean, git

from gittrack import store as gitstore
from gittrack.model.record import RunRecord


def run_ids(repo: Path) -> set[str]:
    out = git(repo, "ls-tree", "-r", "--name-only", "gittrack/runs", "--", "runs")
    return {p.split("/")[-2] for p in out.splitlines() if p.endswith("/run.toml")}


def record(run_cli, repo: Path, *args: str) -> None:
    result = run_cli(repo, "run", "sim.py", *args)
    assert result.exit_code == 0, result.output


def clone(remote: Path, where: Path) -> Path:
    git(remote.parent, "clone", "-q", str(remote), str(where))
    return where


def test_push_then_pull_in_a_clone(run_cli, alice: Path, remote: Path, tmp_path: Path) -> None:
    record(run_cli, alice, "--temp", "3")
    result = run_cli(alice, "push")
    assert result.exit_code == 0, result.output
    assert "\nPushed runs to origin (refs/heads/gittrack/runs, 1 code commit" in result.output
    assert git(remote, "rev-parse", "gittrack/runs") == git(alice, "rev-parse", "gittrack/runs")
    code_refs = git(remote, "for-each-ref", "--format=%(refname)", "refs/gittrack/code/")
    assert code_refs and code_refs == git(
        alice, "for-each-ref", "--format=%(refname)", "refs/gittrack/code/"
    )

    bob = clone(remote, tmp_path / "bob")
    result = run_cli(bob, "pull")
    assert result.exit_code == 0, result.output
    assert result.output == "1 run(s) from origin.\n"
    assert run_ids(bob) == run_ids(alice)
    assert git(bob, "for-each-ref", "--format=%(refname)", "refs/gittrack/code/") == code_refs
    shown = run_cli(bob, "ls", "--json")
    assert [run["params"]["temp"] for run in json.loads(shown.output)] == [3.0]
    assert run_cli(bob, "pull").output == "Already up to date.\n"
    assert run_cli(alice, "push").output.endswith("\nRuns: origin is up to date.\n")


def test_diverged_branches_join_by_a_union_merge(
    run_cli, alice: Path, remote: Path, tmp_path: Path
) -> None:
    run_cli(alice, "push")
    bob = clone(remote, tmp_path / "bob")
    record(run_cli, bob, "--temp", "1")  # the clone continues the shared branch
    assert len(git(bob, "rev-list", "--max-parents=0", "gittrack/runs").splitlines()) == 1
    record(run_cli, alice, "--temp", "2")
    record(run_cli, alice, "--temp", "4")
    assert run_cli(alice, "push").exit_code == 0

    refused = run_cli(bob, "push")
    assert refused.exit_code == 1
    assert refused.output == (
        "Error: The git remote 'origin' has runs you do not have yet (refs/heads/gittrack/runs "
        "moved); run 'gittrack pull origin' first, then push again.\n"
    )
    pulled = run_cli(bob, "pull")
    assert pulled.output == "2 new run(s) from origin, joined with yours by a merge commit.\n"
    parents = git(bob, "log", "-1", "--format=%P", "gittrack/runs").split()
    assert len(parents) == 2
    assert branch_log(bob)[0] == "gittrack: join runs from origin's gittrack/runs"
    assert run_cli(bob, "push").exit_code == 0
    assert run_cli(alice, "pull").output == "1 new run(s) from origin (fast-forward).\n"
    assert run_ids(alice) == run_ids(bob) and len(run_ids(alice)) == 3
    assert git(alice, "rev-parse", "gittrack/runs") == git(bob, "rev-parse", "gittrack/runs")
    for repo in (alice, bob, remote):
        fsck_clean(repo)
    assert git(bob, "status", "--porcelain") == ""


def test_the_same_run_with_different_content_is_a_conflict(
    run_cli, alice: Path, remote: Path, tmp_path: Path
) -> None:
    record(run_cli, alice, "--temp", "5")
    run_cli(alice, "push")
    bob = clone(remote, tmp_path / "bob")
    run_cli(bob, "pull")
    (run_id,) = run_ids(bob)
    for repo, note in ((alice, "alice's"), (bob, "bob's")):
        store = gitstore.find_repo(repo)
        rec = RunRecord.from_toml(gitstore.read_record_bytes(store, run_id), run_id)
        rec.note = note
        gitstore.write_run(store, rec, {})
    run_cli(alice, "push")
    before = git(bob, "rev-parse", "gittrack/runs")
    result = run_cli(bob, "pull")
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: Run(s) {run_id[:8]} differ between this repository and origin's"
    )
    assert "nothing was joined" in result.output
    assert git(bob, "rev-parse", "gittrack/runs") == before


def test_runs_removed_on_one_side_stay_removed(
    run_cli, alice: Path, remote: Path, tmp_path: Path
) -> None:
    record(run_cli, alice, "--temp", "6")
    record(run_cli, alice, "--temp", "7")
    run_cli(alice, "push")
    bob = clone(remote, tmp_path / "bob")
    run_cli(bob, "pull")
    gone = sorted(run_ids(alice))[0]
    gitstore.remove_runs(gitstore.find_repo(alice), [gone], "remove one run")
    run_cli(alice, "push")
    record(run_cli, bob, "--temp", "8")
    result = run_cli(bob, "pull")
    assert "1 run(s) removed on origin were removed here too." in result.output
    assert gone not in run_ids(bob) and len(run_ids(bob)) == 2


def test_notes_are_merged(run_cli, alice: Path, remote: Path, tmp_path: Path) -> None:
    record(run_cli, alice, "--temp", "1")
    run_cli(alice, "push")
    bob = clone(remote, tmp_path / "bob")
    run_cli(bob, "pull")
    head = git(alice, "rev-parse", "gittrack/runs")
    git(alice, "notes", "--ref=gittrack", "add", "-m", "checked by alice", head)
    git(bob, "notes", "--ref=gittrack", "add", "-m", "checked by bob", head)
    assert run_cli(alice, "push").exit_code == 0
    refused = run_cli(bob, "push")
    assert refused.exit_code == 1 and "refs/notes/gittrack moved" in refused.output
    assert run_cli(bob, "pull").exit_code == 0
    assert git(bob, "notes", "--ref=gittrack", "show", head).splitlines() == [
        "checked by alice",
        "checked by bob",
    ]
    assert run_cli(bob, "push").exit_code == 0
    run_cli(alice, "pull")
    assert git(alice, "notes", "--ref=gittrack", "show", head).splitlines() == [
        "checked by alice",
        "checked by bob",
    ]


def test_remote_errors_are_one_clear_line(run_cli, tracked_repo: Path, tmp_path: Path) -> None:
    result = run_cli(tracked_repo, "pull", "lab")
    assert result.exit_code == 1
    assert (
        result.output
        == "Error: There is no git remote named 'lab'; add it with 'git remote add lab URL'.\n"
    )
    assert "No git remote: the runs stay in this repository" in run_cli(tracked_repo, "push").output
    git(tracked_repo, "remote", "add", "origin", str(tmp_path / "nowhere.git"))
    result = run_cli(tracked_repo, "pull")
    assert result.exit_code == 1
    assert result.output.startswith("Error: Cannot reach the git remote 'origin' (")
    assert "check its URL with 'git remote -v'" in result.output
    assert "Traceback" not in result.output


def test_pull_json_and_empty_remote(run_cli, alice: Path) -> None:
    result = run_cli(alice, "pull", "--json")
    assert '"kind": "nothing"' in result.output


CONCURRENT_RUNS = """
import subprocess, sys
for i in range({n}):
    subprocess.run([sys.executable, "sim.py", "--temp", str({base} + i)], check=True, capture_output=True)
"""


@pytest.mark.slow
def test_two_clones_record_concurrently_and_join(
    run_cli, alice: Path, remote: Path, tmp_path: Path
) -> None:
    run_cli(alice, "push")
    bob = clone(remote, tmp_path / "bob")
    run_cli(bob, "pull")
    writers = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT_RUNS.format(n=4, base=base)], cwd=repo)
        for repo, base in ((alice, 100), (bob, 200))
    ]
    # while both clones record, they keep exchanging runs
    while any(w.poll() is None for w in writers):
        for repo in (alice, bob):
            assert run_cli(repo, "pull").exit_code == 0
            pushed = run_cli(repo, "push")
            assert pushed.exit_code == 0 or "pull origin' first" in pushed.output
    assert [w.returncode for w in writers] == [0, 0]
    for _ in range(2):
        for repo in (alice, bob):
            assert run_cli(repo, "pull").exit_code == 0
            assert run_cli(repo, "push").exit_code == 0
    assert run_ids(alice) == run_ids(bob)
    assert len(run_ids(alice)) == 8
    for repo in (alice, bob, remote):
        fsck_clean(repo)
