"""Docs that cannot go stale: every command documented, the CLI reference regenerated."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import click

import gittrack
from gittrack.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def load_generator():
    spec = importlib.util.spec_from_file_location(
        "gen_cli_reference", ROOT / "docs" / "gen_cli_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_command_has_help_with_an_example() -> None:
    gen = load_generator()
    missing = []
    for path, cmd in gen.commands(cli, []):
        if not (cmd.help or "").strip():
            missing.append(" ".join(path))
        elif not isinstance(cmd, click.Group) and "Example" not in cmd.help:
            missing.append(" ".join(path) + " (no example)")
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert missing == []


def test_cli_reference_is_up_to_date() -> None:
    gen = load_generator()
    current = (ROOT / "docs" / "cli-reference.md").read_text()
    assert current == gen.render(), "docs/cli-reference.md is stale: run `make docs`"


def test_public_api_matches_all() -> None:
    """__all__ lists exactly the public names, eager and lazy, and each resolves."""
    eager = {
        name
        for name, value in vars(gittrack).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    } - {"TYPE_CHECKING", "Any", "annotations"}
    assert eager | set(gittrack._LAZY) == set(gittrack.__all__) - {"__version__"}
    for name in gittrack.__all__:
        assert getattr(gittrack, name) is not None


def test_dir_of_the_package_offers_the_public_api() -> None:
    """Tab completion in a notebook lists the lazy names and none of the typing helpers."""
    shown = subprocess.run(
        [sys.executable, "-c", "import gittrack; print(' '.join(dir(gittrack)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"command", "RunRef", "Experiment", "runs", "save"} <= set(shown)
    assert not {"Any", "TYPE_CHECKING", "annotations"} & set(shown)
