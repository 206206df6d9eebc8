"""The flow graph: sweep -> analysis -> analysis of analysis -> lineage SVG."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import write_script

ANALYSE = """\
import click
import gittrack


@gittrack.command()
@click.option("--sims", type=gittrack.RunRef(multiple=True))
def analyse(sims):
    return {"curve": sum(r.metrics["energy"] for r in sims)}
"""

FIT = """\
import click
import gittrack


@gittrack.command()
@click.option("--curve", type=gittrack.RunRef())
def fit(curve):
    return {"slope": curve.metrics["curve"] / 10}
"""


@pytest.fixture
def flow(tracked_repo: Path, run_cli) -> dict[str, object]:
    """A sweep of 4 sims, an analysis of the completed ones, and a fit of the analysis."""
    result = run_cli(
        tracked_repo,
        "sweep",
        "sim.py",
        "--temp",
        "100,200",
        "--steps",
        "1,2",
        "--name",
        "temp-scan",
        "-j",
        "2",
    )
    assert result.exit_code == 0, result.output
    sims = [r["id"] for r in json.loads(run_cli(tracked_repo, "ls", "--format", "json").output)]
    write_script(tracked_repo, "analyse.py", ANALYSE)
    write_script(tracked_repo, "fit.py", FIT)
    try:
        import gittrack.query  # noqa: F401

        ref = "params.temp >= 100 and status = 'completed'"
    except ImportError:  # until the lookup table lands: the same runs by id
        ref = ",".join(s[:8] for s in sims)
    assert (
        run_cli(tracked_repo, "run", "--name", "curve", "analyse.py", "--sims", ref).exit_code == 0
    )
    assert run_cli(tracked_repo, "run", "fit.py", "--curve", "curve").exit_code == 0
    rows = json.loads(run_cli(tracked_repo, "ls", "--format", "json").output)
    return {"sims": sims, "analysis": rows[1]["id"], "fit": rows[0]["id"]}


def test_lineage_svg_of_an_analysis_of_an_analysis(tracked_repo: Path, run_cli, flow) -> None:
    out = tracked_repo.parent / "flow.svg"
    result = run_cli(tracked_repo, "lineage", flow["fit"][:6], "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Wrote {out} (6 runs, 5 edges)."
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for run_id in [*flow["sims"], flow["analysis"], flow["fit"]]:
        assert run_id[:8] in svg
        assert f'xlink:href="/runs/{run_id}"' in svg
    assert "experiment temp&#45;scan" in svg
    assert "analyse.py:analyse" in svg and "fit.py:fit" in svg
    dot1 = run_cli(tracked_repo, "lineage", flow["fit"], "--format", "dot").output
    dot2 = run_cli(tracked_repo, "lineage", flow["fit"], "--format", "dot").output
    assert dot1 == dot2  # deterministic


def test_downstream_depth_collapse_code_and_json(tracked_repo: Path, run_cli, flow) -> None:
    sim = flow["sims"][0]
    data = json.loads(run_cli(tracked_repo, "lineage", sim, "--downstream", "--json").output)
    assert sorted(n["id"] for n in data["nodes"]) == sorted([sim, flow["analysis"], flow["fit"]])
    assert {(e["source"], e["target"]) for e in data["edges"]} == {
        (sim, flow["analysis"]),
        (flow["analysis"], flow["fit"]),
    }
    data = json.loads(
        run_cli(tracked_repo, "lineage", flow["fit"], "--depth", "1", "--json").output
    )
    assert sorted(n["id"] for n in data["nodes"]) == sorted([flow["analysis"], flow["fit"]])
    data = json.loads(
        run_cli(tracked_repo, "lineage", flow["fit"], "--collapse", "--code", "--json").output
    )
    kinds = sorted(n["kind"] for n in data["nodes"])
    assert kinds.count("experiment") == 1 and "code" in kinds
    exp = next(n for n in data["nodes"] if n["kind"] == "experiment")
    assert exp["label"].splitlines()[:4] == [
        "experiment temp-scan",
        "4 runs",
        "steps: 1..2 (2 values)",
        "temp: 100..200 (2 values)",
    ]


def test_lineage_of_unknown_id(tracked_repo: Path, run_cli) -> None:
    result = run_cli(tracked_repo, "lineage", "deadbeef")
    assert result.exit_code == 1
    assert (
        result.output.strip() == "Error: No run matches \"deadbeef\". ('gittrack ls' lists runs.)"
    )


def test_without_graphviz_dot_works_and_svg_explains(
    tracked_repo: Path, run_cli, flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git",):
        target = next(
            Path(p) / tool
            for p in os.environ["PATH"].split(os.pathsep)
            if (Path(p) / tool).exists()
        )
        (bin_dir / tool).symlink_to(target)
    monkeypatch.setenv("PATH", str(bin_dir))
    result = run_cli(tracked_repo, "lineage", flow["fit"], "--format", "dot")
    assert result.exit_code == 0 and result.output.startswith("digraph lineage {")
    result = run_cli(tracked_repo, "lineage", flow["fit"], "-o", str(tmp_path / "x.png"))
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: Rendering png needs Graphviz's 'dot' program, which is not installed; install it"
    )
