"""Records you can trust on real work: experiment membership, rerun, names and diff (issue 11).

End-to-end tests for findings 3, 5, 8, 9 and 10, through what a user sees: the CLI, `show
--json`, `ls --format json`, the public Python API. Wordings these tests pin down:

- Recording a name used before warns once on stderr ("... already used ..."); `show NAME` shows
  the newest and says so ("newest").
- `diff --no-code` says "code differs" and names a command that shows it (`git diff` or
  `gittrack diff`).
- rerun prints one line per output, `  output NAME: VERDICT`, where VERDICT starts with
  "identical bytes", "identical values" or "differs"; a difference in bytes says how many and
  where ("3 bytes differ, all within the first 512 bytes"), one in floats the largest difference.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import git, run_python, write_script
from starlette.testclient import TestClient
from trust_support import gittrack, ls, show

from gittrack.library.compare import _arrays, bytes_differ
from gittrack.ui import create_app

# -- helpers ------------------------------------------------------------------------------------


# -- 3. experiment membership is complete ----------------------------------------------------------


def test_a_run_reused_by_a_sweep_is_a_member_of_its_experiment(tracked_repo: Path, run_cli) -> None:
    run_python(tracked_repo, "sim.py", "--temp", "2")
    earlier = show(run_cli, tracked_repo)
    proc = gittrack(tracked_repo, "sweep", "sim.py", "--temp", "1,2,3", "--name", "scan")
    assert proc.stdout.splitlines()[-1] == "experiment scan: 3 runs (2 completed, 1 reused)"
    members = ls(run_cli, tracked_repo, "experiment = 'scan'")
    assert sorted(r["params"]["temp"] for r in members) == [1.0, 2.0, 3.0]
    assert earlier["id"] in {r["id"] for r in members}
    # the earlier run's commit is not rewritten to join
    assert show(run_cli, tracked_repo, earlier["id"])["commit"] == earlier["commit"]
    assert "experiment: scan" in git(
        tracked_repo, "notes", "--ref=gittrack", "show", earlier["commit"]
    )
    # tagging it later keeps the membership; sweeping again adds no second one
    assert run_cli(tracked_repo, "tag", earlier["id"][:8], "checked").exit_code == 0
    proc = gittrack(tracked_repo, "sweep", "sim.py", "--temp", "1,2,3", "--name", "scan")
    assert proc.stdout.splitlines()[-1] == "experiment scan: 3 runs (3 reused)"
    assert len(ls(run_cli, tracked_repo, "experiment = 'scan'")) == 3
    assert len(ls(run_cli, tracked_repo, "experiment = 'scan' and tags = 'checked'")) == 1


def test_a_run_reused_by_an_experiment_is_a_member(tracked_repo: Path, run_cli) -> None:
    write_script(tracked_repo, "drive.py", """\
        import gittrack

        exp = gittrack.Experiment("fine")
        run = exp.run("sim.py", temp=2.0)
        print("member", run.id, len(exp.runs))
    """)  # fmt: skip
    run_python(tracked_repo, "sim.py", "--temp", "2")
    earlier = show(run_cli, tracked_repo)["id"]
    proc = run_python(tracked_repo, "drive.py")
    assert "reused" in proc.stderr, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"member {earlier} 1"
    assert [r["id"] for r in ls(run_cli, tracked_repo, "experiment = 'fine'")] == [earlier]


QUERY_ANALYSE = """\
import click
import gittrack


@gittrack.command()
@click.option("--sims", type=gittrack.RunRef(multiple=True))
def main(sims):
    return {"n": len(sims)}


if __name__ == "__main__":
    main()
"""


def test_a_reused_run_is_drawn_inside_the_experiment_cluster(tracked_repo: Path, run_cli) -> None:
    run_python(tracked_repo, "sim.py", "--temp", "2")
    earlier = show(run_cli, tracked_repo)["id"]
    gittrack(tracked_repo, "sweep", "sim.py", "--temp", "1,2,3", "--name", "scan")
    write_script(tracked_repo, "count.py", QUERY_ANALYSE)
    run_python(tracked_repo, "count.py", "--sims", "experiment = 'scan'")
    analysis = show(run_cli, tracked_repo)
    assert analysis["metrics"] == {"n": 3}
    shown = run_cli(tracked_repo, "show", earlier[:8])
    assert re.search(r"^  experiments: +scan$", shown.output, re.MULTILINE), shown.output
    dot = run_cli(tracked_repo, "lineage", analysis["id"][:8], "--format", "dot").output
    cluster = re.search(
        r'subgraph cluster_\d+ \{\n\s+label="experiment scan"(.*?)\n  \}', dot, re.S
    )
    assert cluster, dot
    members = set(re.findall(r'^\s+"([0-9a-f]{32})"', cluster.group(1), re.MULTILINE))
    assert earlier in members and len(members) == 3, dot


def test_a_rerun_is_not_a_second_member_of_the_experiment(tracked_repo: Path, run_cli) -> None:
    gittrack(tracked_repo, "sweep", "sim.py", "--temp", "1,2", "--name", "scan")
    one = ls(run_cli, tracked_repo, "params.temp = 1")[0]
    gittrack(tracked_repo, "rerun", one["id"][:8])
    reruns = [r for r in ls(run_cli, tracked_repo) if r.get("rerun_of") == one["id"]]
    assert len(reruns) == 1
    members = ls(run_cli, tracked_repo, "experiment = 'scan'")
    assert sorted(r["params"]["temp"] for r in members) == [1.0, 2.0]
    assert [r["id"] for r in ls(run_cli, tracked_repo, f"rerun_of = '{one['id']}'")] == [
        reruns[0]["id"]
    ]


# -- 5. rerun works for every RunRef shape and from a clone ---------------------------------------

ANALYSE = """\
import click
import gittrack


