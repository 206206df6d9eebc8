"""Preparing a repository for gittrack: the runs branch, ignored folders, shared settings."""

from __future__ import annotations

from pathlib import Path

from .. import store

WORK_DIR = ".gittrack"  # in the working tree, ignored through .git/info/exclude
EXCLUDES = [f"/{WORK_DIR}/"]

BRANCH_README = """\
# gittrack runs

This branch is written by gittrack: one commit per recorded run. Each run has a folder
`runs/<id[:2]>/<id[2:4]>/<id>/` holding `run.toml` (its parameters, code, environment,
metrics and outputs), its captured logs and DVC pointer files for its outputs.
Read it with `gittrack ls`, `gittrack show ID`, or plain `git log gittrack/runs`.
"""


def outputs_root(repo: store.Repo) -> Path:
    """Where runs write their outputs in the working tree: `.gittrack/outputs/<run id>/`."""
    return repo.root / WORK_DIR / "outputs"


def initial_files(repo: store.Repo) -> dict[str, bytes]:
    """The shared settings committed first on the runs branch."""
    files = {"README.md": BRANCH_README.encode()}
    try:
        from . import datastore
    except ImportError:
        return files
    files.update(datastore.initial_files(repo))
    return files


def init(repo: store.Repo) -> bool:
    """Prepare `repo` (idempotent); True when the runs branch was created now."""
    store.ensure_excluded(repo, EXCLUDES)
    repo.make_dir(repo.state_dir)
    if store.tip(repo) is not None:
        return False
    if store.adopt_remote_branch(repo):  # a clone: continue the shared branch
        return True
    return store.init_branch(repo, initial_files(repo)) is not None


def ensure_initialised(repo: store.Repo) -> None:
    """The first run in a repository never initialised initialises it."""
    if store.tip(repo) is None or not (repo.state_dir).is_dir():
        init(repo)
