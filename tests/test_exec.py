"""`gittrack exec`, `sweep --exec` and `gittrack.shell`: a real compiled engine (LAMMPS) as runs."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import git, write_script
from starlette.testclient import TestClient

import gittrack
from gittrack import store
from gittrack.model.record import run_folder
from gittrack.ui import create_app

LMP = shutil.which("lmp")
if LMP is None:
    raise RuntimeError("These tests need LAMMPS (`lmp`): run `make test`, which installs it.")

DECK = (Path(__file__).parent / "engine" / "in.melt").read_text()
FINAL = r"^final step (?P<step>\d+) temp (?P<temp>\S+) pe (?P<pe>\S+) etotal (?P<etotal>\S+)$"
MELT = ["lmp", "-in", "in.melt", "-var", "T", "{temp}", "-var", "N", "{steps}"]


@pytest.fixture
def engine_repo(tracked_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tracked repository holding the melt deck; MPI told to start quickly."""
    monkeypatch.setenv("OMPI_MCA_pml", "ob1")
    monkeypatch.setenv("OMPI_MCA_btl", "self")
    (tracked_repo / "in.melt").write_text(DECK)
    git(tracked_repo, "add", "in.melt")
    git(tracked_repo, "commit", "-qm", "melt deck")
    return tracked_repo


def record_of(repo: Path, ref: str = "latest") -> dict:
    run = gittrack.Run(ref, repo)
    data = store.read_record_bytes(store.find_repo(repo), run.id)
    assert data is not None
    return tomllib.loads(data.decode())


def test_exec_records_the_engine_run_params_outputs_and_identity(
    engine_repo: Path, run_cli
) -> None:
    result = run_cli(
        engine_repo,
        "exec",
        "-p",
        "temp=1.5",
        "-p",
        "steps=100",
        "-p",
        "label:str=100",
        "-o",
        "dump.*",
        "--metrics-from",
        f"log.lammps:{FINAL}",
        "--",
        *MELT,
    )
    assert result.exit_code == 0, result.output
    rec = record_of(engine_repo)
    line = result.stderr.strip().splitlines()[-1]
    assert line == (
        f"run {rec['id'][:8]} recorded (completed in {rec['duration_s']:.1f} s): "
        "lmp -in in.melt -var T 1.5 -var N 100"
    )
    assert rec["params"] == {"temp": 1.5, "steps": 100, "label": "100"}  # typed; forced str
    assert rec["command"] == "lmp" and rec["argv"][-1] == "100"
    assert rec["exit_code"] == 0 and rec["status"] == "completed"
    # only what matches -o is an output; the engine's output is in the run's log
    assert sorted(rec["outputs"]) == ["dump"]
    assert rec["outputs"]["dump"]["path"] == "dump.melt"
    stdout = store.read_file(store.find_repo(engine_repo), f"{_folder(rec)}/stdout.log")
    assert stdout is not None and b"final step 100" in stdout
    assert rec["metrics"]["step"] == 100
    assert rec["metrics"]["etotal"] < 0
    (program,) = rec["programs"]
    assert program["path"] == LMP
    assert program["sha256"] == hashlib.sha256(Path(LMP).read_bytes()).hexdigest()
    assert program["package"] == "deb:lammps"
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "lammps"], capture_output=True, text=True
    ).stdout
    assert program["package_version"] == version
    assert "29 Sep 2021" in program["version"]
    # the deck the command read from the repository is code of the run
    deck_sha = hashlib.sha256((engine_repo / "in.melt").read_bytes()).hexdigest()
    assert rec["exec"]["files"] == {"in.melt": deck_sha}
    assert "in.melt" in rec["code"]["files"]
    show = run_cli(engine_repo, "show", "latest")
    assert "package_version: " + version in show.output
    client = TestClient(create_app(engine_repo, port=8765), base_url="http://127.0.0.1:8765")
    page = client.get(f"/runs/{rec['id']}").text
    assert 'id="programs"' in page
    assert "lmp -in in.melt -var T 1.5 -var N 100" in page and version in page


def _folder(rec: dict) -> str:
    return f"{run_folder(rec['id'])}"


