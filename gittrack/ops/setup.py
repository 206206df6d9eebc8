"""`gittrack init`: preparing a repository (and, if asked, creating it) for gittrack."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .. import store
from ..errors import NotAGitRepo
from ..store import project


def initialise(path: str | None, *, make_git: bool = False) -> tuple[store.Repo, bool]:
    """Prepare the repository at `path` (or the current one); returns it and whether it was new.

    With `make_git`, a folder that is no git repository becomes one first (`git init`).
    """
    try:
        repo = store.find_repo(path)
    except NotAGitRepo:
        if not make_git:
            raise
        folder = Path(path or ".").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", str(folder)], check=True)
        repo = store.find_repo(folder)
    return repo, project.init(repo)
