"""Data travels with `gittrack push`: outputs loadable in a collaborator's clone and from Dask workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git, write_script

ARRAY = """\
import click
import numpy as np
import gittrack


@gittrack.command()
@click.option("--n", type=int, default=5)
def main(n):
    return {"traj": np.arange(n) * 1.5, "total": float(n)}
"""


@pytest.fixture
def alice(tracked_repo: Path, tmp_path: Path) -> Path:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(tracked_repo, "remote", "add", "origin", str(remote))
    write_script(tracked_repo, "arrays.py", ARRAY)
    git(tracked_repo, "push", "-q", "origin", "main")
    return tracked_repo


def test_outputs_pushed_with_the_runs_load_in_a_clone(run_cli, alice: Path, tmp_path: Path) -> None:
    import gittrack

    assert run_cli(alice, "run", "arrays.py", "--n", "4").exit_code == 0
    pushed = run_cli(alice, "push")
    assert pushed.exit_code == 0, pushed.output
    assert pushed.output.startswith(
        "All outputs are already on the DVC remote "
    )  # pushed by the run
    assert "\nPushed runs to origin (" in pushed.output
    bob = tmp_path / "bob"
    git(tmp_path, "clone", "-q", str(tmp_path / "remote.git"), str(bob))
    assert run_cli(bob, "pull").exit_code == 0
    run = gittrack.Run("latest", bob)
    assert run.load("traj").tolist() == [0.0, 1.5, 3.0, 4.5]


@pytest.mark.slow
def test_outputs_of_dask_workers_without_shared_filesystem(alice: Path) -> None:
    import gittrack
    from gittrack import store as gitstore
    from gittrack.execute.dask_executor import run_tasks
    from gittrack.execute.executors import Task

    store = gitstore.find_repo(alice)
    outcomes = run_tasks(
        store,
        [Task("arrays.py", ["--n", str(n)]) for n in (2, 3)],
        workers=2,
        shared_fs=False,
        progress=False,
    )
    assert [o.status for o in outcomes] == ["completed", "completed"]
    loaded = sorted(gittrack.Run(o.run_id, alice).load("traj").tolist() for o in outcomes)
    assert loaded == [[0.0, 1.5], [0.0, 1.5, 3.0]]