def test_same_engine_build_params_and_inputs_reuse_a_rebuilt_engine_does_not(
    engine_repo: Path, run_cli, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    engine = bin_dir / "engine"
    engine.write_text("#!/bin/sh\necho built-1 > out.txt\n")
    engine.chmod(0o755)
    args = ["exec", "-p", "n=1", "--", str(engine), "{n}"]
    first = run_cli(engine_repo, *args)
    assert first.exit_code == 0, first.output
    again = run_cli(engine_repo, *args)
    first_id = gittrack.Run("latest", engine_repo).short
    assert f"run {first_id} reused" in again.stderr
    engine.write_text("#!/bin/sh\necho built-2 > out.txt\n")  # a new build of the engine
    rebuilt = run_cli(engine_repo, *args)
    assert "recorded (completed" in rebuilt.stderr
    assert gittrack.Run("latest", engine_repo).short != first_id
    assert len(gittrack.runs(repo=engine_repo)) == 2


def test_sweep_exec_then_tracked_analysis_lineage_and_dvc_pull(
    engine_repo: Path, run_cli, tmp_path: Path
) -> None:
    result = run_cli(
        engine_repo,
        "sweep",
        "--exec",
        "--name",
        "melt-scan",
        "-p",
        "temp=1.0,1.5",
        "-p",
        "steps=50",
        "-o",
        "dump.*",
        "-o",
        "log.lammps",
        "-j",
        "2",
        "--",
        *MELT,
    )
    assert result.exit_code == 0, result.output
    assert "experiment melt-scan: 2 runs (2 completed)" in result.output
    runs = gittrack.runs(where="experiment = 'melt-scan'", repo=engine_repo)
    assert sorted(r.params["temp"] for r in runs) == [1.0, 1.5]
    assert all(sorted(r.outputs) == ["dump", "log"] for r in runs)
    write_script(
        engine_repo,
        "analyse.py",
        """\
        import click
        import gittrack


        @gittrack.command()
        @click.option("--sims", type=gittrack.RunRef(multiple=True))
        def main(sims):
            counts = {}
            for sim in sims:
                text = sim.path("dump").read_text()
                counts[f"frames_T{sim.params['temp']}"] = text.count("ITEM: TIMESTEP")
            return counts
        """,
    )
    analysis = run_cli(engine_repo, "run", "analyse.py", "--sims", "experiment = 'melt-scan'")
    assert analysis.exit_code == 0, analysis.output
    rec = record_of(engine_repo)
    assert rec["metrics"] == {"frames_T1.0": 2, "frames_T1.5": 2}
    assert sorted((i["run"], i["output"]) for i in rec["inputs"]) == sorted(
        (r.id, "dump") for r in runs
    )
    dot = run_cli(engine_repo, "lineage", "latest", "--format", "dot")
    assert dot.exit_code == 0
    for run in runs:
        assert f'"{run.id}" -> ' in dot.output
    assert dot.output.count("\\nlmp\\nlammps ") == 2  # engine and its version on each node
    svg = tmp_path / "flow.svg"
    drawn = run_cli(engine_repo, "lineage", "latest", "-o", str(svg))
    assert drawn.exit_code == 0 and svg.read_text().lstrip().startswith(("<?xml", "<svg"))
    # a checkout of the engine run's commit restores its files with the real dvc pull
    first = next(iter(runs))
    wt = tmp_path / "checkout"
    git(engine_repo, "worktree", "add", "--detach", str(wt), first.commit)
    dvc = Path(sys.executable).parent / "dvc"
    proc = subprocess.run([str(dvc), "pull"], cwd=wt, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = wt / run_folder(first.id)
    original = engine_repo / ".gittrack" / "outputs" / first.id
    for name in ("dump.melt", "log.lammps"):
        assert (folder / name).read_bytes() == (original / name).read_bytes()
    assert "final step 50" in (folder / "log.lammps").read_text()


def test_shell_script_exec_with_an_input_from_a_run(engine_repo: Path, run_cli) -> None:
    made = run_cli(engine_repo, "exec", "-p", "temp=1.2", "-p", "steps=0", "--", *MELT)
    assert made.exit_code == 0, made.output
    sim = gittrack.Run("latest", engine_repo)
    assert sorted(sim.outputs) == ["dump", "log"]  # everything the engine wrote, by default
    write_script(
        engine_repo,
        "count.sh",
        """\
        #!/bin/sh
        grep -c "ITEM: TIMESTEP" "$1" > frames.txt
        echo "atoms $(sed -n 4p "$1")"
        """,
    )
    (engine_repo / "count.sh").chmod(0o755)
    git(engine_repo, "add", "count.sh")
    git(engine_repo, "commit", "-qm", "count frames")
    result = run_cli(
        engine_repo,
        "exec",
        "-i",
        f"sim={sim.short}:dump",
        "--metrics-from",
        r"stdout:^atoms (?P<atoms>\d+)$",
        "--",
        "./count.sh",
        "{sim}",
    )
    assert result.exit_code == 0, result.output
    rec = record_of(engine_repo)
    assert rec["inputs"] == [
        {"run": sim.id, "commit": sim.commit, "output": "dump", "md5": sim.outputs["dump"].md5}
    ]
    assert rec["metrics"] == {"atoms": 256}
    assert sorted(rec["outputs"]) == ["frames"]  # the linked input is no output of its own
    out = engine_repo / ".gittrack" / "outputs" / rec["id"]
    assert (out / "frames.txt").read_text().strip() == "1"
    assert (out / ".inputs" / "sim" / "dump.melt").resolve().read_bytes() == (
        engine_repo / ".gittrack" / "outputs" / sim.id / "dump.melt"
    ).read_bytes()
    assert rec["code"]["script"] == "count.sh"  # a program in the repository is code
    assert "count.sh" in rec["code"]["files"]
    assert rec["programs"][0]["path"] == "count.sh" and "version" not in rec["programs"][0]
    assert rec["command"] == "./count.sh" and rec["argv"] == ["{sim}"]
    downstream = run_cli(engine_repo, "lineage", sim.short, "--downstream", "--json")
    assert rec["id"] in downstream.output


def test_a_failing_engine_is_recorded_failed_with_the_tail_of_its_log(
    engine_repo: Path, run_cli
) -> None:
    (engine_repo / "bad.in").write_text("units lj\nno_such_command 1 2\n")
    result = run_cli(engine_repo, "exec", "--", "lmp", "-in", "bad.in")
    assert result.exit_code == 1
    rec = record_of(engine_repo)
    assert rec["status"] == "failed" and rec["exit_code"] == 1
    assert rec["error"]["type"] == "ProgramFailed"
    assert rec["error"]["message"].startswith("lmp exited with code 1; the end of its output:\n")
    assert "ERROR: Unknown command: no_such_command" in rec["error"]["message"]
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: lmp exited with code 1; run {rec['id'][:8]} is recorded as failed "
        f"('gittrack show {rec['id'][:8]}' has the end of its output)."
    )
    assert rec["outputs"]["log"]["path"] == "log.lammps"  # what it wrote is kept for a look
    # what the user reads is the engine's end, not the Python frames of gittrack running it
    assert "traceback" not in rec["error"]
    shown = run_cli(engine_repo, "show", rec["id"][:8]).output
    error = shown.split("\nerror:\n", 1)[1]
    assert error.startswith("  lmp exited with code 1; the end of its output:\n"), shown
    assert "Traceback" not in shown and "ERROR: Unknown command: no_such_command" in error
    from starlette.testclient import TestClient

    from gittrack.ui import create_app

    page = TestClient(create_app(engine_repo, port=8765), base_url="http://127.0.0.1:8765").get(
        f"/runs/{rec['id']}"
    )
    assert "<summary>ProgramFailed: lmp exited with code 1; the end of its output:</summary>" in (
        page.text
    )
    assert "ERROR: Unknown command: no_such_command" in page.text.split("<summary>Prog", 1)[1]


def test_rerun_of_an_exec_run_uses_its_recorded_deck(engine_repo: Path, run_cli) -> None:
    made = run_cli(engine_repo, "exec", "-p", "temp=1.5", "-p", "steps=20", "--", *MELT)
    assert made.exit_code == 0, made.output
    original = gittrack.Run("latest", engine_repo)
    (engine_repo / "in.melt").write_text(DECK.replace("run", "run_changed"))  # breaks the deck
    rerun = run_cli(engine_repo, "rerun", original.short)
    assert rerun.exit_code == 0, rerun.output
    assert "output dump: identical" in rerun.output
    new = gittrack.Run("latest", engine_repo)
    assert new.record.rerun_of == original.id
    assert new.params == original.params


def test_shell_inside_a_click_command(engine_repo: Path, run_cli) -> None:
    write_script(
        engine_repo,
        "drive.py",
        """\
        from pathlib import Path

        import click
        import gittrack


        @gittrack.command()
        @click.option("--temp", type=float, default=1.5)
        def main(temp):
            deck = Path(__file__).parent / "in.melt"
            gittrack.shell(
                ["lmp", "-in", deck, "-var", "T", str(temp), "-var", "N", "10"],
                outputs=["dump.*"],
            )
            log = (gittrack.output_dir() / "log.lammps").read_text()
            return {"finished": "final step 10" in log}
        """,
    )
    result = run_cli(engine_repo, "run", "drive.py", "--temp", "1.2")
    assert result.exit_code == 0, result.output
    rec = record_of(engine_repo)
    assert rec["metrics"] == {"finished": True}
    assert rec["programs"][0]["package"] == "deb:lammps"
    assert rec["programs"][0]["exit_code"] == 0
    assert "dump" in rec["outputs"]
    stdout = store.read_file(store.find_repo(engine_repo), f"{_folder(rec)}/stdout.log")
    assert stdout is not None and b"Loop time of" in stdout
    write_script(
        engine_repo,
        "fails.py",
        """\
        import gittrack


        @gittrack.command()
        def main():
            gittrack.shell(["lmp", "-in", "missing.in"])
        """,
    )
    failed = run_cli(engine_repo, "run", "fails.py")
    assert failed.exit_code == 1
    rec = record_of(engine_repo)
    assert rec["status"] == "failed" and rec["error"]["type"] == "ProgramFailed"
    assert "Cannot open input script missing.in" in rec["error"]["message"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-p", "temp"],
            "-p 'temp' is not NAME=VALUE or NAME:TYPE=VALUE (TYPE one of int, float, bool, "
            "str), e.g. -p temp=300.",
        ),
        (["-p", "n:int=abc"], "-p 'n:int=abc': invalid literal for int() with base 10: 'abc'"),
        (["--metrics-from", "log.lammps:(\\d+)"], "has no named group"),
        (["-i", "sim"], "-i 'sim' is not NAME=RUN or NAME=RUN:OUTPUT"),
    ],
)
def test_bad_exec_options_are_one_sentence_and_exit_2(
    engine_repo: Path, run_cli, args: list[str], message: str
) -> None:
    result = run_cli(engine_repo, "exec", *args, "--", "lmp", "-h")
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len(gittrack.runs(repo=engine_repo)) == 0


