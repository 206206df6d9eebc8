"""Run folders two levels deep (`runs/3f/2a/<id>`), and branches gittrack 0.1 wrote with one
level (`runs/3f/<id>`): read, listed, indexed, synced, removed, moved when written again and
joined with new ones by pull."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import git

from gittrack import store as gitstore
from gittrack.model.record import RunRecord, legacy_run_folder, run_folder, split_run_path


def branch_paths(repo: Path) -> list[str]:
    return git(repo, "ls-tree", "-r", "--name-only", "gittrack/runs", "--", "runs").splitlines()


def to_old_layout(repo: Path) -> None:
    """Move every run folder of the branch tip to `runs/<2>/<id>`, in one new commit, as a
    branch of gittrack 0.1 holds them; the index is deleted, as on a fresh clone."""
    env = {**os.environ, "GIT_INDEX_FILE": str(repo / ".git" / "layout-index")}
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "gittrack/runs"],
        cwd=repo,
        capture_output=True,
        check=True,
        env=env,
    ).stdout
    lines = []
    for entry in filter(None, listing.split(b"\0")):
        meta, _, path = entry.decode().partition("\t")
        run = split_run_path(path)
        if run is not None:
            path = f"{legacy_run_folder(run[0])}/{run[1]}"
        lines.append(f"{meta}\t{path}\0")
    subprocess.run(["git", "read-tree", "--empty"], cwd=repo, check=True, env=env)
    subprocess.run(
        ["git", "update-index", "-z", "--index-info"],
        cwd=repo,
        input="".join(lines).encode(),
        check=True,
        env=env,
    )
    tree = subprocess.run(
        ["git", "write-tree"], cwd=repo, capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    commit = git(repo, "commit-tree", tree, "-p", "gittrack/runs", "-m", "gittrack 0.1 layout")
    git(repo, "update-ref", "refs/heads/gittrack/runs", commit)
    os.remove(repo / ".git" / "layout-index")
    for name in os.listdir(repo / ".git" / "gittrack"):
        if name.startswith("index.sqlite"):
            os.remove(repo / ".git" / "gittrack" / name)


def record(run_cli, repo: Path, temp: int) -> str:
    result = run_cli(repo, "run", "sim.py", "--temp", str(temp))
    assert result.exit_code == 0, result.output
    return git(repo, "log", "-1", "--format=%(trailers:key=Run-Id,valueonly)", "gittrack/runs")


def listed(run_cli, repo: Path, *args: str) -> dict[str, float]:
    result = run_cli(repo, "ls", "--json", *args)
    assert result.exit_code == 0, result.output
    return {run["id"]: run["params"]["temp"] for run in json.loads(result.output)}


def fsck_clean(repo: Path) -> None:
    proc = subprocess.run(["git", "fsck", "--no-dangling"], cwd=repo, capture_output=True)
    assert proc.returncode == 0 and not proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("runs/3f/2a/3f2a" + "0" * 28 + "/run.toml", ("3f2a" + "0" * 28, "run.toml")),
        ("runs/3f/2a/3f2a" + "0" * 28, ("3f2a" + "0" * 28, "")),
        ("runs/3f/3f2a" + "0" * 28 + "/out/a.dvc", ("3f2a" + "0" * 28, "out/a.dvc")),
        ("runs/3f/3f2a" + "0" * 28, ("3f2a" + "0" * 28, "")),
        ("runs/3f/2a", None),
        ("runs/3f", None),
        ("runs", None),
        ("README.md", None),
        (".dvc/config", None),
    ],
)
def test_a_path_on_the_branch_names_its_run_in_either_layout(
    path: str, expected: tuple[str, str] | None
) -> None:
    assert split_run_path(path) == expected


def test_a_recorded_run_is_written_two_levels_deep(run_cli, tracked_repo: Path) -> None:
    run_id = record(run_cli, tracked_repo, 3)
    paths = branch_paths(tracked_repo)
    assert f"runs/{run_id[:2]}/{run_id[2:4]}/{run_id}/run.toml" in paths
    assert all(p.startswith(f"{run_folder(run_id)}/") for p in paths)
    assert listed(run_cli, tracked_repo) == {run_id: 3.0}


def test_a_branch_in_the_old_layout_is_read_indexed_and_synced(run_cli, tracked_repo: Path) -> None:
    old = {record(run_cli, tracked_repo, t): float(t) for t in (1, 2, 3)}
    to_old_layout(tracked_repo)
    paths = branch_paths(tracked_repo)
    assert all(f"{legacy_run_folder(i)}/run.toml" in paths for i in old)
    assert listed(run_cli, tracked_repo) == old  # a first index build over the old layout
    assert listed(run_cli, tracked_repo, "--where", "params.temp = 2") == {
        i: t for i, t in old.items() if t == 2
    }
    first = min(old)
    shown = run_cli(tracked_repo, "show", first[:8])
    assert shown.exit_code == 0, shown.output
    assert first in shown.output and "completed" in shown.output

    new = record(run_cli, tracked_repo, 4)  # a sync over the old and the new layout
    assert f"{run_folder(new)}/run.toml" in branch_paths(tracked_repo)
    assert listed(run_cli, tracked_repo) == {**old, new: 4.0}

    removed = run_cli(tracked_repo, "rm", first[:8], "--yes")
    assert removed.exit_code == 0, removed.output
    assert not any(first in p for p in branch_paths(tracked_repo))
    assert set(listed(run_cli, tracked_repo)) == (set(old) | {new}) - {first}
    fsck_clean(tracked_repo)


def test_a_run_in_the_old_layout_written_again_moves_and_stays_listed(
    run_cli, tracked_repo: Path
) -> None:
    run_id = record(run_cli, tracked_repo, 5)
    to_old_layout(tracked_repo)
    assert listed(run_cli, tracked_repo) == {run_id: 5.0}  # the index knows the old folder
    repo = gitstore.find_repo(tracked_repo)
    rec = RunRecord.from_toml(gitstore.read_record_bytes(repo, run_id), run_id)
    rec.note = "written again"
    files = {
        n: gitstore.read_run_file(repo, run_id, n) or b"" for n in gitstore.run_files(repo, run_id)
    }
    files.pop("run.toml")
    gitstore.write_run(repo, rec, files)
    paths = branch_paths(tracked_repo)
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == sorted(["run.toml", *files])
    assert all(p.startswith(f"{run_folder(run_id)}/") for p in paths)
    assert listed(run_cli, tracked_repo) == {run_id: 5.0}  # the sync saw a move, not a removal
    shown = run_cli(tracked_repo, "show", run_id[:8], "--json")
    assert json.loads(shown.output)["note"] == "written again"
    fsck_clean(tracked_repo)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    path = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(path))
    return path


def test_pull_joins_an_old_layout_branch_with_new_runs(
    run_cli, tracked_repo: Path, remote: Path, tmp_path: Path
) -> None:
    alice = tracked_repo
    git(alice, "remote", "add", "origin", str(remote))
    git(alice, "push", "-q", "origin", "main")
    old = {record(run_cli, alice, t): float(t) for t in (1, 2)}
    to_old_layout(alice)
    assert run_cli(alice, "push").exit_code == 0
    git(tmp_path, "clone", "-q", str(remote), str(tmp_path / "bob"))
    bob = tmp_path / "bob"
    assert run_cli(bob, "pull").exit_code == 0
    bobs = record(run_cli, bob, 3)
    assert run_cli(bob, "push").exit_code == 0
    alices = record(run_cli, alice, 4)
    pulled = run_cli(alice, "pull")
    assert pulled.output == "1 new run(s) from origin, joined with yours by a merge commit.\n"
    assert listed(run_cli, alice) == {**old, bobs: 3.0, alices: 4.0}
    assert run_cli(alice, "push").exit_code == 0
    assert run_cli(bob, "pull").output == "1 new run(s) from origin (fast-forward).\n"
    assert listed(run_cli, bob) == listed(run_cli, alice)
    fsck_clean(alice)
    fsck_clean(bob)


def test_a_moved_run_changed_on_both_sides_is_a_conflict_naming_its_folder(
    run_cli, tracked_repo: Path, remote: Path, tmp_path: Path
) -> None:
    alice = tracked_repo
    git(alice, "remote", "add", "origin", str(remote))
    git(alice, "push", "-q", "origin", "main")
    run_id = record(run_cli, alice, 6)
    to_old_layout(alice)
    assert run_cli(alice, "push").exit_code == 0
    git(tmp_path, "clone", "-q", str(remote), str(tmp_path / "bob"))
    bob = tmp_path / "bob"
    assert run_cli(bob, "pull").exit_code == 0
    for repo, note in ((alice, "alice's"), (bob, "bob's")):
        store = gitstore.find_repo(repo)
        rec = RunRecord.from_toml(gitstore.read_record_bytes(store, run_id), run_id)
        rec.note = note
        gitstore.write_run(store, rec, {})
    assert run_cli(alice, "push").exit_code == 0
    before = git(bob, "rev-parse", "gittrack/runs")
    result = run_cli(bob, "pull")
    assert result.exit_code == 1
    assert f"-- {run_folder(run_id)}'" in result.output
    assert git(bob, "rev-parse", "gittrack/runs") == before
