"""Code identity is what the run executed, and snapshots never swallow data (issue 11, 1-2).

`[code.files]` in run.toml (`code.files` in `show --json`) is `{path: {"blob": <git blob id>,
"dirty": <differs from HEAD>}}` for every source file of the repository the run executed, paths
relative to the repository root, POSIX style. A file left out of a code snapshot is named on one
line of the run's stderr.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import SIM, branch_log, git, run_python, write_script
from trust_support import gittrack, ls, show

# -- helpers ------------------------------------------------------------------------------------


def reused_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if " reused " in line]
    assert len(lines) == 1, f"expected the run to be reused, stderr was:\n{stderr}"
    return lines[0]


def git_size(repo: Path) -> int:
    """Bytes under .git, without gittrack's local state (index database, caches)."""
    total = 0
    for path in (repo / ".git").rglob("*"):
        if path.is_file() and "gittrack" not in path.relative_to(repo / ".git").parts[:1]:
            total += path.stat().st_size
    return total


def blob(repo: Path, rev_path: str) -> str:
    return git(repo, "rev-parse", rev_path)


# -- 1. code identity is what the run executed ---------------------------------------------------

MODEL = """\
import click
import gittrack
from model.physics import energy


@gittrack.command()
@click.option("--temp", type=float, default=1.0)
def main(temp):
    from model import units  # imported during the run, not at load time

    return {"energy": energy(temp) * units.SCALE}


if __name__ == "__main__":
    main()
"""

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)


@pytest.fixture
def model_repo(tracked_repo: Path) -> Path:
    """A simulation importing helper modules of a package in the repository."""
    (tracked_repo / "model").mkdir()
    (tracked_repo / "model" / "__init__.py").write_text("")
    (tracked_repo / "model" / "physics.py").write_text("def energy(t):\n    return t * 2.0\n")
    (tracked_repo / "model" / "units.py").write_text("SCALE = 1.0\n")
    (tracked_repo / "run_model.py").write_text(MODEL)
    git(tracked_repo, "add", "model", "run_model.py")
    git(tracked_repo, "commit", "-qm", "add model")
    return tracked_repo


CODE_FILES = {"run_model.py", "model/__init__.py", "model/physics.py", "model/units.py"}


def test_run_toml_lists_the_code_files_it_executed_with_blob_ids(model_repo: Path, run_cli) -> None:
    run_python(model_repo, "run_model.py", "--temp", "1")
    code = show(run_cli, model_repo)["code"]
    assert "files" in code, f"no code.files in the record: {code}"
    files = code["files"]
    # the script and every module imported from the repo; not sim.py, which it never imported
    assert set(files) == CODE_FILES
    for path, entry in files.items():
        assert entry["blob"] == blob(model_repo, f"HEAD:{path}"), path
        assert entry["dirty"] is False, path
    assert code["dirty"] is False
    shown = run_cli(model_repo, "show", "latest").output.splitlines()
    physics = blob(model_repo, "HEAD:model/physics.py")[:10]
    assert f"    {physics}  model/physics.py" in shown


