"""What recording one run costs: objects and files written, git processes, modules (issue 17).

Nothing here is timed: each test checks a cause of cost that is visible on disk or in the
process (loose objects each with an fsync of their own, `git var` per run, OpenSSL's hashlib).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_fsck_clean_and_listed, wait_for_housekeeping

from gittrack import store


def _loose(repo: Path) -> int:
    objects = repo / ".git" / "objects"
    return sum(1 for d in objects.iterdir() if len(d.name) == 2 for _ in d.iterdir())


def _packs(repo: Path) -> list[Path]:
    return sorted((repo / ".git" / "objects" / "pack").glob("*.pack"))


def _run(repo: Path, *args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "sim.py", *args], cwd=repo, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr


def test_a_run_writes_its_objects_as_one_pack(tracked_repo: Path) -> None:
    _run(tracked_repo, "--steps", "1")  # the shared blobs (empty logs, packages) exist now
    loose, packs = _loose(tracked_repo), _packs(tracked_repo)
    _run(tracked_repo, "--steps", "2")
    assert _loose(tracked_repo) == loose  # no loose object, each with its own fsync
    new = sorted(set(_packs(tracked_repo)) - set(packs))
    assert len(new) == 1 and new[0].with_suffix(".idx").exists()
    verify = subprocess.run(
        ["git", "verify-pack", "-v", str(new[0].with_suffix(".idx"))],
        cwd=tracked_repo,
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr
    kinds = [line.split()[1] for line in verify.stdout.splitlines() if len(line.split()) > 4]
    assert kinds.count("commit") == 1 and "blob" in kinds and "tree" in kinds
    fsck = subprocess.run(["git", "fsck", "--strict"], cwd=tracked_repo, capture_output=True)
    assert fsck.returncode == 0, fsck.stderr
    assert not list((tracked_repo / ".git" / "objects" / "pack").glob("tmp_*"))


def _logging_git(folder: Path, log: Path) -> dict[str, str]:
    """PATH with a `git` that logs its arguments, then runs the real git."""
    real = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    folder.mkdir()
    shim = folder / "git"
    shim.write_text(f'#!/bin/sh\necho "$1 $2 $3 $4 $5 $6" >> {log}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_a_clean_run_starts_no_git_var(tracked_repo: Path, tmp_path: Path) -> None:
    log = tmp_path / "git.log"
    env = _logging_git(tmp_path / "bin", log)
    env.pop("GIT_COMMITTER_NAME")  # the identity comes from the git config files
    subprocess.run(["git", "config", "user.email", "ada@example.org"], cwd=tracked_repo, check=True)
    subprocess.run(["git", "config", "user.name", "Ada Config"], cwd=tracked_repo, check=True)
    _run(tracked_repo, "--steps", "1", env=env)  # may ask git once, then it is cached
    log.write_text("")
    _run(tracked_repo, "--steps", "2", env=env)
    calls = log.read_text().splitlines()
    assert not [c for c in calls if c.startswith("var")], calls
    assert len(calls) <= 2, calls  # cat-file (reading the tip) and update-ref
    author = subprocess.run(
        ["git", "log", "-1", "--format=%cn", store.RUNS_REF],
        cwd=tracked_repo,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert author == "Ada Config"


def test_a_changed_git_identity_is_seen_by_the_next_run(tracked_repo: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_COMMITTER")}
    subprocess.run(["git", "config", "user.email", "ada@example.org"], cwd=tracked_repo, check=True)
    subprocess.run(["git", "config", "user.name", "First Name"], cwd=tracked_repo, check=True)
    _run(tracked_repo, "--steps", "1", env=env)
    subprocess.run(["git", "config", "user.name", "Second Name"], cwd=tracked_repo, check=True)
    _run(tracked_repo, "--steps", "2", env=env)
    names = subprocess.run(
        ["git", "log", "-2", "--format=%cn", store.RUNS_REF],
        cwd=tracked_repo,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    assert names[:2] == ["Second Name", "First Name"]


HEAVY = ("hashlib", "_hashlib", "shutil", "lzma", "bz2", "tomllib", "traceback", "struct")
# what only reading, sharing, repairing or the lookup table need: never imported to record a run
HEAVY += ("sqlite3", "tempfile", "random", "importlib.metadata")
HEAVY += ("gittrack.model.schema", "gittrack.store.repair", "gittrack.store.remotes")
HEAVY += ("gittrack.store.notes", "gittrack.index.db", "gittrack.library.run")


def test_recording_a_run_imports_no_heavy_module(tracked_repo: Path) -> None:
    _run(tracked_repo, "--steps", "1")  # the first run lists the installed packages (cached)
    (tracked_repo / "sim.py").write_text(
        (tracked_repo / "sim.py")
        .read_text()
        .replace(
            "import click\n",
            "import atexit, sys\n"
            "atexit.register(lambda: print('MODULES', *sorted(sys.modules), file=sys.stderr))\n"
            "import click\n",
            1,
        )
    )
    done = subprocess.run(
        [sys.executable, "sim.py", "--steps", "3"], cwd=tracked_repo, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES"))
    assert "gittrack.store.packs" in line.split()  # the run was recorded
    assert [m for m in HEAVY if m in line.split()] == []


def test_a_clean_run_of_known_code_imports_no_subprocess(tracked_repo: Path) -> None:
    """git cat-file is spawned without subprocess and the branch moves in-process, so a run of
    committed code whose keep-alive ref exists loads neither subprocess nor selectors."""
    text = (tracked_repo / "sim.py").read_text()
    (tracked_repo / "sim.py").write_text(
        text.replace(
            "import click\n",
            "import atexit, sys\n"
            "atexit.register(lambda: print('MODULES', *sorted(sys.modules), file=sys.stderr))\n"
            "import click\n",
            1,
        )
    )
    subprocess.run(["git", "commit", "-qam", "probe"], cwd=tracked_repo, check=True)
    _run(tracked_repo, "--steps", "1")  # makes the code's keep-alive ref (through git)
    done = subprocess.run(
        [sys.executable, "sim.py", "--steps", "2"], cwd=tracked_repo, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES")).split()
    assert "gittrack.store.packs" in line  # the run was recorded
    assert [m for m in ("subprocess", "selectors", "_posixsubprocess") if m in line] == []


@pytest.mark.slow
def test_small_packs_are_rolled_up_in_the_background(
    tracked_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITTRACK_GC_LOOSE", "100000")  # loose objects alone never trigger it
    monkeypatch.setenv("GITTRACK_GC_PACKS", "3")
    for seed in range(8):
        _run(tracked_repo, "--steps", str(seed))
    wait_for_housekeeping(tracked_repo)
    assert len(_packs(tracked_repo)) <= 4  # one a run (8) without the roll-up
    assert _loose(tracked_repo) == 0  # init's loose objects were rolled in too
    assert_fsck_clean_and_listed(tracked_repo, 8)


def _mktree(repo: Path, entries: dict[str, tuple[str, str]]) -> str:
    kinds = {"40000": "tree", "160000": "commit"}
    text = "".join(f"{m} {kinds.get(m, 'blob')} {s}\t{n}\n" for n, (m, s) in entries.items())
    return subprocess.run(
        ["git", "mktree", "--missing"], cwd=repo, input=text, capture_output=True, text=True
    ).stdout.strip()


def test_editing_a_big_tree_in_place_gives_the_tree_git_makes(repo: Path) -> None:
    import random

    from gittrack.store import trees

    rng = random.Random(17)

    def sha() -> str:
        return f"{rng.getrandbits(160):040x}"

    shard = {f"{rng.getrandbits(128):032x}": (trees.MODE_TREE, sha()) for _ in range(300)}
    mixed = {"README.md": (trees.MODE_BLOB, sha()), "runs": (trees.MODE_TREE, sha())}
    for entries in (shard, mixed):
        data = subprocess.run(
            ["git", "cat-file", "tree", _mktree(repo, entries)], cwd=repo, capture_output=True
        ).stdout
        assert trees.parse_tree(data) == entries
        names = sorted(entries)
        assert trees.find_entry(data, names[1]) == entries[names[1]]
        assert trees.find_entry(data, names[1][:2]) is None  # a name no entry has, any length
        changes: dict[str, trees.Entry] = {
            names[0]: None,  # the first goes
            names[-1]: (entries[names[-1]][0], sha()),  # the last changes
            f"{rng.getrandbits(128):032x}": (trees.MODE_TREE, sha()),  # a new one
            "0" * 32: (trees.MODE_TREE, sha()),  # a new first one
            "ffff": (trees.MODE_BLOB, sha()),  # breaks the uniform layout
        }
        expected = dict(entries)
        for name, entry in changes.items():
            if entry is None:
                expected.pop(name)
            else:
                expected[name] = entry
        spliced = trees.splice(data, changes)
        made = subprocess.run(
            ["git", "cat-file", "tree", _mktree(repo, expected)], cwd=repo, capture_output=True
        ).stdout
        assert spliced == made
        uniform = {n: e for n, e in changes.items() if n != "ffff"}
        del expected["ffff"]
        made = subprocess.run(
            ["git", "cat-file", "tree", _mktree(repo, expected)], cwd=repo, capture_output=True
        ).stdout
        assert trees.splice(data, uniform) == made  # in place, in git's order
        for name, entry in uniform.items():
            edited = trees.splice(data, {name: entry})
            assert trees.find_entry(edited, name) == entry
            assert trees.parse_tree(edited) == {
                **{n: e for n, e in entries.items() if n != name},
                **({name: entry} if entry else {}),
            }


def test_the_record_classes_compare_and_print_as_dataclasses_do() -> None:
    """Their == and repr() are written once (cheaper to import), with @dataclass's behaviour."""
    import dataclasses

    from gittrack.model.record import Code, CodeFile, Input, RunRecord

    for cls in (CodeFile, Code, Input, RunRecord):
        plain = dataclasses.make_dataclass(
            cls.__name__, [(f.name, f.type, f) for f in dataclasses.fields(cls)]
        )
        assert repr(cls(**_sample(cls))) == repr(plain(**_sample(cls)))
    record = RunRecord(id="a", params={"x": 1}, code=Code(files={"m.py": CodeFile("b1")}))
    same = RunRecord(id="a", params={"x": 1}, code=Code(files={"m.py": CodeFile("b1")}))
    assert record == same
    same.code.files["m.py"].dirty = True
    assert record != same
    one, other = float("nan"), float("nan")
    assert RunRecord(id="a", metrics={"m": one}) != RunRecord(id="a", metrics={"m": other})
    # the same object is equal inside the tuple @dataclass compares, NaN or not
    assert RunRecord(id="a", metrics={"m": one}) == RunRecord(id="a", metrics={"m": one})
    assert Input(run="r") != ("r", "", "", "") and Input(run="r") == Input(run="r")
    with pytest.raises(TypeError):
        hash(Input(run="r"))