@gittrack.command()
@click.option("--sims", type=gittrack.RunRef(), multiple=True)
def main(sims):
    return {"total": sum(s.metrics["energy"] for s in sims), "n": len(sims)}


if __name__ == "__main__":
    main()
"""


@pytest.fixture
def analysed(tracked_repo: Path, run_cli) -> tuple[Path, dict]:
    """Three simulations and an analysis given each of them by one id prefix."""
    write_script(tracked_repo, "analyse.py", ANALYSE)
    for temp in ("1", "2", "3"):
        run_python(tracked_repo, "sim.py", "--temp", temp)
    args = [a for r in ls(run_cli, tracked_repo) for a in ("--sims", r["id"][:6])]
    run_python(tracked_repo, "analyse.py", *args)
    analysis = show(run_cli, tracked_repo)
    assert analysis["metrics"] == {"total": 12.0, "n": 3}
    return tracked_repo, analysis


def check_rerun(repo: Path, run_cli, analysis: dict) -> None:
    proc = gittrack(repo, "rerun", analysis["id"][:8], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].endswith(f"of {analysis['id'][:8]}: completed")
    reruns = [r for r in ls(run_cli, repo) if r.get("rerun_of") == analysis["id"]]
    assert len(reruns) == 1 and reruns[0]["metrics"] == {"total": 12.0, "n": 3}
    assert {i["run"] for i in show(run_cli, repo, reruns[0]["id"])["inputs"]} == {
        i["run"] for i in analysis["inputs"]
    }


def test_rerun_of_an_analysis_taking_several_runs(analysed, run_cli) -> None:
    repo, analysis = analysed
    check_rerun(repo, run_cli, analysis)


def test_rerun_of_a_query_analysis_uses_the_runs_it_had(tracked_repo: Path, run_cli) -> None:
    write_script(tracked_repo, "count.py", QUERY_ANALYSE)
    for temp in ("1", "2"):
        run_python(tracked_repo, "sim.py", "--temp", temp)
    run_python(tracked_repo, "count.py", "--sims", "params.temp > 0")
    analysis = show(run_cli, tracked_repo)
    assert analysis["metrics"] == {"n": 2}
    run_python(tracked_repo, "sim.py", "--temp", "3")  # the query would match 3 runs now
    proc = gittrack(tracked_repo, "rerun", analysis["id"][:8], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "  metric n: identical" in proc.stdout.splitlines(), proc.stdout


@pytest.mark.slow
def test_rerun_of_an_analysis_from_a_second_clone(analysed, run_cli, tmp_path: Path) -> None:
    repo, analysis = analysed
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    gittrack(repo, "push")
    bob = tmp_path / "bob"
    git(tmp_path, "clone", "-q", str(remote), str(bob))
    gittrack(bob, "pull")
    check_rerun(bob, run_cli, analysis)


# -- 8. names --------------------------------------------------------------------------------------


def test_a_name_used_again_warns_and_resolves_to_the_newest(tracked_repo: Path, run_cli) -> None:
    failed = gittrack(tracked_repo, "run", "--name", "fss", "sim.py", "--temp", "-1", check=False)
    assert failed.returncode == 1
    first = show(run_cli, tracked_repo)
    assert first["status"] == "failed" and first["name"] == "fss"
    assert "already" not in failed.stderr
    second = gittrack(tracked_repo, "run", "--name", "fss", "sim.py", "--temp", "1")
    warned = [line for line in second.stderr.splitlines() if "already" in line]
    assert len(warned) == 1 and "fss" in warned[0], second.stderr
    newest = show(run_cli, tracked_repo)
    assert newest["id"] != first["id"] and newest["status"] == "completed"

    shown = run_cli(tracked_repo, "show", "fss")
    assert shown.exit_code == 0, shown.output
    assert f"run {newest['id']}" in shown.output
    assert re.search(r"newest", shown.output, re.IGNORECASE), shown.output
    assert show(run_cli, tracked_repo, "fss")["id"] == newest["id"]
    named = ls(run_cli, tracked_repo, "name = 'fss'")
    assert {r["id"] for r in named} == {first["id"], newest["id"]}
    # checkout and the web UI take the newest too
    assert run_cli(tracked_repo, "checkout", "fss").exit_code == 0
    client = TestClient(create_app(tracked_repo, port=8765), base_url="http://127.0.0.1:8765")
    page = client.get("/runs/fss")
    assert page.status_code == 200 and newest["id"][:8] in page.text


# -- 9. diff --no-code -----------------------------------------------------------------------------


def test_diff_without_code_says_the_code_differs(tracked_repo: Path, run_cli) -> None:
    run_python(tracked_repo, "sim.py", "--temp", "1")
    a = show(run_cli, tracked_repo)
    sim = tracked_repo / "sim.py"
    sim.write_text(sim.read_text().replace("temp * 2.0", "temp * 3.0"))
    git(tracked_repo, "commit", "-qam", "change physics")
    run_python(tracked_repo, "sim.py", "--temp", "1")
    b = show(run_cli, tracked_repo)
    assert a["code"]["commit"] != b["code"]["commit"]
    result = run_cli(tracked_repo, "diff", a["id"][:8], b["id"][:8], "--no-code")
    assert result.exit_code == 0, result.output
    assert "(same files)" not in result.output
    assert re.search(r"code.*differ", result.output), result.output
    assert re.search(r"git diff|gittrack diff", result.output), result.output
    assert "temp * 3.0" not in result.output  # --no-code: the diff itself is left out


# -- 10. rerun verdicts per output -----------------------------------------------------------------

NATIVE = """\
import time