def test_unknown_program_and_unknown_input_output(engine_repo: Path, run_cli) -> None:
    result = run_cli(engine_repo, "exec", "--", "no-such-engine", "-in", "in.melt")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: Program 'no-such-engine' was not found on PATH nor as a file; check its name "
        "or give its path."
    )
    made = run_cli(engine_repo, "exec", "-p", "temp=1", "-p", "steps=0", "--", *MELT)
    assert made.exit_code == 0
    short = gittrack.Run("latest", engine_repo).short
    result = run_cli(engine_repo, "exec", "-i", f"sim={short}:traj", "--", "cat", "{sim}")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: Run {short} has no stored output 'traj' (its outputs: dump, log); "
        "name one of those after the colon."
    )


@pytest.mark.slow
def test_sweep_exec_on_a_local_dask_cluster(engine_repo: Path, run_cli) -> None:
    args = ["sweep", "--exec", "-p", "temp=1.0,1.5", "-p", "steps=10", "-o", "dump.*"]
    result = run_cli(engine_repo, *args, "--executor", "dask", "-j", "2", "--", *MELT)
    assert result.exit_code == 0, result.output
    runs = gittrack.runs(repo=engine_repo)
    assert sorted(r.params["temp"] for r in runs) == [1.0, 1.5]
    assert {r.status for r in runs} == {"completed"}
    assert all(r.record.programs[0]["package"] == "deb:lammps" for r in runs)
    again = run_cli(engine_repo, *args, "--executor", "dask", "-j", "2", "--json", "--", *MELT)
    assert again.output.count('"reused": true') == 2