def _sample(cls: type) -> dict[str, object]:
    import dataclasses

    return {
        f.name: f"v-{f.name}"
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    } | ({"dirty": True} if cls.__name__ in ("CodeFile", "Code") else {})


def test_a_big_object_goes_into_a_runs_pack_stored_and_git_reads_it(tracked_repo: Path) -> None:
    """A shard folder's tree of a long history is stored, not compressed (packs._level), a big
    log compressed as always: git and the in-process reader read both back as written, and
    the pack verifies."""
    from gittrack.store import packs

    repo = store.find_repo(tracked_repo)
    blob = store.ObjectWriter(repo).write("blob", b"one run.toml\n")
    big = b"".join(b"100644 %032x\0" % i + bytes.fromhex(blob) for i in range(2000))
    log = b"line of a simulation's output\n" * 2000
    assert len(big) > packs.STORE_ABOVE and len(log) > packs.STORE_ABOVE
    writer = store.ObjectWriter(repo, pack=True)
    tree = writer.write("tree", big)
    text = writer.write("blob", log)
    writer.sync()
    pack = next(p for p in _packs(tracked_repo) if tree in _objects_of(tracked_repo, p))
    assert len(big) < pack.stat().st_size < len(big) + len(log) // 10  # the log compressed
    for wanted, kind, data in ((tree, "tree", big), (text, "blob", log)):
        shown = subprocess.run(
            ["git", "cat-file", kind, wanted], cwd=tracked_repo, capture_output=True
        )
        assert shown.stdout == data
        assert repo.reader().read(wanted) == (wanted, kind, data)
    verify = subprocess.run(
        ["git", "verify-pack", str(pack.with_suffix(".idx"))], cwd=tracked_repo, capture_output=True
    )
    assert verify.returncode == 0, verify.stderr


def _objects_of(repo: Path, pack: Path) -> str:
    return subprocess.run(
        ["git", "verify-pack", "-v", str(pack.with_suffix(".idx"))],
        cwd=repo,
        capture_output=True,
        text=True,
    ).stdout
