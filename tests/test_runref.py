"""RunRef: references to earlier runs become Run objects and input edges."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from conftest import branch_log, write_script

import gittrack
from gittrack import store
from gittrack.model.record import Output, RunRecord
from gittrack.recording.runref import RunRef

ANALYSE = """\
import click
import gittrack


@gittrack.command()
@click.option("--sims", type=gittrack.RunRef(multiple=True))
def analyse(sims):
    print("got", ",".join(r.short for r in sims))
    return {"total": sum(r.metrics["energy"] for r in sims), "n": len(sims)}
"""

ONE = """\
import click
import gittrack


@gittrack.command()
@click.option("--sim", type=gittrack.RunRef())
def one(sim):
    return {"energy": sim.metrics.get("energy", 0), "sim_status": sim.status}
"""


def show(run_cli, repo: Path, ref: str) -> dict:
    result = run_cli(repo, "show", ref, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def sims(run_cli, repo: Path, *temps: float) -> list[str]:
    for temp in temps:
        assert run_cli(repo, "run", "sim.py", "--temp", str(temp)).exit_code == 0
    rows = json.loads(run_cli(repo, "ls", "--format", "json").output)
    return [r["id"] for r in reversed(rows)]


def test_ids_prefixes_names_latest_become_runs_and_inputs(tracked_repo: Path, run_cli) -> None:
    ids = sims(run_cli, tracked_repo, 1.0, 2.0)
    assert run_cli(tracked_repo, "run", "--name", "base", "sim.py", "--temp", "3").exit_code == 0
    write_script(tracked_repo, "analyse.py", ANALYSE)
    result = run_cli(tracked_repo, "run", "analyse.py", "--sims", f"{ids[0]},{ids[1][:6]},base")
    assert result.exit_code == 0, result.output
    record = show(run_cli, tracked_repo, "latest")
    assert record["metrics"] == {"total": 12.0, "n": 3}
    base = show(run_cli, tracked_repo, "base")["id"]
    assert [i["run"] for i in record["inputs"]] == [ids[0], ids[1], base]
    assert all(i["commit"] for i in record["inputs"])
    write_script(tracked_repo, "one.py", ONE)
    assert run_cli(tracked_repo, "run", "one.py", "--sim", "latest").exit_code == 0
    assert (
        show(run_cli, tracked_repo, "latest")["inputs"][0]["run"]
        == show(run_cli, tracked_repo, "latest")["params"]["sim"]
    )


def test_unknown_ref_is_a_usage_error_and_nothing_is_recorded(tracked_repo: Path, run_cli) -> None:
    sims(run_cli, tracked_repo, 1.0)
    write_script(tracked_repo, "one.py", ONE)
    before = branch_log(tracked_repo)
    result = run_cli(tracked_repo, "run", "one.py", "--sim", "nosuchname")
    assert result.exit_code == 2
    assert "Invalid value for '--sim': No run matches \"nosuchname\"." in result.output
    assert branch_log(tracked_repo) == before


def test_one_run_expected_but_many_given(tracked_repo: Path, run_cli) -> None:
    ids = sims(run_cli, tracked_repo, 1.0, 2.0)
    write_script(tracked_repo, "one.py", ONE)
    result = run_cli(tracked_repo, "run", "one.py", "--sim", f"{ids[0]},{ids[1]}")
    assert result.exit_code == 2
    assert "matches 2 runs but this option takes one" in result.output


def test_failed_runs_refused_unless_allowed(tracked_repo: Path, run_cli) -> None:
    run_cli(tracked_repo, "run", "sim.py", "--temp", "-1")  # raises: recorded as failed
    write_script(tracked_repo, "one.py", ONE)
    before = branch_log(tracked_repo)
    result = run_cli(tracked_repo, "run", "one.py", "--sim", "latest")
    assert result.exit_code == 2
    assert "Refusing to use runs that did not complete as inputs:" in result.output
    assert "(failed)" in result.output and "--allow-failed" in result.output
    assert branch_log(tracked_repo) == before
    result = run_cli(tracked_repo, "run", "--allow-failed", "one.py", "--sim", "latest")
    assert result.exit_code == 0, result.output
    assert show(run_cli, tracked_repo, "latest")["metrics"]["sim_status"] == "failed"


def test_query_selects_runs(tracked_repo: Path, run_cli) -> None:
    sims(run_cli, tracked_repo, 100.0, 200.0, 300.0)
    write_script(tracked_repo, "analyse.py", ANALYSE)
    before = branch_log(tracked_repo)
    result = run_cli(tracked_repo, "run", "analyse.py", "--sims", "params.temp >= 1000")
    assert result.exit_code == 2
    assert 'No run matches the query "params.temp >= 1000"' in result.output
    assert branch_log(tracked_repo) == before
    result = run_cli(tracked_repo, "run", "analyse.py", "--sims", "params.temp >= 200")
    assert result.exit_code == 0, result.output
    assert show(run_cli, tracked_repo, "latest")["metrics"] == {"total": 1000.0, "n": 2}


def test_file_argument_equal_to_an_output_becomes_an_edge(tracked_repo: Path, run_cli) -> None:
    repo = store.find_repo(tracked_repo)
    producer = RunRecord(id="ab" * 16, command="make.py", status="completed")
    producer.outputs["table"] = Output(
        path="table.csv", md5="49f68a5c8493ec2c0bf489821c21fc3b", size=2
    )  # md5("hi")
    store.write_run(repo, producer, {})
    write_script(
        tracked_repo,
        "use.py",
        """\
        import click
        import gittrack


        @gittrack.command()
        @click.argument("table", type=click.Path(exists=True))
        def use(table):
            return {"size": len(open(table).read())}
        """,
    )
    (tracked_repo / "elsewhere.csv").write_text("hi")
    assert run_cli(tracked_repo, "run", "use.py", "elsewhere.csv").exit_code == 0
    inputs = show(run_cli, tracked_repo, "latest")["inputs"]
    assert inputs == [
        {
            "run": "ab" * 16,
            "commit": inputs[0]["commit"],
            "output": "table",
            "md5": "49f68a5c8493ec2c0bf489821c21fc3b",
        }
    ]
    assert inputs[0]["commit"]
    (tracked_repo / "other.csv").write_text("no match")
    assert run_cli(tracked_repo, "run", "use.py", "other.csv").exit_code == 0
    assert "inputs" not in show(run_cli, tracked_repo, "latest")


def test_loaded_outputs_are_recorded_with_name_and_md5(tracked_repo: Path, run_cli) -> None:
    write_script(
        tracked_repo,
        "make.py",
        """\
        import gittrack


        @gittrack.command()
        def make():
            return {"data": b"payload", "other": b"x"}
        """,
    )
    assert run_cli(tracked_repo, "run", "make.py").exit_code == 0
    made = show(run_cli, tracked_repo, "latest")
    write_script(
        tracked_repo,
        "use.py",
        """\
        import click
        import gittrack


        @gittrack.command()
        @click.option("--src", type=gittrack.RunRef())
        def use(src):
            src.path("data")
            return {"ok": True}
        """,
    )
    assert run_cli(tracked_repo, "run", "use.py", "--src", made["id"]).exit_code == 0
    inputs = show(run_cli, tracked_repo, "latest")["inputs"]
    assert [(i["run"], i["output"], i["md5"]) for i in inputs] == [
        (made["id"], "data", made["outputs"]["data"]["md5"])
    ]


def test_param_type_contract(tracked_repo: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = sims(run_cli, tracked_repo, 1.0, 2.0)
    monkeypatch.setenv("GITTRACK_REPO", str(tracked_repo))
    kind = RunRef()
    run = gittrack.Run(ids[0])
    assert kind.convert(run, None, None) is run
    assert RunRef(multiple=True).convert(ids[1][:5], None, None) == (gittrack.Run(ids[1]),)
    with pytest.raises(click.BadParameter, match="No run matches"):
        kind.convert("zzzz-none", None, None)
    cmd = click.Command("x", params=[click.Option(["--sim"], type=kind)])
    ctx = click.Context(cmd)
    offered = [c.value for c in kind.shell_complete(ctx, cmd.params[0], ids[0][:1])]
    assert ids[0] in offered


def test_inputs_only_name_runs_finished_before_the_run_started(tracked_repo: Path, run_cli) -> None:
    """Cycles are impossible: a run in progress is not on the branch, so nothing can name it."""
    write_script(
        tracked_repo,
        "chain.py",
        """\
        import click
        import gittrack


        @gittrack.command()
        @click.option("--up", type=gittrack.RunRef(multiple=True), default=None)
        @click.option("--self-ref", is_flag=True)
        def chain(up, self_ref):
            from gittrack.recording.context import current

            if self_ref:
                gittrack.Run(current().id)   # itself: not resolvable
            return {"n": len(up or ())}
        """,
    )
    assert run_cli(tracked_repo, "run", "chain.py").exit_code == 0
    for _ in range(3):
        assert run_cli(tracked_repo, "run", "--force", "chain.py", "--up", "latest").exit_code == 0
    result = run_cli(tracked_repo, "run", "chain.py", "--self-ref")
    assert result.exit_code == 1
    assert "No run matches" in result.output
    rows = json.loads(run_cli(tracked_repo, "ls", "--format", "json").output)
    by_id = {r["id"]: r for r in rows}
    edges = [(i["run"], r["id"]) for r in rows for i in r.get("inputs", [])]
    assert len(edges) == 3
    for upstream, downstream in edges:
        assert by_id[upstream]["finished"] <= by_id[downstream]["started"]