def test_unrelated_commits_and_untracked_files_keep_reuse(model_repo: Path, run_cli) -> None:
    first = run_python(model_repo, "run_model.py", "--temp", "1")
    assert "recorded (completed" in first.stderr
    run_id = show(run_cli, model_repo)["id"]
    runs_before = len(branch_log(model_repo))

    write_script(model_repo, "README.md", "# Notes\n\nHow to run the model.\n")  # committed
    again = run_python(model_repo, "run_model.py", "--temp", "1")
    assert reused_line(again.stderr).startswith(f"run {run_id[:8]} reused")

    sim = model_repo / "sim.py"  # a tracked script this run never imports
    sim.write_text(SIM.replace("temp * 2.0", "temp * 5.0"))
    git(model_repo, "commit", "-qam", "fix another script")
    (model_repo / "plot.png").write_bytes(PNG)
    (model_repo / "report.html").write_text("<html>report</html>\n")
    wrote = run_cli(model_repo, "lineage", run_id, "-o", "flow.svg")
    assert wrote.exit_code == 0, wrote.output
    assert (model_repo / "flow.svg").exists()
    assert git(model_repo, "status", "--porcelain", "--untracked-files=all").splitlines() == [
        "?? flow.svg",
        "?? plot.png",
        "?? report.html",
    ]
    third = run_python(model_repo, "run_model.py", "--temp", "1")
    assert reused_line(third.stderr) == (
        f"run {run_id[:8]} reused (same code, params and inputs; GITTRACK_FORCE=1 records anew)"
    )  # the script itself has no --force: the hint names what works when it runs directly
    assert len(branch_log(model_repo)) == runs_before

    forced = run_python(model_repo, "run_model.py", "--temp", "1", env={"GITTRACK_FORCE": "1"})
    assert "recorded (completed" in forced.stderr
    code = show(run_cli, model_repo)["code"]
    assert code["dirty"] is False  # untracked plots are no code of the run
    assert code["commit"] == git(model_repo, "rev-parse", "HEAD")


def test_editing_an_imported_helper_makes_a_new_dirty_run(model_repo: Path, run_cli) -> None:
    run_python(model_repo, "run_model.py", "--temp", "1")
    original = show(run_cli, model_repo)
    physics = model_repo / "model" / "physics.py"
    physics.write_text("def energy(t):\n    return t * 3.25\n")  # not committed
    edited = run_python(model_repo, "run_model.py", "--temp", "1")
    assert "recorded (completed" in edited.stderr, edited.stderr
    new = show(run_cli, model_repo)
    assert new["id"] != original["id"] and new["metrics"]["energy"] == 3.25
    code = new["code"]
    assert code["dirty"] is True
    assert "files" in code, f"no code.files in the record: {code}"
    assert code["files"]["model/physics.py"]["dirty"] is True
    assert code["files"]["model/physics.py"]["blob"] == git(
        model_repo, "hash-object", "model/physics.py"
    )
    assert code["files"]["run_model.py"]["dirty"] is False
    # committing the edit changes no code file of that run: it is reused
    git(model_repo, "commit", "-qam", "steeper energy")
    after = run_python(model_repo, "run_model.py", "--temp", "1")
    assert reused_line(after.stderr).startswith(f"run {new['id'][:8]} reused")


def test_an_edit_in_the_second_of_the_commit_is_seen(model_repo: Path, run_cli) -> None:
    """Code identity comes from the files' content, not from stat data git may trust.

    Git compares mtimes in whole seconds; an index copied with a fresh mtime makes it believe
    a same-size file changed within the second of its commit is unchanged ("racy git").
    """
    time.sleep(1.05 - time.time() % 1)  # just after a second starts: commit and edit share it
    physics = model_repo / "model" / "physics.py"
    physics.write_text("def energy(t):\n    return t * 4.0\n")
    git(model_repo, "commit", "-qam", "energy x4")
    physics.write_text("def energy(t):\n    return t * 5.0\n")  # same size, same second
    time.sleep(1.05 - time.time() % 1)  # the run starts in a later second
    proc = run_python(
        model_repo, "run_model.py", "--temp", "1", env={"PYTHONDONTWRITEBYTECODE": "1"}
    )
    assert "recorded (completed" in proc.stderr
    data = show(run_cli, model_repo)
    assert data["metrics"]["energy"] == 5.0  # what ran
    assert data["code"]["dirty"] is True, data["code"]
    assert "t * 5.0" in git(model_repo, "show", f"{data['code']['commit']}:model/physics.py")