def test_on_a_terminal_the_program_sees_a_terminal_and_its_output_is_logged(
    engine_repo: Path,
) -> None:
    import os
    import pty

    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gittrack", "exec", "--", "sh", "-c", "test -t 1 && echo on-a-tty"],
        cwd=engine_repo,
        stdin=child,
        stdout=child,
        stderr=child,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    os.close(child)
    seen = b""
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:
            break
        if not data:
            break
        seen += data
    assert proc.wait(timeout=60) == 0, seen
    os.close(main)
    assert b"on-a-tty" in seen
    rec = record_of(engine_repo)
    stdout = store.read_file(store.find_repo(engine_repo), f"{_folder(rec)}/stdout.log")
    assert stdout is not None and b"on-a-tty" in stdout


def test_a_conda_engine_is_recorded_with_its_package(engine_repo: Path, run_cli, tmp_path) -> None:
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "conda-meta").mkdir()
    engine = env / "bin" / "mini-md"
    engine.write_text("#!/bin/sh\necho 'mini-md 3.1.4'\n")
    engine.chmod(0o755)
    (env / "conda-meta" / "mini-md-3.1.4-h0.json").write_text(
        '{"name": "mini-md", "version": "3.1.4", "files": ["bin/mini-md"]}'
    )
    result = run_cli(engine_repo, "exec", "--", str(engine))
    assert result.exit_code == 0, result.output
    (program,) = record_of(engine_repo)["programs"]
    assert program["package"] == "conda:mini-md" and program["package_version"] == "3.1.4"
    assert program["version"] == "mini-md 3.1.4"  # what `mini-md --version` printed


