"""Hostile and damaged data: crafted records, stale push state, killed stores, symlinks, types."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w
from click.testing import CliRunner
from conftest import write_script
from hypothesis import HealthCheck, given, settings, strategies as st
from starlette.testclient import TestClient

import gittrack
from gittrack import store
from gittrack.cli import cli
from gittrack.errors import OutputError, RecordError
from gittrack.index.records import json_record, kv_rows
from gittrack.model.record import RunRecord, run_folder
from gittrack.store import datastore
from gittrack.ui import create_app

SIM = """\
import click
import numpy as np
import gittrack


@gittrack.command()
@click.option("--n", type=int, default=5)
def main(n):
    return {"arr": np.arange(n, dtype=float), "energy": float(n)}


if __name__ == "__main__":
    main()
"""


@pytest.fixture
def sim_repo(tracked_repo: Path) -> Path:
    write_script(tracked_repo, "sim.py", SIM)
    return tracked_repo


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def remote_dir(repo: Path) -> Path:
    return Path(datastore.remote_url(store.find_repo(repo)))


def cache_dir(repo: Path) -> Path:
    return datastore.cache_dir(store.find_repo(repo))


def object_path(root: Path, md5: str) -> Path:
    return root / "files" / "md5" / md5[:2] / md5[2:]


def record_of(repo: Path, run_id: str) -> dict[str, Any]:
    data = store.read_record_bytes(store.find_repo(repo), run_id)
    assert data is not None
    return tomllib.loads(data.decode())


def run_ids(repo: Path, run_cli) -> list[str]:
    return [r["id"] for r in json.loads(run_cli(repo, "ls", "--json").stdout)]


def new_run(repo: Path, run_cli, *args: str) -> str:
    result = run_cli(repo, "run", "sim.py", *args)
    assert result.exit_code == 0, result.output
    return run_ids(repo, run_cli)[0]


def commit_record(repo: Path, run_id: str, text: bytes) -> None:
    """Commit `text` as the run's run.toml on the runs branch, as a collaborator's push would."""
    r = store.find_repo(repo)
    writer = store.ObjectWriter(r)
    edits = store.write_blobs(writer, {f"{run_folder(run_id)}/run.toml": text})
    writer.sync()
    store.commit_to_branch(r, f"run {run_id[:8]}: crafted\n\nRun-Id: {run_id}\n", edits)


def edit_record(repo: Path, run_id: str, edit: Callable[[dict[str, Any]], None]) -> None:
    data = record_of(repo, run_id)
    edit(data)
    commit_record(repo, run_id, tomli_w.dumps(data).encode())


# -- 1. crafted output paths -----------------------------------------------------------------


UNSAFE = [
    "{victim}",
    "../../../victim/planted.sh",
    "sub/../../../../victim",
    "C:/Windows/planted.sh",
    "..\\..\\victim",
    "",
]


@pytest.mark.parametrize("template", UNSAFE)
def test_crafted_output_path_is_refused_and_nothing_on_disk_is_touched(
    sim_repo: Path, run_cli, tmp_path: Path, template: str
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("precious")
    other = new_run(sim_repo, run_cli, "--n", "3")
    run_id = new_run(sim_repo, run_cli)
    shutil.rmtree(sim_repo / ".gittrack" / "outputs")
    bad = template.format(victim=victim)

    def craft(data: dict[str, Any]) -> None:
        data["outputs"]["arr"]["path"] = bad

    edit_record(sim_repo, run_id, craft)
    reason = f"output 'arr' has an unsafe path {bad!r}"
    checkout = run_cli(sim_repo, "checkout", run_id[:8])
    assert checkout.exit_code == 1
    assert checkout.output == (
        f"Error: run {run_id[:8]}: {reason}; skipped (the record is unreadable: gittrack never "
        "writes such a path, so it was crafted or damaged).\n"
    )
    with pytest.raises(RecordError, match="unsafe path"):
        gittrack.Run(run_id, sim_repo).load("arr")
    listing = run_cli(sim_repo, "ls", "--json")
    assert listing.exit_code == 0
    assert [r["id"] for r in json.loads(listing.stdout)] == [other]
    assert f"Warning: run {run_id[:8]} is unreadable ({reason}); skipped" in listing.stderr
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert (victim / "precious.txt").read_text() == "precious"
    assert not (tmp_path / "planted.sh").exists()
    assert not (sim_repo / ".gittrack" / "outputs").exists()
    assert run_cli(sim_repo, "checkout", other[:8]).exit_code == 0  # other runs unaffected


def test_checkout_never_overwrites_unless_forced_and_then_only_inside_the_target(
    sim_repo: Path, run_cli, tmp_path: Path
) -> None:
    run_id = new_run(sim_repo, run_cli)
    target = tmp_path / "results"
    first = run_cli(sim_repo, "checkout", run_id[:8], "--to", str(target))
    assert first.exit_code == 0, first.output
    assert run_cli(sim_repo, "checkout", run_id[:8], "--to", str(target)).exit_code == 0
    # a file of the user's where the output goes is left alone
    (target / "arr.npy").write_bytes(b"my own notes")
    refused = run_cli(sim_repo, "checkout", run_id[:8], "--to", str(target))
    assert refused.exit_code == 1
    assert refused.output == (
        f"Error: {target / 'arr.npy'} already exists and differs from output 'arr' of run "
        f"{run_id[:8]}; move it away, or pass --force to replace it.\n"
    )
    assert (target / "arr.npy").read_bytes() == b"my own notes"
    # a folder where a file goes: never deleted without --force
    (target / "arr.npy").unlink()
    (target / "arr.npy").mkdir()
    (target / "arr.npy" / "keep.txt").write_text("keep")
    assert run_cli(sim_repo, "checkout", run_id[:8], "--to", str(target)).exit_code == 1
    assert (target / "arr.npy" / "keep.txt").read_text() == "keep"
    forced = run_cli(sim_repo, "checkout", run_id[:8], "--to", str(target), "--force")
    assert forced.exit_code == 0, forced.output
    np.testing.assert_array_equal(np.load(target / "arr.npy"), np.arange(5.0))
    # a symlink at the destination is replaced itself; the file it points to is not written
    outside = tmp_path / "outside.npy"
    outside.write_bytes(b"outside")
    (target / "arr.npy").unlink()
    (target / "arr.npy").symlink_to(outside)
    assert run_cli(sim_repo, "checkout", run_id[:8], "--to", str(target)).exit_code == 1
    assert run_cli(sim_repo, "checkout", run_id[:8], "--to", str(target), "-f").exit_code == 0
    assert outside.read_bytes() == b"outside"
    assert not (target / "arr.npy").is_symlink()
    # a symlinked folder on the way out of the target is refused even with --force
    shutil.rmtree(target)
    target.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out_dir = sim_repo / ".gittrack" / "outputs" / run_id
    shutil.rmtree(out_dir)
    out_dir.symlink_to(elsewhere)
    escaped = run_cli(sim_repo, "checkout", run_id[:8], "--force")
    assert escaped.exit_code == 1
    assert "outside" in escaped.output and escaped.output.startswith("Error: ")
    assert list(elsewhere.iterdir()) == []


def test_loading_an_output_never_deletes_what_is_in_its_place(sim_repo: Path, run_cli) -> None:
    run_id = new_run(sim_repo, run_cli)
    out = sim_repo / ".gittrack" / "outputs" / run_id / "arr.npy"
    out.unlink()
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    with pytest.raises(OutputError, match="already exists"):
        gittrack.Run(run_id, sim_repo).load("arr")
    assert (out / "keep.txt").read_text() == "keep"
    shutil.rmtree(out)
    np.testing.assert_array_equal(gittrack.Run(run_id, sim_repo).load("arr"), np.arange(5.0))


def test_folder_listing_from_the_remote_with_an_unsafe_path_is_refused(
    tracked_repo: Path, run_cli, tmp_path: Path
) -> None:
    write_script(
        tracked_repo,
        "folder.py",
        """\
        import gittrack

        @gittrack.command()
        def main():
            folder = gittrack.output_dir() / "frames"
            folder.mkdir()
            (folder / "a.txt").write_text("a")
            return {"frames": folder}

        if __name__ == "__main__":
            main()
        """,
    )
    assert run_cli(tracked_repo, "run", "folder.py").exit_code == 0
    run_id = run_ids(tracked_repo, run_cli)[0]
    listing_md5 = record_of(tracked_repo, run_id)["outputs"]["frames"]["md5"]
    # the listing in the cache names a file outside the folder (as a crafted remote could)
    listing = object_path(cache_dir(tracked_repo), listing_md5)
    entries = json.loads(listing.read_text())
    entries[0]["relpath"] = "../../../../planted.txt"
    os.chmod(listing, 0o644)
    listing.write_text(json.dumps(entries))
    shutil.rmtree(tracked_repo / ".gittrack" / "outputs")
    result = run_cli(tracked_repo, "checkout", run_id[:8])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "unsafe path" in result.output
    assert not list(tracked_repo.parent.rglob("planted.txt"))


# -- 3. push state verified against the remote -------------------------------------------------


def test_status_and_push_check_the_remote_rather_than_trusting_the_ledger(
    sim_repo: Path, run_cli
) -> None:
    run_id = new_run(sim_repo, run_cli)
    new_run(sim_repo, run_cli, "--n", "7")
    assert run_cli(sim_repo, "status").output.startswith("All outputs are on the remote")
    remote = remote_dir(sim_repo)
    shutil.rmtree(remote)
    remote.mkdir()  # wiped, or recreated empty
    status = run_cli(sim_repo, "status")
    assert status.output.startswith("2 output(s) not pushed"), status.output
    push = run_cli(sim_repo, "push")
    assert push.exit_code == 0, push.output
    assert push.output.startswith("Pushed 2 object(s)"), push.output
    md5 = record_of(sim_repo, run_id)["outputs"]["arr"]["md5"]
    assert md5_of(object_path(remote, md5)) == md5
    assert run_cli(sim_repo, "status").output.startswith("All outputs are on the remote")
    # one object lost on the remote: found and re-sent
    object_path(remote, md5).unlink()
    status = run_cli(sim_repo, "status")
    assert status.output.startswith("1 output(s) not pushed")
    assert f"  {run_id[:8]}  arr  " in status.output
    assert run_cli(sim_repo, "push").output.startswith("Pushed 1 object(s)")
    assert object_path(remote, md5).is_file()


def test_verify_remote_checks_sizes_and_hashes_there(sim_repo: Path, run_cli) -> None:
    first = new_run(sim_repo, run_cli)
    second = new_run(sim_repo, run_cli, "--n", "7")
    assert run_cli(sim_repo, "verify", "--remote").exit_code == 0
    remote = remote_dir(sim_repo)
    one = object_path(remote, record_of(sim_repo, first)["outputs"]["arr"]["md5"])
    two = object_path(remote, record_of(sim_repo, second)["outputs"]["arr"]["md5"])
    os.chmod(one, 0o644)
    one.write_bytes(one.read_bytes()[:-8])  # truncated
    os.chmod(two, 0o644)
    two.write_bytes(b"x" * two.stat().st_size)  # same size, other bytes
    result = run_cli(sim_repo, "verify", "--remote")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert (
        f"{first[:8]} arr: on the remote: size {one.stat().st_size} bytes differs from the "
        f"recorded {one.stat().st_size + 8}" in lines[0 if lines[0].startswith(first[:8]) else 1]
    )
    assert any(line.startswith(f"{second[:8]} arr: on the remote: corrupted") for line in lines), (
        lines
    )
    assert lines[-1] == "2 output(s) checked, 2 problem(s)."
    assert run_cli(sim_repo, "verify").exit_code == 0  # the local cache is fine


# -- 4. a run killed while storing an output ---------------------------------------------------


KILLED_WHILE_STORING = """\
import os, signal, threading, time
from pathlib import Path
import click, gittrack


