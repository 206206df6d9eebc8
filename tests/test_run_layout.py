"""Run folders two levels deep (`runs/3f/2a/<id>`), and branches gittrack 0.1 wrote with one
level (`runs/3f/<id>`): read, listed, indexed, synced, removed, moved when written again and
joined with new ones by pull."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fsck_clean, git

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


def copies(repo: Path, run_id: str, ids: list[str]) -> None:
    """Runs with these ids, each a copy of run `run_id` (its record and files)."""
    store = gitstore.find_repo(repo)
    rec = RunRecord.from_toml(gitstore.read_record_bytes(store, run_id), run_id)
    files = {
        n: gitstore.read_run_file(store, run_id, n) or b""
        for n in gitstore.run_files(store, run_id)
    }
    files.pop("run.toml")
    for new in ids:
        rec.id = new
        gitstore.write_run(store, rec, files)


def in_shard(shard: str) -> str:
    return shard + secrets.token_hex(15)


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


def bob_pulls(run_cli, alice: Path, remote: Path, tmp_path: Path) -> tuple[Path, str]:
    """Push alice's runs, clone the remote as bob and pull them: (bob, what the pull said)."""
    assert run_cli(alice, "push").exit_code == 0
    bob = tmp_path / "bob"
    git(tmp_path, "clone", "-q", str(remote), str(bob))
    pulled = run_cli(bob, "pull")
    assert pulled.exit_code == 0, pulled.output
    return bob, pulled.output


def test_pull_joins_an_old_layout_branch_with_new_runs(
    run_cli, alice: Path, remote: Path, tmp_path: Path
) -> None:
    old = {record(run_cli, alice, t): float(t) for t in (1, 2)}
    to_old_layout(alice)
    bob, _ = bob_pulls(run_cli, alice, remote, tmp_path)
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
    run_cli, alice: Path, remote: Path, tmp_path: Path
) -> None:
    run_id = record(run_cli, alice, 6)
    to_old_layout(alice)
    bob, _ = bob_pulls(run_cli, alice, remote, tmp_path)
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


def test_the_first_run_written_to_an_old_shard_moves_the_shard_s_runs_once(
    run_cli, tracked_repo: Path
) -> None:
    first = record(run_cli, tracked_repo, 1)
    shard, elsewhere = first[:2], "00" if first[:2] != "00" else "11"
    siblings, away = [in_shard(shard) for _ in range(3)], in_shard(elsewhere)
    copies(tracked_repo, first, [*siblings, away])
    to_old_layout(tracked_repo)
    assert len(listed(run_cli, tracked_repo)) == 5
    before = git(tracked_repo, "rev-parse", "gittrack/runs")

    new = in_shard(shard)
    copies(tracked_repo, first, [new])
    paths = branch_paths(tracked_repo)
    for run_id in (first, *siblings, new):
        assert f"{run_folder(run_id)}/run.toml" in paths
        assert not any(p.startswith(legacy_run_folder(run_id)) for p in paths)
    assert f"{legacy_run_folder(away)}/run.toml" in paths  # another shard: left as it was
    assert len(git(tracked_repo, "rev-list", f"{before}..gittrack/runs").split()) == 1
    after = git(tracked_repo, "rev-parse", "gittrack/runs")
    store = gitstore.find_repo(tracked_repo)
    others: set[str] = set()
    assert gitstore.changed_runs(store, before, after, others=others) == ({new}, set())
    assert others <= {new}  # the moved folders are not looked at again
    assert set(listed(run_cli, tracked_repo)) == {first, *siblings, away, new}

    again = in_shard(shard)  # the shard holds only sub-shards now: nothing more moves
    copies(tracked_repo, first, [again])
    diff = git(tracked_repo, "diff-tree", "-r", "--name-status", after, "gittrack/runs")
    changes = [line.split("\t") for line in diff.splitlines()]
    assert {status for status, _ in changes} == {"A"}
    assert {path.rsplit("/", 1)[0] for _, path in changes} == {run_folder(again)}
    fsck_clean(tracked_repo)


def test_pull_of_a_branch_that_moved_runs_counts_only_new_ones(
    run_cli, alice: Path, remote: Path, tmp_path: Path
) -> None:
    first = record(run_cli, alice, 1)
    copies(alice, first, [in_shard(first[:2]) for _ in range(4)])
    to_old_layout(alice)
    bob, said = bob_pulls(run_cli, alice, remote, tmp_path)
    assert said == "5 run(s) from origin.\n"
    copies(alice, first, [in_shard(first[:2])])  # moves the shard's five runs
    assert run_cli(alice, "push").exit_code == 0
    record(run_cli, bob, 2)
    pulled = run_cli(bob, "pull")
    assert pulled.output == "1 new run(s) from origin, joined with yours by a merge commit.\n"
    assert len(listed(run_cli, bob)) == 7
    fsck_clean(bob)


def test_pull_counts_a_sub_shard_taken_whole_by_its_new_runs_only(
    run_cli, alice: Path, remote: Path, tmp_path: Path
) -> None:
    first = record(run_cli, alice, 1)
    bob, _ = bob_pulls(run_cli, alice, remote, tmp_path)
    copies(alice, first, [first[:4] + secrets.token_hex(14)])  # beside the run bob has
    assert run_cli(alice, "push").exit_code == 0
    record(run_cli, bob, 2)
    pulled = run_cli(bob, "pull")
    assert pulled.output == "1 new run(s) from origin, joined with yours by a merge commit.\n"
    assert len(listed(run_cli, bob)) == 3