import click
import gittrack
import numpy as np
import pandas as pd


@gittrack.command()
def main():
    out = gittrack.output_dir()
    payload = np.linspace(0.0, 1.0, 1000)
    header = f"TRAJ created {time.time_ns()}".encode().ljust(512, b" ")
    (out / "traj.dcd").write_bytes(header + payload.tobytes())  # a date in the header only
    frame = pd.DataFrame({"t": payload, "e": payload * 2})
    frame.attrs["created"] = time.time_ns()  # kept in the parquet metadata, not in the values
    jitter = (time.time_ns() // 1_000_000) * 1e-15  # ~1e-15 more per ms later
    return {
        "exact": payload,  # the same bytes every time
        "noisy": payload + jitter,  # floats that differ a little
        "traj": str(out / "traj.dcd"),
        "frame": frame,
    }


if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
def test_rerun_reports_identical_bytes_identical_values_or_where_it_differs(
    tracked_repo: Path, run_cli
) -> None:
    write_script(tracked_repo, "native.py", NATIVE)
    run_python(tracked_repo, "native.py")
    original = show(run_cli, tracked_repo)
    assert set(original["outputs"]) == {"exact", "noisy", "traj", "frame"}
    proc = gittrack(tracked_repo, "rerun", original["id"][:8], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdicts = dict(re.findall(r"^  output (\w+): (.*)$", proc.stdout, re.MULTILINE))
    assert set(verdicts) == {"exact", "noisy", "traj", "frame"}, proc.stdout
    assert re.match(r"identical bytes\b", verdicts["exact"]), verdicts
    assert re.match(r"identical values\b", verdicts["frame"]), verdicts
    assert re.match(r"differs\b.*\b\d+ bytes? differs?\b.*\bfirst 512 bytes", verdicts["traj"]), (
        verdicts
    )
    assert re.match(r"differs\b.*\blargest (absolute )?difference\b", verdicts["noisy"]), verdicts


def test_where_bytes_differ_is_said_in_blocks(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    data = bytes(range(256)) * 40
    a.write_bytes(data)
    b.write_bytes(data[:3000] + b"\xff\xff" + data[3002:] + b"tail")
    assert bytes_differ(a, b) == (
        "2 bytes differ, all within bytes 2560 to 3072 (of 10240); "
        "the sizes differ (10240 -> 10244 bytes)"
    )
    b.write_bytes(b"X" + data[1:])
    assert bytes_differ(a, b) == "1 byte differs, all within the first 512 bytes (of 10240)"


def test_arrays_compare_by_value_with_nan_and_the_largest_difference() -> None:
    a = np.array([1.0, np.nan, 3.0])
    assert str(_arrays(a, a.copy())) == "identical values"
    assert str(_arrays(a, a.astype(np.float32))) == (
        "identical values (the types differ (float64 -> float32))"
    )
    assert str(_arrays(a, a + np.array([0.0, 0.0, 1e-9]))) == (
        "differs: 1 of 3 values differ, largest absolute difference 1e-09"
    )
    assert str(_arrays(a, a[:2])) == "differs: the shapes differ ((3,) -> (2,))"