@gittrack.command()
@click.option("--fifo")
def main(fifo):
    def feed():
        with open(fifo, "wb") as fh:
            fh.write(b"x" * (3 << 20))
            fh.flush()
            time.sleep(0.5)  # the run has copied what came so far: it dies mid-copy
            os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=feed, daemon=True).start()
    return {"arr": Path(fifo), "energy": 1.0}


if __name__ == "__main__":
    main()
"""


def test_run_killed_while_storing_keeps_the_output_as_partial(
    tracked_repo: Path, run_cli, tmp_path: Path
) -> None:
    write_script(tracked_repo, "killed.py", KILLED_WHILE_STORING)
    fifo = tmp_path / "arr.bin"
    os.mkfifo(fifo)
    proc = subprocess.run(
        [sys.executable, "killed.py", "--fifo", str(fifo)], cwd=tracked_repo, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    assert run_cli(tracked_repo, "doctor").exit_code == 0
    run_id = run_ids(tracked_repo, run_cli)[0]
    rec = record_of(tracked_repo, run_id)
    assert rec["status"] == "died"
    arr = rec["outputs"]["arr"]
    assert arr["partial"] is True
    assert "md5" not in arr or arr["md5"] == ""
    assert arr.get("pushed", False) is False
    assert arr["size"] == 3 << 20
    assert "killed while" in arr["error"]
    kept = tracked_repo / ".gittrack" / "outputs" / run_id / arr["path"]
    assert kept.name.endswith(".partial") and kept.stat().st_size == 3 << 20
    with pytest.raises(OutputError, match="killed while"):
        gittrack.Run(run_id, tracked_repo).load("arr")
    # nothing of it reached the cache or the remote
    partial_md5 = hashlib.md5(b"x" * (3 << 20)).hexdigest()
    assert not object_path(cache_dir(tracked_repo), partial_md5).exists()
    assert not object_path(remote_dir(tracked_repo), partial_md5).exists()
    verify = run_cli(tracked_repo, "verify")
    assert verify.exit_code == 1
    assert f"{run_id[:8]} arr: partial: the run was killed while storing it" in verify.output
    # not pushed as valid, not listed as waiting for a push either
    assert run_cli(tracked_repo, "status").output.startswith("All outputs are on the remote")


KILLED_WHILE_PUSHING = """\
import os, signal, threading, time
from pathlib import Path
import click, gittrack
from gittrack import store
from gittrack.store import datastore