@pytest.mark.slow
def test_a_sweep_after_an_unrelated_commit_reuses_every_run(model_repo: Path, run_cli) -> None:
    first = gittrack(
        model_repo, "sweep", "run_model.py", "--temp", "1,2,3", "--name", "one", "--json"
    )
    assert json.loads(first.stdout)["counts"] == {"completed": 3}
    write_script(model_repo, "README.md", "# Notes\n")
    (model_repo / "plot.png").write_bytes(PNG)
    second = gittrack(
        model_repo, "sweep", "run_model.py", "--temp", "1,2,3", "--name", "two", "--json"
    )
    assert json.loads(second.stdout)["counts"] == {"reused": 3}
    assert len(ls(run_cli, model_repo, "params.temp = 1")) == 1  # an analysis sees no copies
    for row in ls(run_cli, model_repo):
        # one worker ran all three: modules imported by an earlier run count for later ones
        files = show(run_cli, model_repo, row["id"])["code"].get("files", {})
        assert set(files) == CODE_FILES, row["id"]


# -- 2. snapshots never swallow data -------------------------------------------------------------

USES_HELPER = """\
import click
import gittrack
import analysis_helpers  # a new module, not committed yet


@gittrack.command()
@click.option("--temp", type=float, default=1.0)
def main(temp):
    return {"energy": analysis_helpers.double(temp)}


if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
def test_a_dirty_snapshot_holds_code_but_no_data(tracked_repo: Path, run_cli) -> None:
    repo = tracked_repo
    (repo / "data").mkdir()
    table = repo / "data" / "table.bin"
    table.write_bytes(os.urandom(2 << 20))  # a tracked data file over the 1 MiB limit
    write_script(repo, "run_helper.py", USES_HELPER, commit=False)
    git(repo, "add", "run_helper.py", "data/table.bin")
    git(repo, "commit", "-qm", "add a script and its table")
    before = git_size(repo)

    (repo / "analysis_helpers.py").write_text("def double(t):\n    return 2 * t\n")  # untracked
    with (repo / "big.bin").open("wb") as fh:  # untracked data; random, so git cannot shrink it
        for _ in range(50):
            fh.write(os.urandom(1 << 20))
    (repo / "dump").mkdir()  # what an engine leaves in the repo
    (repo / "dump" / "step0.txt").write_text("ITEM: TIMESTEP\n0\n")
    (repo / "plot.png").write_bytes(PNG)
    with table.open("ab") as fh:  # a change to the tracked data file
        fh.write(os.urandom(1 << 20))

    proc = run_python(repo, "run_helper.py", "--temp", "2")
    assert "recorded (completed" in proc.stderr
    grown = git_size(repo) - before
    assert grown < 1 << 20, f".git grew by {grown} bytes"
    code = show(run_cli, repo)["code"]
    assert code["dirty"] is True
    snapshot = git(repo, "ls-tree", "-r", "--name-only", code["commit"]).splitlines()
    assert "analysis_helpers.py" in snapshot  # untracked code the run imported
    for data in ("big.bin", "dump/step0.txt", "plot.png"):
        assert data not in snapshot, data
    in_snapshot = git(repo, "ls-tree", code["commit"], "data/table.bin").split()
    assert not in_snapshot or in_snapshot[2] == blob(repo, "HEAD:data/table.bin")
    told = [line for line in proc.stderr.splitlines() if "data/table.bin" in line]
    assert len(told) == 1, (
        f"the run should say once that it left data/table.bin out:\n{proc.stderr}"
    )
    assert len([line for line in proc.stderr.splitlines() if "big.bin" in line]) <= 1
    assert code.get("files", {}).get("analysis_helpers.py", {}).get("dirty") is True


# -- declared code, the size limit, old records -------------------------------------------------

DECLARED = """\
import click
import gittrack


@gittrack.command(code=["conf/*.yaml"])
@click.option("--temp", type=float, default=1.0)
def main(temp):
    return {"energy": temp}


if __name__ == "__main__":
    main()
