"""Generate docs/cli-reference.md from the commands' --help, so the reference cannot go stale."""

from __future__ import annotations

import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gittrack.cli import cli  # noqa: E402


def commands(group: click.Group, prefix: list[str]) -> list[tuple[list[str], click.Command]]:
    found = []
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        found.append(([*prefix, name], cmd))
        if isinstance(cmd, click.Group):
            found.extend(commands(cmd, [*prefix, name]))
    return found


def help_text(path: list[str]) -> str:
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="gittrack", terminal_width=100)
    return result.output.rstrip()


def render() -> str:
    parts = [
        "# CLI reference\n",
        "Generated from `--help` by `make docs` (docs/gen_cli_reference.py); a test fails when it is stale.\n",
        "## gittrack\n",
        "```text\n" + help_text([]) + "\n```\n",
    ]
    for path, _ in commands(cli, []):
        parts.append(f"## gittrack {' '.join(path)}\n")
        parts.append("```text\n" + help_text(path) + "\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    target = ROOT / "docs" / "cli-reference.md"
    target.write_text(render())
    print(f"wrote {target}")
