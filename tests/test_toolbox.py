"""Terminal habits: readable ls and show, pager, quiet/verbose, completion, verbs, config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import write_script
from lookup_support import write_runs

from gittrack import store
from gittrack.cli.table import render_runs
from gittrack.library.listing import list_runs


def two_commands() -> list[dict[str, Any]]:
    """Six sims of a temperature sweep, then two analyses each reading all six (a RunRef list)."""
    sims: list[dict[str, Any]] = [
        {
            "id": f"{i:04x}" + "5151" * 6 + "aaaa",
            "name": f"sweep-{i}",
            "params": {"temp": 100 * (i + 1), "seed": i % 2, "steps": 10_000, "dt": 0.001},
            "metrics": {"energy": -0.5 * i - 0.25, "steps_done": 10_000},
            "env": {"python": "3.11", "host": f"node{i}"},
        }
        for i in range(6)
    ]
    ids = [s["id"] for s in sims]
    analyses: list[dict[str, Any]] = [
        {
            "command": "analysis.py:summarise",
            "name": f"summary-{j}",
            "params": {"sims": ids[: 3 + 3 * j], "bins": [1, 2, 3], "method": f"hist{j}"},
            "metrics": {"mean_energy": -1.25 - j},
            "env": {"python": "3.11", "host": "node9"},
        }
        for j in range(2)
    ]
    return sims + analyses


def test_ls_with_several_commands_is_readable(
    repo: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_runs(repo, two_commands())
    monkeypatch.setenv("COLUMNS", "120")
    listing = list_runs(store.find_repo(repo))
    lines = render_runs(listing, "table", fit=True).splitlines()
    header = lines[0].split()
    assert header[:4] == ["id", "name", "command", "status"]
    # the swept param and a metric come before the run-id list and survive 120 columns
    assert {"temp", "energy"} <= set(header)
    assert all(len(line) <= 120 for line in lines[:-1])
    summary = next(line for line in lines if "summary-1" in line)
    assert "analysis.py:summarise" in summary and "6 runs" in summary
    assert "[3 items]" in summary or "bins" not in header
    assert "5151" not in summary  # no 32-character ids
    footer = lines[-1]
    assert footer.startswith("8 of 8 runs; hidden: ")
    assert "(widen the terminal or --columns)" in footer and "columns hidden" not in footer
    hidden = footer.split("hidden: ", 1)[1].split(" (", 1)[0].split(", ")
    assert hidden and all(
        h.startswith(("params.", "metrics.", "started", "duration")) for h in hidden
    )
    # one command's table: only its runs, no command column, its params
    result = run_cli(repo, "ls", "--command", "sim.py")
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    assert out[0].split()[:3] == ["id", "name", "status"] and "temp" in out[0].split()
    assert "summary" not in result.output and out[-1] == "6 of 8 runs"
    result = run_cli(repo, "ls", "--command", "analysis.py")
    assert "summary-0" in result.output and "sweep-0" not in result.output


WRITER = """\
import click
import gittrack


@gittrack.command()
@click.option("--temp", type=float, default=1.0)
def main(temp):
    for step in range(40):
        print(f"step {step} at {temp}")
    gittrack.save("blob", b"x" * 3 * 1024 * 1024)
    return {"energy": -temp}
"""

READER = """\
import click
import gittrack


@gittrack.command()
@click.option("--sims", type=gittrack.RunRef(multiple=True))
def summarise(sims):
    print("read", len(sims))
    return {"n": len(sims)}
"""


def test_show_is_readable(tracked_repo: Path, run_cli) -> None:
    write_script(tracked_repo, "writer.py", WRITER)
    write_script(tracked_repo, "reader.py", READER)
    for temp in (1, 2):
        result = run_cli(
            tracked_repo, "run", "--name", f"hot-{temp}", "writer.py", "--temp", str(temp)
        )
        assert result.exit_code == 0, result.output
    assert run_cli(tracked_repo, "run", "reader.py", "--sims", "hot-1,hot-2").exit_code == 0
    rows = json.loads(run_cli(tracked_repo, "ls", "--format", "json").output)
    by_name = {r.get("name") or "reader": r for r in rows}
    out = run_cli(tracked_repo, "show", "latest").output
    lines = out.splitlines()
    hot1, hot2 = by_name["hot-1"]["id"][:8], by_name["hot-2"]["id"][:8]
    # params holding run ids: a count and short ids, no 32-character ids anywhere
    assert any(line.split() == ["sims:", "2", "runs:", f"{hot1},", hot2] for line in lines), out
    assert by_name["hot-1"]["id"] not in out
    # inputs under a header, with the input runs' names and short ids
    head = lines.index("inputs:")
    assert lines[head + 1].split()[:2] == [hot1, "hot-1"] and "writer.py" in lines[head + 1]
    assert lines[head + 2].split()[:2] == [hot2, "hot-2"]
    # the tail of the logs
    assert "stdout (last lines):" in lines and "  read 2" in lines
    out = run_cli(tracked_repo, "show", "hot-2").output
    lines = out.splitlines()
    blob = next(line for line in lines if line.strip().startswith("blob"))
    assert "3.0 MiB" in blob and "3145728" not in out
    folder = tracked_repo / ".gittrack" / "outputs" / by_name["hot-2"]["id"]
    assert f"outputs (in {folder}):" in lines
    assert "  step 39 at 2.0" in lines and "  step 20 at 2.0" not in lines  # only the tail