@gittrack.command()
def main():
    remote = Path(datastore.remote_url(store.find_repo("."))) / "files" / "md5"

    def watch():
        while True:
            if remote.is_dir() and any(p.name.endswith(".tmp") for p in remote.iterdir()):
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.0002)

    big = gittrack.output_dir() / "big.bin"
    big.write_bytes(os.urandom(1 << 20) * 40)
    threading.Thread(target=watch, daemon=True).start()
    return {"big": big}


if __name__ == "__main__":
    main()
"""


def test_temp_files_of_a_run_killed_while_storing_are_cleaned_by_gc(
    tracked_repo: Path, run_cli
) -> None:
    write_script(tracked_repo, "pushing.py", KILLED_WHILE_PUSHING)
    proc = subprocess.run([sys.executable, "pushing.py"], cwd=tracked_repo, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    remote = remote_dir(tracked_repo)
    assert list(remote.rglob("*.tmp"))  # the copy the killed run was writing
    # a temp file DVC left in the cache by a copy that was cut short
    cache_tmp = cache_dir(tracked_repo) / "files" / "md5" / "ab" / ".Xq3dkfjeiwo29d8f.tmp"
    cache_tmp.parent.mkdir(parents=True, exist_ok=True)
    cache_tmp.write_bytes(b"half")
    old = time.time() - 3 * 86400
    os.utime(cache_tmp, (old, old))
    assert run_cli(tracked_repo, "doctor").exit_code == 0
    result = run_cli(tracked_repo, "gc")
    assert result.exit_code == 0, result.output
    assert list(remote.rglob("*.tmp")) == []
    assert not cache_tmp.exists()
    run_id = run_ids(tracked_repo, run_cli)[0]
    assert run_cli(tracked_repo, "verify", "--remote").exit_code == 0
    assert gittrack.Run(run_id, tracked_repo).path("big").stat().st_size == 40 << 20


# -- 5. symlinks in output folders -------------------------------------------------------------


SYMLINKS = """\
import os
from pathlib import Path
import click, gittrack