"""


def test_declared_files_are_code_of_the_run(tracked_repo: Path, run_cli) -> None:
    repo = tracked_repo
    (repo / "conf").mkdir()
    (repo / "conf" / "melt.yaml").write_text("steps: 10\n")
    (repo / "model").mkdir()
    (repo / "model" / "table.txt").write_text("1 2 3\n")
    (repo / "pyproject.toml").write_text('[tool.gittrack]\ncode = ["model/*.txt"]\n')
    write_script(repo, "declared.py", DECLARED, commit=False)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "declared code")
    first = run_python(repo, "declared.py")
    assert "recorded (completed" in first.stderr
    files = show(run_cli, repo)["code"]["files"]
    assert set(files) == {"declared.py", "conf/melt.yaml", "model/table.txt"}
    assert files["conf/melt.yaml"]["blob"] == blob(repo, "HEAD:conf/melt.yaml")

    (repo / "pyproject.toml").write_text('[tool.gittrack]\ncode = ["model/*.txt"]\n# tidy\n')
    assert " reused " in run_python(repo, "declared.py").stderr  # pyproject is no code itself
    (repo / "conf" / "melt.yaml").write_text("steps: 20\n")
    edited = run_python(repo, "declared.py")
    assert "recorded (completed" in edited.stderr
    assert show(run_cli, repo)["code"]["files"]["conf/melt.yaml"]["dirty"] is True
    (repo / "conf" / "new.yaml").write_text("extra: 1\n")  # a new declared file: new code
    assert "recorded (completed" in run_python(repo, "declared.py").stderr
    assert "conf/new.yaml" in show(run_cli, repo)["code"]["files"]


def test_the_size_limit_is_configurable(tracked_repo: Path, run_cli) -> None:
    repo = tracked_repo
    write_script(repo, "run_helper.py", USES_HELPER)
    (repo / "analysis_helpers.py").write_text("def double(t):\n    return 2 * t\n")  # untracked
    small = run_python(repo, "run_helper.py", env={"GITTRACK_SNAPSHOT_MAX_BYTES": "10"})
    told = [line for line in small.stderr.splitlines() if "analysis_helpers.py" in line]
    assert len(told) == 1 and "GITTRACK_SNAPSHOT_MAX_BYTES" in told[0], small.stderr
    code = show(run_cli, repo)["code"]
    assert code["dirty"] is True and code["omitted"] == ["analysis_helpers.py"]
    assert code["commit"] == git(repo, "rev-parse", "HEAD")  # nothing else changed
    bad = run_python(
        repo,
        "run_helper.py",
        "--temp",
        "3",
        check=False,
        env={"GITTRACK_SNAPSHOT_MAX_BYTES": "lots"},
    )
    assert bad.returncode != 0
    assert "GITTRACK_SNAPSHOT_MAX_BYTES must be a number of bytes" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_schema_1_record_is_read_and_never_reused(tracked_repo: Path, run_cli) -> None:
    import tomllib

    import tomli_w

    from gittrack import store
    from gittrack.model.record import RunRecord, run_folder

    run_python(tracked_repo, "sim.py", "--temp", "4")
    data = show(run_cli, tracked_repo)
    text = git(tracked_repo, "show", f"gittrack/runs:{run_folder(data['id'])}/run.toml")
    old = tomllib.loads(text)
    assert old["schema"] == 2 and "sim.py" in old["code"]["files"]
    old["schema"] = 1  # as gittrack wrote it before code files were recorded
    del old["code"]["files"]
    record = RunRecord.from_toml(tomli_w.dumps(old), data["id"])
    assert record.code.files == {} and record.code.commit == data["code"]["commit"]
    assert record.memo == ""  # a schema 1 key hashed the whole tree: meaningless now
    assert record.metrics == {"energy": 8.0, "steps_done": 10}
    store.write_run(store.find_repo(tracked_repo), record, {})
    assert show(run_cli, tracked_repo, data["id"])["status"] == "completed"
    again = run_python(tracked_repo, "sim.py", "--temp", "4")
    assert "recorded (completed" in again.stderr  # what it executed is unknown: not reused


def test_a_snapshot_keeps_tracked_changes_and_deletions(tracked_repo: Path, run_cli) -> None:
    repo = tracked_repo
    write_script(repo, "old_notes.txt", "to be deleted\n")
    write_script(repo, "params.cfg", "steps = 10\n")
    (repo / "old_notes.txt").unlink()
    (repo / "params.cfg").write_text("steps = 20\n")  # a tracked change, though not code
    (repo / "sim.py").write_text(SIM.replace("temp * 2.0", "temp * 3.0"))
    run_python(repo, "sim.py", "--temp", "1")
    code = show(run_cli, repo)["code"]
    assert code["dirty"] is True and code["files"]["sim.py"]["dirty"] is True
    snapshot = git(repo, "ls-tree", "-r", "--name-only", code["commit"]).splitlines()
    assert sorted(snapshot) == ["params.cfg", "sim.py"]
    assert git(repo, "show", f"{code['commit']}:params.cfg") == "steps = 20"
    status = git(repo, "status", "--porcelain").splitlines()  # the user's state is untouched
    assert [line.strip() for line in status] == ["D old_notes.txt", "M params.cfg", "M sim.py"]


def test_a_driver_script_is_no_code_of_the_runs_it_starts(tracked_repo: Path, run_cli) -> None:
    drive = """\
