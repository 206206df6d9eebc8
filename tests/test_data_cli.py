"""The data commands' JSON output, help texts and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from conftest import write_script

from gittrack.cli import cli

SIM = """\
import click, gittrack

@gittrack.command()
def main():
    return {"blob": b"payload", "score": 1.5}
"""


@pytest.fixture
def one_run(tracked_repo: Path, run_cli) -> Path:
    write_script(tracked_repo, "sim.py", SIM)
    assert run_cli(tracked_repo, "run", "sim.py").exit_code == 0
    return tracked_repo


@pytest.mark.parametrize(
    "command",
    ["remote", "remote set", "remote show", "checkout", "push", "rm", "gc", "status", "verify"],
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    group = cli
    for part in command.split():
        group = group.get_command(click.Context(group), part)  # type: ignore[attr-defined]
    assert "Example:" in (group.help or "")


def test_json_outputs(one_run: Path, run_cli, tmp_path: Path) -> None:
    status = json.loads(run_cli(one_run, "status", "--json").output)
    assert status["unpushed"] == [] and status["runs"] == []
    assert status["remote"].endswith(tuple("0123456789abcdef"))
    verify = json.loads(run_cli(one_run, "verify", "--json").output)
    assert verify == {"checked": 1, "problems": []}
    push = json.loads(run_cli(one_run, "push", "--json").output)
    assert push["copied"] == 0 and push["missing"] == []
    paths = json.loads(
        run_cli(one_run, "checkout", "latest", "--to", str(tmp_path / "o"), "--json").output
    )
    assert [Path(p).read_bytes() for p in paths] == [b"payload"]
    remote = json.loads(run_cli(one_run, "remote", "show", "--json").output)
    assert remote["url"] == status["remote"]


def test_errors_are_one_line(one_run: Path, run_cli) -> None:
    result = run_cli(one_run, "checkout", "zzzz")
    assert result.exit_code == 1
    assert result.output == "Error: No run matches \"zzzz\". ('gittrack ls' lists runs.)\n"
    result = run_cli(one_run, "checkout", "latest", "score")
    assert result.exit_code == 1
    assert "has no output 'score' (its outputs: blob)" in result.output
    result = run_cli(one_run, "rm")
    assert result.exit_code == 2
