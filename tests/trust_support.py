"""Helpers shared by the trust tests (issue 11): the CLI as a user runs it, and its JSON."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import run_python


def gittrack(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`python -m gittrack ARGS` in `repo`, as a user types it (user code runs in a new process)."""
    return run_python(repo, "-m", "gittrack", *args, check=check)


def show(run_cli, repo: Path, ref: str = "latest") -> dict:
    result = run_cli(repo, "show", ref, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def ls(run_cli, repo: Path, where: str | None = None) -> list[dict]:
    args = ["ls", "--format", "json", *(["--where", where] if where else [])]
    result = run_cli(repo, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