def test_experiment_runs_and_sweeps_a_program(engine_repo: Path, monkeypatch) -> None:
    monkeypatch.chdir(engine_repo)
    exp = gittrack.Experiment("melt-py", repo=engine_repo)
    run = exp.exec(MELT, outputs=["dump.*"], temp=1.5, steps=10, label="007")
    assert run.params == {"temp": 1.5, "steps": 10, "label": "007"}
    assert run.record.experiment == "melt-py" and sorted(run.outputs) == ["dump"]
    report = exp.sweep_exec(MELT, outputs=["dump.*"], temp=[1.0, 1.5], steps=10, label="007")
    assert report.counts == {"completed": 1, "reused": 1}  # temp=1.5 ran already
    assert sorted(r.params["temp"] for r in exp.runs) == [1.0, 1.5]
    with pytest.raises(gittrack.RunFailed, match="lmp exited with code 1"):
        exp.exec(["lmp", "-in", "missing.in"])


def test_an_edited_deck_is_new_code_an_unrelated_file_is_not(engine_repo: Path, run_cli) -> None:
    args = ["exec", "-o", "none", "--", "cat", "in.melt"]
    assert run_cli(engine_repo, *args).exit_code == 0
    first = gittrack.Run("latest", engine_repo)
    (engine_repo / "notes.txt").write_text("unrelated\n")
    assert "reused" in run_cli(engine_repo, *args).stderr
    (engine_repo / "in.melt").write_text(DECK + "\n# edited\n")
    edited = run_cli(engine_repo, *args)
    assert "recorded (completed" in edited.stderr
    rec = record_of(engine_repo)
    assert rec["id"] != first.id
    assert rec["code"]["dirty"] is True and rec["code"]["files"]["in.melt"]["dirty"] is True


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("programs", "lmp", "'programs' must be an array, not a string"),
        ("programs", [{"sha256": 1}], "'programs[0].sha256' must be a string, not an integer"),
        ("exec", {"args": ["-p", 3]}, "'exec.args[1]' must be a string, not an integer"),
    ],
)
def test_a_record_with_a_wrongly_typed_program_is_unreadable(field, value, problem) -> None:
    from gittrack.errors import RecordError
    from gittrack.model.record import SCHEMA, RunRecord

    data = {"schema": SCHEMA, "id": "ab" * 16, field: value}
    with pytest.raises(RecordError, match=re.escape(problem)):
        RunRecord.from_dict(data)