@gittrack.command()
@click.option("--outside")
def main(outside):
    out = gittrack.output_dir()
    (out / "secret.bin").symlink_to(outside)
    (out / "inside.txt").symlink_to(Path.cwd() / "data" / "inside.txt")
    folder = out / "frames"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "b.txt").symlink_to(folder / "a.txt")
    (out / "mixed").mkdir()
    (out / "mixed" / "c.txt").write_text("c")
    (out / "mixed" / "leak.bin").symlink_to(outside)
    return {"energy": 1.0}


if __name__ == "__main__":
    main()
"""


def test_symlinks_in_the_output_folder_are_stored_as_content_or_refused(
    tracked_repo: Path, run_cli, tmp_path: Path
) -> None:
    write_script(tracked_repo, "links.py", SYMLINKS)
    (tracked_repo / "data").mkdir()
    inside = tracked_repo / "data" / "inside.txt"
    inside.write_text("inside the repo")
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"do not touch")
    os.chmod(outside, 0o640)
    os.chmod(inside, 0o664)
    result = run_cli(tracked_repo, "run", "links.py", "--outside", str(outside))
    assert result.exit_code == 0, result.output
    assert (
        f"Warning: Output 'secret' was not stored: secret.bin is a symlink to {outside}, "
        "outside the repository and the run's output folder; copy the file into the output "
        "folder instead.\n"
    ) in result.output
    run_id = run_ids(tracked_repo, run_cli)[0]
    outputs = record_of(tracked_repo, run_id)["outputs"]
    # the targets were not modified: same mode, no second hard link
    assert outside.stat().st_mode & 0o777 == 0o640 and outside.stat().st_nlink == 1
    assert inside.stat().st_mode & 0o777 == 0o664 and inside.stat().st_nlink == 1
    assert outside.read_bytes() == b"do not touch"
    secret_md5 = hashlib.md5(b"do not touch").hexdigest()
    assert not object_path(cache_dir(tracked_repo), secret_md5).exists()
    assert not object_path(remote_dir(tracked_repo), secret_md5).exists()
    assert outputs["secret"]["error"] == (
        f"Output 'secret' was not stored: secret.bin is a symlink to {outside}, outside the "
        "repository and the run's output folder; copy the file into the output folder instead."
    )
    assert outputs["mixed"]["error"] == (
        f"Output 'mixed' was not stored: mixed/leak.bin is a symlink to {outside}, outside the "
        "repository and the run's output folder; copy the file into the output folder instead."
    )
    assert "md5" not in outputs["secret"] or not outputs["secret"]["md5"]
    # links to content inside the repository or the output folder are stored as that content
    assert outputs["inside"]["md5"] == hashlib.md5(b"inside the repo").hexdigest()
    assert outputs["frames"]["nfiles"] == 2
    shutil.rmtree(tracked_repo / ".gittrack" / "outputs")
    shutil.rmtree(cache_dir(tracked_repo))
    run = gittrack.Run(run_id, tracked_repo)
    assert run.path("inside").read_text() == "inside the repo"
    assert (run.path("frames") / "b.txt").read_text() == "a"
    assert not (run.path("frames") / "b.txt").is_symlink()
    # gc of a removed run whose folder holds a symlinked folder leaves the target alone
    assert run_cli(tracked_repo, "rm", run_id[:8]).exit_code == 0
    out_dir = tracked_repo / ".gittrack" / "outputs" / run_id
    (out_dir / "elsewhere").symlink_to(tmp_path)
    assert run_cli(tracked_repo, "gc").exit_code == 0
    assert outside.read_bytes() == b"do not touch"
    assert not out_dir.exists()


# -- 6. wrongly typed run.toml -----------------------------------------------------------------


MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("params", lambda d: d.update(params="x=1"), "'params' must be a table, not a string"),
    ("metrics", lambda d: d.update(metrics=[1, 2]), "'metrics' must be a table, not an array"),
    ("outputs", lambda d: d.update(outputs="arr"), "'outputs' must be a table, not a string"),
    (
        "size",
        lambda d: d["outputs"]["arr"].update(size="152"),
        "'outputs.arr.size' must be an integer of 0 or more, not a string",
    ),
    ("inputs", lambda d: d.update(inputs="3f2a"), "'inputs' must be an array, not a string"),
    ("argv", lambda d: d.update(argv=5), "'argv' must be an array, not an integer"),
    ("env", lambda d: d.update(env=[{"a": 1}]), "'env' must be a table, not an array"),
    (
        "started",
        lambda d: d.update(started="yesterday"),
        "'started' must be a date and time, not a string",
    ),
    (
        "dirty",
        lambda d: d["code"].update(dirty="yes"),
        "'code.dirty' must be true or false, not a string",
    ),
    ("tags", lambda d: d.update(tags=[1]), "'tags[0]' must be a string, not an integer"),
    (
        "input_files",
        lambda d: d.update(input_files={"run.cfg": 5}),
        "'input_files.run.cfg' must be a string, not an integer",
    ),
]


@pytest.mark.parametrize(("label", "mutate", "reason"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_one_wrongly_typed_record_costs_only_itself(
    sim_repo: Path, run_cli, label: str, mutate: Callable[[dict[str, Any]], None], reason: str
) -> None:
    good = new_run(sim_repo, run_cli, "--n", "3")
    bad = new_run(sim_repo, run_cli)
    edit_record(sim_repo, bad, mutate)
    listing = run_cli(sim_repo, "ls")
    assert listing.exit_code == 0, listing.output
    assert good[:8] in listing.stdout and bad[:8] not in listing.stdout
    assert f"Warning: run {bad[:8]} is unreadable ({reason}); skipped" in listing.stderr
    shown = run_cli(sim_repo, "show", bad[:8])
    assert shown.exit_code == 1
    assert shown.output == f"Error: The record of run {bad[:8]} is unreadable: {reason}.\n"
    assert run_cli(sim_repo, "show", good[:8]).exit_code == 0
    assert run_cli(sim_repo, "verify").exit_code == 0
    assert run_cli(sim_repo, "status").exit_code == 0
    client = TestClient(create_app(sim_repo, port=8765), base_url="http://127.0.0.1:8765")
    assert client.get("/").status_code == 200
    page = client.get(f"/runs/{bad}")
    assert page.status_code == 200 and "unreadable" in page.text
    assert client.get(f"/api/runs/{bad}").json()["problem"] == reason
    assert client.get(f"/runs/{good}").status_code == 200


# -- property: any mutation reads correctly or is unreadable, never a crash ----------------------


TOML_SCALARS = (
    st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True)
    | st.booleans()
    | st.text(max_size=12)
    | st.datetimes(min_value=dt.datetime(1, 1, 2), timezones=st.none() | st.just(dt.UTC))
    | st.dates()
    | st.times()
)
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
PATHS = st.sampled_from(
    ["/etc/passwd", "../x", "a/../../b", "C:\\x", "", ".", "a\0b", "sub/ok.npy", "~/x"]
)
KEYS = [
    ("schema",),
    ("id",),
    ("code", "script"),
    ("outputs", "arr", "partial"),
    ("params",),
    ("params", "n"),
    ("metrics",),
    ("metrics", "energy"),
    ("env",),
    ("env", "python"),
    ("outputs",),
    ("outputs", "arr"),
    ("outputs", "arr", "path"),
    ("outputs", "arr", "md5"),
    ("outputs", "arr", "size"),
    ("outputs", "arr", "kind"),
    ("outputs", "arr", "nfiles"),
    ("outputs", "arr", "pushed"),
    ("inputs",),
    ("code",),
    ("code", "commit"),
    ("code", "dirty"),
    ("argv",),
    ("tags",),
    ("started",),
    ("finished",),
    ("duration_s",),
    ("exit_code",),
    ("status",),
    ("name",),
    ("error",),
    ("logs",),
    ("param_sources",),
    ("experiment",),
]
MUTATION = st.tuples(
    st.sampled_from(KEYS), st.one_of(TOML_VALUES, PATHS, st.just(None))
)  # None: the key is deleted


def _mutated(base: dict[str, Any], keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(base, default=str))
    data["started"] = base["started"]
    data["finished"] = base["finished"]
    target = data
    for key in keys[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    if value is None:
        target.pop(keys[-1], None)
    else:
        target[keys[-1]] = value
    return data


def _base_record() -> dict[str, Any]:
    return {
        "schema": 1,
        "id": "ab" + "0" * 30,
        "command": "sim.py",
        "status": "completed",
        "argv": ["--n", "5"],
        "started": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "finished": dt.datetime(2024, 1, 2, 3, 4, 6, tzinfo=dt.UTC),
        "duration_s": 1.0,
        "exit_code": 0,
        "params": {"n": 5},
        "param_sources": {"n": "cli"},
        "metrics": {"energy": 5.0},
        "env": {"python": "3.11"},
        "code": {"commit": "c" * 40, "dirty": False, "script": "sim.py"},
        "inputs": [{"run": "cd" + "0" * 30, "output": "arr", "md5": "e" * 32}],
        "outputs": {"arr": {"path": "arr.npy", "md5": "f" * 32, "size": 10, "kind": "npy"}},
    }


@settings(max_examples=200, deadline=None)
@given(mutation=MUTATION)
def test_any_mutated_record_decodes_or_is_unreadable(mutation: tuple[tuple[str, ...], Any]) -> None:
    data = _mutated(_base_record(), *mutation)
    try:
        text = tomli_w.dumps(data).encode()
    except (TypeError, ValueError):
        return  # not representable in TOML: no run.toml can hold it
    try:
        record = RunRecord.from_toml(text, "?")
        form, _ = json_record(text, record.id)
    except RecordError:
        return
    list(kv_rows(form))
    again = RunRecord.from_toml(record.to_toml(), record.id)  # what gittrack writes, it reads
    assert again.params.keys() == record.params.keys()
    for output in record.outputs.values():
        assert not output.path.startswith(("/", "\\")) and ".." not in output.path.split("/")


@pytest.mark.slow
def test_any_mutated_record_on_the_branch_is_shown_or_reported(sim_repo: Path) -> None:
    """ls, show and the UI either read a mutated record or call it unreadable; never crash."""
    runner = CliRunner()
    assert runner.invoke(cli, ["-C", str(sim_repo), "run", "sim.py"]).exit_code == 0
    good = json.loads(runner.invoke(cli, ["-C", str(sim_repo), "ls", "--json"]).stdout)[0]["id"]
    bad = "ab" + "0" * 30
    client = TestClient(create_app(sim_repo, port=8765), base_url="http://127.0.0.1:8765")

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(mutation=MUTATION)
    def check(mutation: tuple[tuple[str, ...], Any]) -> None:
        data = _mutated(_base_record(), *mutation)
        try:
            text = tomli_w.dumps(data).encode()
        except (TypeError, ValueError):
            return
        commit_record(sim_repo, bad, text)
        listing = runner.invoke(cli, ["-C", str(sim_repo), "ls"])
        assert listing.exit_code == 0, listing.output
        assert good[:8] in listing.stdout
        for args in (["show", bad], ["show", "--json", bad]):
            shown = runner.invoke(cli, ["-C", str(sim_repo), *args])
            assert shown.exit_code in (0, 1), shown.output
            assert "unexpected" not in shown.output, shown.output
            if shown.exit_code:
                assert shown.output.startswith("Error: ") and shown.output.count("\n") == 1
                assert f"run {bad[:8]}" in shown.output and "unreadable" in shown.output
        for url in ("/", f"/runs/{bad}", f"/api/runs/{bad}", "/api/runs"):
            assert client.get(url).status_code == 200, url
        checkout = runner.invoke(cli, ["-C", str(sim_repo), "checkout", bad])
        assert checkout.exit_code in (0, 1) and "unexpected" not in checkout.output

    check()


# -- nesting no reader can follow ------------------------------------------------------------

DEEP = {
    "arrays": "x = " + "[" * 5000 + "]" * 5000,
    "tables": "x = " + "{a = " * 300 + "1" + "}" * 300,
}


@pytest.mark.parametrize("shape", sorted(DEEP))
def test_a_record_nested_too_deeply_costs_only_itself(sim_repo: Path, run_cli, shape: str) -> None:
    good = new_run(sim_repo, run_cli, "--n", "3")
    bad = "ab" + "1" * 30
    text = f'schema = 2\nid = "{bad}"\ncommand = "sim.py"\nstatus = "completed"\n'
    commit_record(sim_repo, bad, f"{text}\n[params]\n{DEEP[shape]}\n".encode())
    listing = run_cli(sim_repo, "ls")
    assert listing.exit_code == 0, listing.output
    assert good[:8] in listing.stdout and bad[:8] not in listing.stdout
    assert f"Warning: run {bad[:8]} is unreadable (" in listing.stderr
    assert "nested" in listing.stderr and "unexpected" not in listing.output
    shown = run_cli(sim_repo, "show", bad[:8])
    assert shown.exit_code == 1 and shown.output.count("\n") == 1, shown.output
    assert shown.output.startswith(f"Error: The record of run {bad[:8]} is unreadable: ")
    assert run_cli(sim_repo, "ls", "--where", "params.x = 1").exit_code == 0
    client = TestClient(create_app(sim_repo, port=8765), base_url="http://127.0.0.1:8765")
    for url in ("/", f"/runs/{bad}", f"/api/runs/{bad}", "/api/runs", f"/runs/{good}"):
        assert client.get(url).status_code == 200, url
