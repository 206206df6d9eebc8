"""Run outputs stored through DVC: the user's flow, a real `dvc pull`, and the faults."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import branch_log, git, run_python, write_script

import gittrack
from gittrack import store
from gittrack.errors import OutputNameError, UsageError
from gittrack.library.run import Run
from gittrack.model.record import run_folder
from gittrack.ops.data import gc
from gittrack.recording.outputs import validate_name
from gittrack.store import datastore

SIM = """\
import click
import numpy as np
import gittrack


@gittrack.command()
@click.option("--temp", type=float, default=1.0)
def main(temp):
    traj = np.arange(1000, dtype=float) * temp
    big = np.ones((64, 64)) * temp
    np.save(gittrack.output_dir() / "frames.npy", big)
    for step in range(3):
        gittrack.log(step=step * 10, energy=-1.2 * step)
    return {"trajectory": traj, "energy": float(traj.mean()),
            "frames": gittrack.output_dir() / "frames.npy"}


if __name__ == "__main__":
    main()
"""


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def record_of(repo: Path, run_id: str = "latest") -> dict:
    run = Run(run_id, repo)
    return tomllib.loads(store.read_record_bytes(store.find_repo(repo), run.id).decode())


def remote_dir(repo: Path) -> Path:
    return Path(datastore.remote_url(store.find_repo(repo)))


def cache_dir(repo: Path) -> Path:
    return datastore.cache_dir(store.find_repo(repo))


def object_path(root: Path, md5: str) -> Path:
    return root / "files" / "md5" / md5[:2] / md5[2:]


@pytest.fixture
def sim_repo(tracked_repo: Path) -> Path:
    write_script(tracked_repo, "sim.py", SIM)
    return tracked_repo


def test_user_flow(sim_repo: Path, run_cli) -> None:
    result = run_cli(sim_repo, "run", "sim.py", "--temp", "2")
    assert result.exit_code == 0, result.output
    rec = record_of(sim_repo)
    assert rec["status"] == "completed"
    assert rec["metrics"] == {"energy": 999.0}
    out_dir = sim_repo / ".gittrack" / "outputs" / rec["id"]
    traj = rec["outputs"]["trajectory"]
    assert traj["path"] == "trajectory.npy" and traj["kind"] == "npy" and traj["pushed"] is True
    assert traj["md5"] == md5_of(out_dir / "trajectory.npy")
    assert traj["size"] == (out_dir / "trajectory.npy").stat().st_size
    assert rec["outputs"]["frames"]["path"] == "frames.npy"
    assert rec["outputs"]["metrics"]["path"] == "metrics.csv"
    # pointer files next to run.toml, data in cache and remote, git status clean
    folder = f"{run_folder(rec['id'])}"
    pointer = git(sim_repo, "show", f"gittrack/runs:{folder}/trajectory.dvc")
    assert f"md5: {traj['md5']}" in pointer and 'path: "trajectory.npy"' in pointer
    assert object_path(cache_dir(sim_repo), traj["md5"]).exists()
    assert md5_of(object_path(remote_dir(sim_repo), traj["md5"])) == traj["md5"]
    assert git(sim_repo, "status", "--porcelain") == ""
    # and back
    run = gittrack.Run("latest", sim_repo)
    np.testing.assert_array_equal(run.load("trajectory"), np.arange(1000) * 2.0)
    assert run.path("frames") == out_dir / "frames.npy"
    np.testing.assert_array_equal(np.load(run.path("frames")), np.ones((64, 64)) * 2)
    metrics = run.load("metrics")
    assert list(metrics.columns) == ["step", "energy"]
    assert metrics["step"].tolist() == [0, 10, 20]


def test_real_dvc_pull_in_a_worktree_restores_outputs(
    sim_repo: Path, run_cli, tmp_path: Path
) -> None:
    write_script(
        sim_repo,
        "folder.py",
        """\
        import click, gittrack

        @gittrack.command()
        def main():
            d = gittrack.output_dir() / "snapshots"
            (d / "deep").mkdir(parents=True)
            (d / "a.txt").write_text("alpha")
            (d / "deep" / "b.bin").write_bytes(bytes(range(256)) * 50)
            return {"snapshots": d, "blob": b"\\x00\\x01raw"}
        """,
    )
    assert run_cli(sim_repo, "run", "sim.py").exit_code == 0
    assert run_cli(sim_repo, "run", "folder.py").exit_code == 0
    rec = record_of(sim_repo)
    assert rec["outputs"]["snapshots"]["md5"].endswith(".dir")
    assert rec["outputs"]["snapshots"]["nfiles"] == 2
    commit = gittrack.Run("latest", sim_repo).commit
    wt = tmp_path / "checkout"
    git(sim_repo, "worktree", "add", "--detach", str(wt), commit)
    dvc = Path(sys.executable).parent / "dvc"
    proc = subprocess.run([str(dvc), "pull"], cwd=wt, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outputs = sim_repo / ".gittrack" / "outputs"
    own = {"run.toml", "stdout.log", "stderr.log", "packages.txt", ".gitignore"}
    restored = sorted(
        p.relative_to(wt / "runs")
        for p in (wt / "runs").rglob("*")
        if p.is_file() and p.suffix != ".dvc" and p.name not in own
    )
    assert len(restored) == 6  # trajectory, frames, metrics; blob, a.txt, deep/b.bin
    for rel in restored:  # runs/<ab>/<cd>/<id>/<output path>
        original = outputs / rel.parts[2] / Path(*rel.parts[3:])
        assert (wt / "runs" / rel).read_bytes() == original.read_bytes(), rel
    assert (wt / run_folder(restored[0].parts[2])).is_dir()
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=wt, capture_output=True, text=True
    )
    assert status.stdout.strip() == ""


def test_remote_unreachable_records_run_and_push_later(sim_repo: Path, run_cli) -> None:
    remote = remote_dir(sim_repo)
    moved = remote.with_name(remote.name + ".away")
    remote.rename(moved)
    result = run_cli(sim_repo, "run", "sim.py")
    assert result.exit_code == 0
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1
    assert "does not exist" in warnings[0] and "'gittrack push' sends them later" in warnings[0]
    rec = record_of(sim_repo)
    assert rec["status"] == "completed"
    assert {o["pushed"] for o in rec["outputs"].values()} == {False}
    status = run_cli(sim_repo, "status")
    assert "3 output(s) not pushed" in status.output
    assert "does not exist" in status.output
    push = run_cli(sim_repo, "push")
    assert push.exit_code == 1
    assert "Error: The DVC remote folder" in push.output
    moved.rename(remote)
    push = run_cli(sim_repo, "push")
    assert push.exit_code == 0, push.output
    assert push.output.startswith("Pushed 3 object(s)")
    for output in rec["outputs"].values():
        assert object_path(remote, output["md5"]).exists()
    assert run_cli(sim_repo, "status").output.startswith("All outputs are on the remote")
    assert run_cli(sim_repo, "push").output.startswith("All outputs are already on the DVC remote ")


def test_output_deleted_from_cache_is_named_and_refetched(sim_repo: Path, run_cli) -> None:
    assert run_cli(sim_repo, "run", "sim.py").exit_code == 0
    rec = record_of(sim_repo)
    md5 = rec["outputs"]["trajectory"]["md5"]
    object_path(cache_dir(sim_repo), md5).unlink()
    result = run_cli(sim_repo, "verify")
    assert result.exit_code == 1
    assert f"{rec['id'][:8]} trajectory: missing from the cache (the remote has it" in result.output
    assert "3 output(s) checked, 1 problem(s)." in result.output
    checkout = run_cli(sim_repo, "checkout", rec["id"][:6])
    assert checkout.exit_code == 0, checkout.output
    assert object_path(cache_dir(sim_repo), md5).exists()
    assert run_cli(sim_repo, "verify", rec["id"][:6]).exit_code == 0
    # a corrupted cache object is named too
    broken = object_path(cache_dir(sim_repo), rec["outputs"]["frames"]["md5"])
    os.chmod(broken, 0o644)
    broken.write_bytes(b"garbage")
    result = run_cli(sim_repo, "verify")
    assert "frames: corrupted in the cache" in result.output
    assert (
        f"it was removed from the cache and 'gittrack checkout {rec['id'][:8]}' fetches"
        in result.output
    )
    assert run_cli(sim_repo, "checkout", rec["id"][:6]).exit_code == 0
    assert run_cli(sim_repo, "verify").exit_code == 0  # repaired from the remote


def test_checkout_to_a_folder_gives_independent_copies(
    sim_repo: Path, run_cli, tmp_path: Path
) -> None:
    assert run_cli(sim_repo, "run", "sim.py", "--temp", "3").exit_code == 0
    shutil.rmtree(sim_repo / ".gittrack" / "outputs")
    target = tmp_path / "results"
    result = run_cli(sim_repo, "checkout", "latest", "trajectory", "--to", str(target))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(target / "trajectory.npy")
    np.testing.assert_array_equal(np.load(target / "trajectory.npy"), np.arange(1000) * 3.0)
    assert (target / "trajectory.npy").stat().st_nlink == 1
    assert run_cli(sim_repo, "checkout", "latest", "nope").output.startswith("Error: Run ")
    # Run.path refills the output folder from the cache
    assert gittrack.Run("latest", sim_repo).path("frames").is_file()


def test_bad_output_names(sim_repo: Path, run_cli) -> None:
    write_script(
        sim_repo,
        "names.py",
        """\
        import click, gittrack

        @gittrack.command()
        def main():
            for bad in ("a/b", "..", "/etc/passwd", ".hidden", ""):
                try:
                    gittrack.save(bad, b"x")
                except gittrack.GittrackError as exc:
                    print(type(exc).__name__, exc)
            return {"../escape": b"data", "ok": b"fine"}
        """,
    )
    result = run_cli(sim_repo, "run", "names.py")
    assert result.exit_code == 0, result.output
    assert result.output.count("OutputNameError Output name") == 5
    assert "Output name 'a/b' is not allowed: use a plain file name" in result.output
    rec = record_of(sim_repo)
    assert rec["status"] == "completed"
    assert "is not allowed" in rec["outputs"]["../escape"]["error"]
    assert rec["outputs"]["ok"]["md5"] == hashlib.md5(b"fine").hexdigest()
    assert not (sim_repo / ".gittrack" / "escape").exists()
    with pytest.raises(OutputNameError):
        validate_name("x\\y")


def test_unsupported_return_type_is_recorded_with_an_error(sim_repo: Path, run_cli) -> None:
    write_script(
        sim_repo,
        "weird.py",
        """\
        import click, gittrack

        @gittrack.command()
        def main():
            return {"thing": {1, 2}, "score": 0.5, "values": [1, 2.5]}
        """,
    )
    result = run_cli(sim_repo, "run", "weird.py")
    assert result.exit_code == 0
    rec = record_of(sim_repo)
    assert rec["status"] == "completed" and rec["metrics"] == {"score": 0.5}
    assert rec["outputs"]["thing"]["error"] == (
        "Output 'thing' of type set cannot be stored; return numpy arrays, pandas DataFrames, "
        "bytes, JSON-able lists, or a pathlib.Path to a file or folder the run wrote."
    )
    assert gittrack.Run("latest", sim_repo).load("values") == [1, 2.5]
    with pytest.raises(gittrack.GittrackError, match="was not stored"):
        gittrack.Run("latest", sim_repo).load("thing")


def test_single_value_and_dataframe_and_path_outside_repo(
    sim_repo: Path, run_cli, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.dat"
    outside.write_bytes(b"written by an external tool")
    write_script(
        sim_repo,
        "table.py",
        f"""\
        import click, gittrack, pandas as pd
        from pathlib import Path

        @gittrack.command()
        @click.option("--what")
        def main(what):
            if what == "table":
                return pd.DataFrame({{"x": [1, 2], "y": [0.5, 1.5]}})
            Path({str(outside)!r}).write_bytes(b"written by an external tool")  # during the run
            return {{"tool": Path({str(outside)!r}), "log": {str(outside)!r}}}
        """,
    )
    assert run_cli(sim_repo, "run", "table.py", "--what", "table").exit_code == 0
    rec = record_of(sim_repo)
    assert rec["outputs"]["result"]["kind"] == "parquet"
    frame = gittrack.Run("latest", sim_repo).load("result")
    assert frame["y"].tolist() == [0.5, 1.5]
    assert run_cli(sim_repo, "run", "table.py", "--what", "path").exit_code == 0
    rec = record_of(sim_repo)
    tool = rec["outputs"]["tool"]
    assert tool["path"] == "elsewhere.dat" and tool["md5"] == md5_of(outside)
    copied = sim_repo / ".gittrack" / "outputs" / rec["id"] / "elsewhere.dat"
    assert copied.read_bytes() == outside.read_bytes()
    assert outside.stat().st_nlink == 1  # the original is untouched, not linked
    # a string metric naming a file written during the run became an output too
    assert "log" not in rec.get("metrics", {}) and rec["outputs"]["log"]["md5"] == md5_of(outside)


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_disk_full_fails_the_run_cleanly(sim_repo: Path) -> None:
    write_script(
        sim_repo,
        "huge.py",
        """\
        import click, numpy as np, gittrack

        @gittrack.command()
        def main():
            return {"field": np.zeros(1 << 20), "small": b"ok"}

        if __name__ == "__main__":
            main()
        """,
    )
    proc = subprocess.run(
        [sys.executable, "huge.py"],
        cwd=sim_repo,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
    )
    assert "recorded (failed" in proc.stderr, proc.stderr
    rec = record_of(sim_repo)
    assert rec["status"] == "failed"
    assert rec["error"]["type"] == "StorageFull"
    assert rec["error"]["message"].startswith(
        "No space left to store output 'field' (File too large)"
    )
    assert rec["outputs"]["small"]["md5"] == hashlib.md5(b"ok").hexdigest()
    out_dir = sim_repo / ".gittrack" / "outputs" / rec["id"]
    assert not (out_dir / "field.npy").exists()
    assert not [p for p in cache_dir(sim_repo).rglob("*") if p.name.endswith(".tmp")]
    assert git(sim_repo, "fsck", "--no-progress") == ""
    assert git(sim_repo, "status", "--porcelain") == ""


def test_killed_run_keeps_logged_metrics(sim_repo: Path, run_cli) -> None:
    write_script(
        sim_repo,
        "long.py",
        """\
        import time, click, gittrack

        @gittrack.command()
        def main():
            gittrack.save("config", b"settings")
            for step in range(1000):
                gittrack.log(loss=1.0 / (step + 1))
                time.sleep(0.01 if step < 5 else 1)

        if __name__ == "__main__":
            main()
        """,
    )
    proc = subprocess.Popen([sys.executable, "long.py"], cwd=sim_repo)
    csv = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = list((sim_repo / ".gittrack" / "outputs").glob("*/metrics.csv"))
        if found and found[0].read_text().count("\n") >= 7:  # header + steps 0..5
            csv = found[0]
            break
        time.sleep(0.05)
    assert csv is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    result = run_cli(sim_repo, "doctor")
    assert result.exit_code == 0
    rec = record_of(sim_repo)
    assert rec["status"] == "died"
    assert rec["outputs"]["metrics"]["pushed"] is True
    metrics = gittrack.Run(rec["id"], sim_repo).load("metrics")
    assert metrics["step"].tolist()[:6] == [0, 1, 2, 3, 4, 5]
    assert gittrack.Run(rec["id"], sim_repo).load("config") == b"settings"


def test_rm_warns_about_dependents_and_gc_frees_space(sim_repo: Path, run_cli) -> None:
    write_script(
        sim_repo,
        "analyse.py",
        """\
        import click, gittrack

        @gittrack.command()
        @click.option("--sim")
        def main(sim):
            return {"mean": float(gittrack.Run(sim).load("trajectory").mean())}
        """,
    )
    assert run_cli(sim_repo, "run", "sim.py", "--temp", "5").exit_code == 0
    sim = record_of(sim_repo)
    assert run_cli(sim_repo, "run", "analyse.py", "--sim", sim["id"]).exit_code == 0
    analysis = record_of(sim_repo)
    assert analysis["inputs"][0]["run"] == sim["id"]
    assert analysis["inputs"][0]["output"] == "trajectory"
    result = run_cli(sim_repo, "rm", sim["id"][:8])
    assert result.exit_code == 0
    assert (
        f"Warning: run {sim['id'][:8]} was an input of run(s) {analysis['id'][:8]}."
        in result.output
    )
    assert f"Removed 1 run(s): {sim['id'][:8]}." in result.output
    assert branch_log(sim_repo)[0] == f"gittrack: remove run {sim['id'][:8]}"
    md5 = sim["outputs"]["trajectory"]["md5"]
    size = sum(o["size"] for o in sim["outputs"].values())
    result = run_cli(sim_repo, "gc")
    assert result.exit_code == 0
    assert "(3 cache object(s), 1 output folder(s))" in result.output
    assert not object_path(cache_dir(sim_repo), md5).exists()
    assert not (sim_repo / ".gittrack" / "outputs" / sim["id"]).exists()
    assert object_path(remote_dir(sim_repo), md5).exists()
    report = run_cli(sim_repo, "gc", "--remote", "--json")
    assert '"remote_objects": 3' in report.output and f'"remote_bytes": {size}' in report.output
    assert not object_path(remote_dir(sim_repo), md5).exists()


def test_gc_reports_freed_bytes(sim_repo: Path, run_cli) -> None:
    assert run_cli(sim_repo, "run", "sim.py").exit_code == 0
    rec = record_of(sim_repo)
    size = sum(o["size"] for o in rec["outputs"].values())
    assert run_cli(sim_repo, "gc").output.startswith("Freed 0 B locally")
    run_cli(sim_repo, "rm", "latest")
    freed = gc(store.find_repo(sim_repo))
    assert freed.bytes == size  # hardlinked output folder and cache counted once


def test_remote_set_commits_the_setting(sim_repo: Path, run_cli, tmp_path: Path) -> None:
    target = tmp_path / "shared" / "storage"
    result = run_cli(sim_repo, "remote", "set", str(target))
    assert result.exit_code == 0
    assert result.output.startswith(f"DVC remote set to {target}.")
    assert branch_log(sim_repo)[0] == f"gittrack: set DVC remote to {target}"
    config = git(sim_repo, "show", "gittrack/runs:.dvc/config")
    assert f"url = {target}" in config and "remote = storage" in config
    assert run_cli(sim_repo, "remote", "show").output.strip() == str(target)
    assert run_cli(sim_repo, "run", "sim.py").exit_code == 0
    md5 = record_of(sim_repo)["outputs"]["trajectory"]["md5"]
    assert object_path(target, md5).exists()
    bad = run_cli(sim_repo, "remote", "set", "nosuchscheme://x/y")
    assert bad.exit_code == 1 and bad.output.startswith("Error: Cannot use the DVC remote")
    empty = run_cli(sim_repo, "remote", "set", "")  # would have made the working tree the remote
    assert (
        empty.exit_code == 1
        and empty.output
        == "Error: The DVC remote URL is empty; give a folder or a URL such as s3://bucket/path.\n"
    )
    assert run_cli(sim_repo, "remote", "show").output.strip() == str(target)


def test_outputs_kept_from_the_output_folder_and_log_columns_widen(sim_repo: Path, run_cli) -> None:
    write_script(
        sim_repo,
        "loose.py",
        """\
        import click, gittrack

        @gittrack.command()
        def main():
            (gittrack.output_dir() / "notes.txt").write_text("kept without being returned")
            gittrack.log(a=1)
            gittrack.log(b=2)
            gittrack.log(step=7, a=3, b=4)
        """,
    )
    assert run_cli(sim_repo, "run", "loose.py").exit_code == 0
    rec = record_of(sim_repo)
    assert rec["outputs"]["notes"]["path"] == "notes.txt"
    rows = gittrack.Run("latest", sim_repo).path("metrics").read_text().splitlines()
    assert rows == ["step,a,b", "0,1,", "1,,2", "7,3,4"]


def test_calls_outside_a_run_and_public_api() -> None:
    for name in ("save", "log", "output_dir"):
        assert name in gittrack.__all__
    with pytest.raises(UsageError, match="only works inside a tracked run"):
        gittrack.output_dir()
    with pytest.raises(UsageError):
        gittrack.log(x=1)


def test_runs_without_outputs_do_not_import_dvc(tracked_repo: Path) -> None:
    write_script(
        tracked_repo,
        "plain.py",
        """\
        import sys, click, gittrack

        @gittrack.command()
        def main():
            return {"x": 1}

        if __name__ == "__main__":
            main(standalone_mode=False)
            print("dvc loaded:", any(m.startswith(("dvc", "numpy")) for m in sys.modules))
        """,
    )
    proc = run_python(tracked_repo, "plain.py")
    assert "dvc loaded: False" in proc.stdout


def test_large_file_is_copied_to_the_remote_while_hashed(sim_repo: Path, run_cli) -> None:
    write_script(
        sim_repo,
        "large.py",
        """\
        import os, click, gittrack

        @gittrack.command()
        def main():
            path = gittrack.output_dir() / "big.bin"
            with open(path, "wb") as fh:
                for i in range(20):
                    fh.write(os.urandom(1 << 20))
            return {"big": path}
        """,
    )
    assert run_cli(sim_repo, "run", "large.py").exit_code == 0
    rec = record_of(sim_repo)
    big = rec["outputs"]["big"]
    assert big["pushed"] is True and big["size"] == 20 << 20
    out = sim_repo / ".gittrack" / "outputs" / rec["id"] / "big.bin"
    assert md5_of(out) == big["md5"]
    assert md5_of(object_path(remote_dir(sim_repo), big["md5"])) == big["md5"]
    assert not list((remote_dir(sim_repo) / "files" / "md5").glob("*.tmp"))
    assert out.stat().st_nlink == 2  # the output folder and the cache share one copy


def test_dataframe_falls_back_to_csv_without_pyarrow(sim_repo: Path, run_cli, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    write_script(
        sim_repo,
        "frame.py",
        """\
        import click, gittrack, pandas as pd

        @gittrack.command()
        def main():
            return {"table": pd.DataFrame({"a": [1, 2, 3]})}
        """,
    )
    assert run_cli(sim_repo, "run", "frame.py").exit_code == 0
    table = record_of(sim_repo)["outputs"]["table"]
    assert table["path"] == "table.csv" and table["kind"] == "csv"
    assert gittrack.Run("latest", sim_repo).load("table")["a"].tolist() == [1, 2, 3]


def test_unwritable_remote_defers_the_push(sim_repo: Path, run_cli) -> None:
    remote = remote_dir(sim_repo)
    (remote / "files").write_text("not a folder: every write below it fails")
    result = run_cli(sim_repo, "run", "sim.py")
    assert result.exit_code == 0
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "not pushed" in warnings[0]
    rec = record_of(sim_repo)
    assert rec["status"] == "completed"
    assert {o["pushed"] for o in rec["outputs"].values()} == {False}
    assert run_cli(sim_repo, "push").exit_code == 1
    (remote / "files").unlink()
    assert run_cli(sim_repo, "push").output.startswith("Pushed 3 object(s)")