import gittrack

exp = gittrack.Experiment("fine")
exp.run("sim.py", temp=2.0)
"""
    write_script(tracked_repo, "drive.py", drive)
    run_python(tracked_repo, "drive.py")
    assert set(show(run_cli, tracked_repo)["code"]["files"]) == {"sim.py"}
    (tracked_repo / "drive.py").write_text(drive + "# another run would follow\n")
    assert " reused " in run_python(tracked_repo, "drive.py").stderr


# -- the files a run read through its Path/File params --------------------------------------

CONFIGURED = """\
import click
import gittrack


@gittrack.command()
@click.option("--config", type=click.Path(exists=True, dir_okay=False))
@click.option("--mesh", type=click.File("rb"))
def main(config, mesh):
    k = float(open(config).read().split("=")[1])
    return {"energy": k * len(mesh.read())}


if __name__ == "__main__":
    main()
"""


def test_a_run_records_the_content_of_the_files_its_params_named(
    tracked_repo: Path, tmp_path: Path, run_cli
) -> None:
    """The config in the repository is not code: an uncommitted edit of it must still be on
    record, and so must a file outside the repository (a shared mesh)."""
    write_script(tracked_repo, "configured.py", CONFIGURED)
    (tracked_repo / "run.cfg").write_text("k=1\n")
    git(tracked_repo, "add", "run.cfg")
    git(tracked_repo, "commit", "-qm", "config")
    mesh = tmp_path / "shared" / "mesh.bin"
    mesh.parent.mkdir()
    mesh.write_bytes(b"\x00" * 10)
    args = ("configured.py", "--config", "run.cfg", "--mesh", str(mesh))
    run_python(tracked_repo, *args)
    first = show(run_cli, tracked_repo)
    assert first["input_files"] == {
        "run.cfg": md5_of(tracked_repo / "run.cfg"),
        str(mesh): md5_of(mesh),
    }
    (tracked_repo / "run.cfg").write_text("k=2\n")  # edited, not committed
    run_python(tracked_repo, *args)
    second = show(run_cli, tracked_repo)
    assert second["metrics"]["energy"] == 20.0 and second["id"] != first["id"]
    assert second["input_files"]["run.cfg"] == md5_of(tracked_repo / "run.cfg")
    assert second["input_files"]["run.cfg"] != first["input_files"]["run.cfg"]
    shown = run_cli(tracked_repo, "show", "latest").output.splitlines()
    assert f"  {md5_of(mesh)[:10]}  {mesh}" in shown
    diff = run_cli(tracked_repo, "diff", first["id"][:8], second["id"][:8])
    assert "run.cfg" in diff.output, diff.output


def md5_of(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()