WRITER = """
import sys, time
from pathlib import Path
from gittrack import store
from gittrack.model.record import RunRecord
start, source, new = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
repo = store.find_repo(".")
record = RunRecord.from_toml(store.read_record_bytes(repo, source), source)
record.id = new
while not start.exists():
    time.sleep(0.005)
store.write_run(repo, record, {})
"""


def test_sixteen_writers_at_once_into_old_shards_all_land_and_each_shard_moves_once(
    run_cli, tracked_repo: Path, tmp_path: Path
) -> None:
    first = record(run_cli, tracked_repo, 1)
    shards = sorted({first[:2], "00", "5a", "c3"})
    old = [in_shard(s) for s in shards for _ in range(5)]
    copies(tracked_repo, first, old)
    to_old_layout(tracked_repo)
    before = git(tracked_repo, "rev-parse", "gittrack/runs")
    start = tmp_path / "go"
    new = [in_shard(shards[i % len(shards)]) for i in range(16)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(start), first, run_id],
            cwd=tracked_repo,
            stderr=subprocess.PIPE,
            text=True,
        )
        for run_id in new
    ]
    start.touch()
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    assert len(git(tracked_repo, "rev-list", f"{before}..gittrack/runs").split()) == 16
    paths = branch_paths(tracked_repo)
    for run_id in (first, *old, *new):
        assert f"{run_folder(run_id)}/run.toml" in paths
    assert len([p for p in paths if p.endswith("/run.toml")]) == 1 + len(old) + len(new)
    assert set(listed(run_cli, tracked_repo)) == {first, *old, *new}
    fsck_clean(tracked_repo)


def test_a_branch_with_damaged_folders_costs_only_them(run_cli, tracked_repo: Path) -> None:
    """A collaborator's branch is untrusted: a run folder in another run's sub-shard, a file
    where a sub-shard or a run folder should be, files beside the shards and folders nested a
    level too deep are each skipped (or named unreadable); the runs around them stay readable,
    and new runs are recorded among them."""
    good = [record(run_cli, tracked_repo, t) for t in (1, 2)]
    blob = git(tracked_repo, "rev-parse", f"gittrack/runs:{run_folder(good[0])}/run.toml")
    text = (
        subprocess.run(
            ["git", "hash-object", "-w", "--stdin"],
            cwd=tracked_repo,
            input=b"hello\n",
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    other = good[1][:2] + "/" + good[1][2:4]
    damage = {
        f"runs/{other}/{good[0]}/run.toml": blob,  # in another run's sub-shard
        f"runs/{good[1][:2]}/ee": text,  # a file for a sub-shard
        f"runs/{other}/{good[1][:4]}{'0' * 28}": text,  # a file for a run folder
        "runs/README": text,
        f"runs/aa/bb/cc/{good[0]}/run.toml": blob,  # a level too deep
    }
    env = {**os.environ, "GIT_INDEX_FILE": str(tracked_repo / ".git" / "damage-index")}
    subprocess.run(["git", "read-tree", "gittrack/runs"], cwd=tracked_repo, check=True, env=env)
    for path, sha in damage.items():
        subprocess.run(
            ["git", "update-index", "--add", "--cacheinfo", f"100644,{sha},{path}"],
            cwd=tracked_repo,
            check=True,
            env=env,
        )
    tree = subprocess.run(
        ["git", "write-tree"], cwd=tracked_repo, capture_output=True, text=True, env=env
    ).stdout.strip()
    commit = git(tracked_repo, "commit-tree", tree, "-p", "gittrack/runs", "-m", "damaged")
    git(tracked_repo, "update-ref", "refs/heads/gittrack/runs", commit)
    for name in os.listdir(tracked_repo / ".git" / "gittrack"):
        if name.startswith("index.sqlite"):
            os.remove(tracked_repo / ".git" / "gittrack" / name)

    def runs_and_warnings() -> tuple[dict[str, float], list[str]]:
        result = run_cli(tracked_repo, "ls", "--json")
        assert result.exit_code == 0, result.output
        runs = {run["id"]: run["params"]["temp"] for run in json.loads(result.stdout)}
        return runs, result.stderr.splitlines()

    store = gitstore.find_repo(tracked_repo)
    listing = gitstore.list_run_ids(store)
    assert set(good) <= set(listing) and "README" not in listing and "ee" not in listing
    shard = good[1][:2]
    assert gitstore.list_run_ids(store, shard) == sorted(i for i in listing if i.startswith(shard))
    runs, warnings = runs_and_warnings()
    assert runs == {good[0]: 1.0, good[1]: 2.0}
    assert all(w.startswith("Warning: run ") and "unreadable" in w for w in warnings)
    assert not any(good[0][:8] in w or good[1][:8] in w for w in warnings)
    shown = run_cli(tracked_repo, "show", good[0][:8])
    assert shown.exit_code == 0 and good[0] in shown.stdout
    later = [record(run_cli, tracked_repo, t) for t in (3, 4)]
    runs, _ = runs_and_warnings()
    assert runs == {good[0]: 1.0, good[1]: 2.0, later[0]: 3.0, later[1]: 4.0}
    fsck_clean(tracked_repo)
