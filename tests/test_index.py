"""The index: incremental sync, rebuilds (rewritten branch, deleted or corrupt file), notes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings, strategies as st
from lookup_support import die_holding_the_index, scan, with_other_ids, write_runs

from gittrack import store as gitstore
from gittrack.index.compiler import compile_where
from gittrack.index.db import Index
from gittrack.index.records import kv_rows
from gittrack.model.record import RunRecord, run_folder
from gittrack.model.schema import shallow_toml, too_deep
from gittrack.ops import tags as notes


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def open_index(repo: Path) -> Index:
    return Index(gitstore.find_repo(repo))


def rows(repo: Path, where: str = "") -> dict[str, int]:
    """{run name: its rid} for a query (a rebuilt row gets a new rid)."""
    ix = open_index(repo)
    sql, params = compile_where(where) if where else ("1", [])
    found = dict(ix.query(f"SELECT name, rid FROM runs WHERE {sql}", params))
    ix.close()
    return found


class Counter:
    """Counts calls of a gitstore reader while delegating to the real function."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> None:
        self.calls = 0
        real = getattr(module, name)

        def counted(*args: object, **kwargs: object) -> object:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)


def test_sync_is_incremental_and_free_when_up_to_date(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_runs(repo, scan(3))
    before = rows(repo)
    full = Counter(monkeypatch, gitstore, "list_run_ids")
    delta = Counter(monkeypatch, gitstore, "changed_runs")
    ix = open_index(repo)
    ix.sync()
    ix.sync()
    assert (full.calls, delta.calls) == (0, 0)  # up to date: nothing read but the two tips
    write_runs(repo, [{"id": "ffff" + "0" * 28, "name": "new", "params": {"temp": 5}}])
    after = rows(repo)
    assert (full.calls, delta.calls) == (0, 1)
    assert {k: after[k] for k in before} == before  # old rows untouched
    assert set(after) == {"scan-0", "scan-1", "scan-2", "new"}
    assert rows(repo, "params.temp = 5") == {"new": after["new"]}
    ix.close()


def test_rewritten_run_and_removed_run(repo: Path) -> None:
    ids = write_runs(repo, scan(3))
    write_runs(
        repo, [{"id": ids[1], "name": "renamed", "status": "failed", "params": {"temp": 999}}]
    )
    gitstore.remove_runs(gitstore.find_repo(repo), [ids[0]], "remove scan-0")
    assert set(rows(repo)) == {"renamed", "scan-2"}
    assert rows(repo, "params.temp = 200") == {}  # old values gone


def test_rewritten_branch_triggers_a_rebuild(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_runs(repo, scan(3))
    assert len(rows(repo)) == 3
    git(repo, "update-ref", "refs/heads/gittrack/runs", "gittrack/runs~2")  # drop two runs
    write_runs(repo, [{"id": "eeee" + "0" * 28, "name": "other"}])
    full = Counter(monkeypatch, gitstore, "list_run_ids")
    assert set(rows(repo)) == {"scan-0", "other"}
    assert full.calls == 1


@pytest.mark.parametrize("damage", ["delete", "garbage", "truncate", "old-version", "drop-table"])
def test_damaged_index_is_rebuilt_silently(repo: Path, damage: str) -> None:
    write_runs(repo, scan(4))
    assert len(rows(repo)) == 4
    path = gitstore.find_repo(repo).state_dir / "index.sqlite"
    if damage == "delete":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"this is not a database" * 500)
    elif damage == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    else:
        db = sqlite3.connect(path)
        if damage == "old-version":
            db.execute("UPDATE meta SET value = '0' WHERE key = 'version'")
        else:
            db.execute("DROP TABLE run_vals")
        db.commit()
        db.close()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    assert set(rows(repo, "params.temp >= 300")) == {"scan-2", "scan-3"}


def test_a_deleted_index_is_not_rebuilt_over_the_journal_it_left(repo: Path) -> None:
    """A process that died holding the index leaves its -wal and -shm beside it; once the
    file is deleted, SQLite would replay that stale journal onto the new file (CI listed
    '0 of 2101 runs'): a build starts from the branch alone."""
    write_runs(repo, scan(4))
    assert len(rows(repo)) == 4
    write_runs(repo, with_other_ids(scan(40))[4:])
    # an incremental sync leaves its pages in the journal; the process dies without closing it
    path = die_holding_the_index(repo)
    path.unlink()
    write_runs(repo, [{"name": "after", "id": "ffff" + "0a1b2c3d" * 3 + "beef"}])
    found = rows(repo)
    assert len(found) == 41 and "after" in found
    assert set(rows(repo, "params.temp >= 3900")) == {"scan-38", "scan-39"}


def test_unreadable_record_is_indexed_as_a_problem(repo: Path) -> None:
    r = gitstore.find_repo(repo)
    write_runs(repo, scan(1))
    writer = gitstore.ObjectWriter(r)
    blob = writer.write("blob", b"schema = 1\nid = [broken")
    gitstore.commit_to_branch(
        r, "bad run", {"runs/ba/bad0" + "0" * 28 + "/run.toml": ("100644", blob)}
    )
    ix = open_index(repo)
    row = ix.get("bad0" + "0" * 28)
    assert row is not None and row["record"] is None and "invalid TOML" in row["problem"]
    assert ix.count() == 2
    ix.close()


def test_concurrent_syncs_agree(repo: Path) -> None:
    write_runs(repo, scan(20))
    errors: list[BaseException] = []
    counts: list[int] = []

    def work() -> None:
        try:
            ix = open_index(repo)
            counts.append(ix.count())
            ix.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and counts == [20] * 4


def test_kv_rows_flatten_and_type() -> None:
    record = {
        "params": {"a": 1, "b": "2.5", "c": "x", "d": True, "e": [1, "y"], "f": {"g": 0.5}},
        "metrics": {"nan": float("nan")},
        "env": {"host": "n1"},
    }
    assert list(kv_rows(record)) == [
        ("params", "a", 1.0, "1"),
        ("params", "b", 2.5, "2.5"),
        ("params", "c", None, "x"),
        ("params", "d", 1.0, "true"),
        ("params", "e", 1.0, "1"),
        ("params", "e", None, "y"),
        ("params", "f.g", 0.5, "0.5"),
        ("metrics", "nan", None, "nan"),
        ("env", "host", None, "n1"),
    ]


# -- notes ----------------------------------------------------------------------------------


def test_tags_and_notes_are_git_notes_seen_by_the_index(repo: Path) -> None:
    ids = write_runs(repo, [*scan(2)])
    r = gitstore.find_repo(repo)
    assert notes.add_tags(r, ids[1], ["reference", "paper"]) == (ids[1], ["paper", "reference"])
    notes.set_note(r, ids[1], "checked by hand")
    commit = open_index(repo).get(ids[1])["commit"]  # type: ignore[index]
    assert git(repo, "notes", "--ref=gittrack", "show", commit).splitlines() == [
        'note: "checked by hand"',
        f"run: {ids[1]}",
        "tag: paper",
        "tag: reference",
    ]
    assert rows(repo, "tags = 'reference'") == {"scan-1": 2}
    record = open_index(repo).get(ids[1])["record"]  # type: ignore[index]
    assert (record["tags"], record["note"]) == (["paper", "reference"], "checked by hand")
    # a tag given when the run was recorded can be removed, and comes back when re-added
    assert notes.remove_tags(r, ids[0], ["baseline"]) == (ids[0], [])
    assert rows(repo, "tags = 'baseline'") == {}
    assert notes.add_tags(r, ids[0], ["baseline"]) == (ids[0], ["baseline"])
    assert len(git(repo, "notes", "--ref=gittrack", "list").splitlines()) == 1  # none on ids[0]


def test_notes_written_by_plain_git_and_removed(repo: Path) -> None:
    ids = write_runs(repo, scan(2))
    commit = open_index(repo).get(ids[0])["commit"]  # type: ignore[index]
    git(repo, "notes", "--ref=gittrack", "add", "-m", "written with git notes", commit)
    assert open_index(repo).get(ids[0])["record"]["note"] == "written with git notes"  # type: ignore[index]
    git(repo, "notes", "--ref=gittrack", "add", "-f", "-m", f"run: {ids[0]}\ntag: by-git", commit)
    assert rows(repo, "tags = 'by-git'") == {"scan-0": 1}
    git(repo, "notes", "--ref=gittrack", "remove", commit)
    record = open_index(repo).get(ids[0])["record"]  # type: ignore[index]
    assert record["tags"] == ["baseline"] and "note" not in record
    git(repo, "update-ref", "-d", "refs/notes/gittrack")
    assert rows(repo, "tags like '%'") == {"scan-0": 1}


def test_tags_follow_a_run_rewritten_to_a_new_commit(repo: Path) -> None:
    ids = write_runs(repo, scan(1))
    r = gitstore.find_repo(repo)
    notes.add_tags(r, ids[0], ["keep"])
    old_commit = open_index(repo).get(ids[0])["commit"]  # type: ignore[index]
    write_runs(repo, [{"id": ids[0], "name": "scan-0", "status": "died"}])
    record = open_index(repo).get(ids[0])["record"]  # type: ignore[index]
    assert record["tags"] == ["keep"]  # the note names its run
    notes.add_tags(r, ids[0], ["more"])  # moves the note to the run's current commit
    new_commit = open_index(repo).get(ids[0])["commit"]  # type: ignore[index]
    assert git(repo, "notes", "--ref=gittrack", "list").split()[1::2] == [new_commit]
    assert gitstore.read_note(r, old_commit) is None
    assert open_index(repo).get(ids[0])["record"]["tags"] == ["keep", "more"]  # type: ignore[index]


def test_notes_merged_by_cat_sort_uniq_keep_both_sides(repo: Path) -> None:
    """What `gittrack pull` does with diverged notes: lines of both sides, removals win."""
    from gittrack.model.notes import effective, parse_note

    ours = parse_note(b"run: x\ntag: a\ntag: b\n")
    theirs = parse_note(b'run: x\ntag: c\nuntag: b\nnote: "theirs"\n')
    merged = parse_note(
        b"".join(sorted(set((ours.to_bytes() + theirs.to_bytes()).splitlines(keepends=True))))
    )
    assert effective(["b"], "", [merged]) == (["a", "c"], "theirs")


def test_diverged_notes_merged_by_git_union_their_tags(repo: Path) -> None:
    """`gittrack pull` merges notes with `git notes merge -s cat_sort_uniq`: both sides' tags."""
    ids = write_runs(repo, scan(1))
    r = gitstore.find_repo(repo)
    notes.add_tags(r, ids[0], ["a"])
    git(repo, "update-ref", "refs/notes/theirs", "refs/notes/gittrack")
    notes.add_tags(r, ids[0], ["b"])
    commit = open_index(repo).get(ids[0])["commit"]  # type: ignore[index]
    git(
        repo,
        "notes",
        "--ref=theirs",
        "add",
        "-f",
        "-m",
        f"run: {ids[0]}\ntag: a\ntag: c\nuntag: baseline",
        commit,
    )
    git(repo, "notes", "--ref=gittrack", "merge", "-q", "-s", "cat_sort_uniq", "refs/notes/theirs")
    assert open_index(repo).get(ids[0])["record"]["tags"] == ["a", "b", "c"]  # type: ignore[index]


# -- the first build and start-up -----------------------------------------------------------


def test_a_commit_recording_several_runs_is_the_commit_of_each(repo: Path) -> None:
    """Every Run-Id trailer of a commit names a run it recorded (a first build reads them all)."""
    write_runs(repo, scan(1))
    ids = ["abcd" + "0" * 28, "abce" + "0" * 28]
    files = b""
    for run_id in ids:
        body = RunRecord(id=run_id, command="sim.py", status="completed").to_toml().encode()
        path = f"{run_folder(run_id)}/run.toml"
        files += f"M 100644 inline {path}\ndata {len(body)}\n".encode() + body + b"\n"
    message = f"two runs\n\nRun-Id: {ids[0]}\nRun-Id: {ids[1]}\n".encode()
    stream = (
        b"commit refs/heads/gittrack/runs\ncommitter Ada <ada@example.org> 1714564800 +0000\n"
        + f"data {len(message)}\n".encode()
        + message
        + f"from {git(repo, 'rev-parse', 'gittrack/runs')}\n".encode()
        + files
        + b"done\n"
    )
    subprocess.run(["git", "fast-import", "--quiet", "--done"], cwd=repo, input=stream, check=True)
    commit = git(repo, "rev-parse", "gittrack/runs")
    (gitstore.find_repo(repo).state_dir / "index.sqlite").unlink(missing_ok=True)
    ix = open_index(repo)
    assert [ix.get(i)["commit"] for i in ids] == [commit, commit]  # type: ignore[index]
    ix.close()


def test_listing_loads_neither_the_recording_machinery_nor_the_index_builder() -> None:
    """`gittrack ls` starts fast: the CLI imports only what reading the index needs."""
    heavy = ("gittrack.recording.session", "gittrack.recording.command", "gittrack.index.build")
    code = (
        "import sys, gittrack, gittrack.cli, gittrack.cli.query, gittrack.library.listing\n"
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_query_to_a_pipe_loads_no_module_it_does_not_use(repo: Path) -> None:
    """`gittrack ls --where Q --limit 20 > file` and `gittrack show ID > file` load neither the
    terminal's helpers (shutil with lzma and bz2), the CSV module, the suggestions (difflib)
    nor the traceback printer."""
    write_runs(repo, scan(3))
    unused = ("shutil", "lzma", "bz2", "csv", "difflib", "traceback")
    query = "params.temp >= 200 and status = 'completed'"
    shown = {}
    for args in (["ls", "--where", query, "--limit", "2"], ["show", "scan-1"]):
        code = (
            "import sys\n"
            "from gittrack.cli import cli\n"
            f"cli({args!r}, standalone_mode=False)\n"
            f"print(sorted(m for m in sys.modules if m in {unused!r}))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
        )
        *shown[args[0]], loaded = out.stdout.strip().splitlines()
        assert loaded == "[]", args
    assert len(shown["ls"]) == 4  # the header, two runs and the footer
    assert shown["show"][0].startswith("run ") and "  name:        scan-1" in shown["show"]


def test_a_sync_and_a_full_build_agree_on_folders_without_run_toml(repo: Path) -> None:
    """A folder without run.toml is listed as unreadable by a sync as by a full build: one
    added so, one whose run.toml was removed while its other files stay, one whose run.toml
    became a symbolic link (not a file), and one left bare then emptied (gone from both)."""
    ids = write_runs(repo, scan(3))
    ix = open_index(repo)
    assert ix.count() == 3  # synced: what follows reaches the index incrementally
    r = gitstore.find_repo(repo)
    writer = gitstore.ObjectWriter(r)
    blob = writer.write("blob", b"hello\n")
    bare, emptied = "ee00" + "0" * 28, "ef00" + "0" * 28
    gitstore.commit_to_branch(
        r,
        "by hand",
        {
            f"runs/ee/{bare}/notes.txt": ("100644", blob),
            f"runs/ef/{emptied}/notes.txt": ("100644", blob),
            f"{run_folder(ids[0])}/stdout.log": ("100644", blob),
        },
    )
    ix.sync()
    gitstore.commit_to_branch(
        r,
        "run.toml removed",
        {
            f"{run_folder(ids[0])}/run.toml": None,
            f"runs/ef/{emptied}/notes.txt": None,
            f"{run_folder(ids[2])}/run.toml": ("120000", writer.write("blob", b"x.toml")),
        },
    )
    r.close()
    ix.sync()

    def listed(index: Index) -> list[tuple[str, str, str | None]]:
        return sorted(index.db.execute("SELECT id, status, problem FROM run_fields").fetchall())

    synced = listed(ix)
    ix.close()
    path = gitstore.find_repo(repo).state_dir / "index.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    ix = open_index(repo)
    ix.sync()
    built = listed(ix)
    ix.close()
    assert synced == built
    assert {row[0]: row[1] for row in built} == {
        ids[0]: "unreadable",
        ids[1]: "completed",
        ids[2]: "unreadable",
        bare: "unreadable",
    }


TOML_KEYS = st.sampled_from(["a", "b", "c.d", "x y", "é"])
TOML_VALUES = st.recursive(
    st.one_of(st.integers(), st.floats(), st.text(max_size=5), st.booleans()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TOML_KEYS, inner, max_size=3),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(TOML_KEYS, TOML_VALUES, max_size=4), st.integers(1, 8))
def test_a_record_counted_shallow_never_nests_too_deep(data: dict[str, Any], limit: int) -> None:
    """The count that spares a build the walk of each record's nesting is a bound: tables,
    arrays of tables, inline tables and dotted keys each cost one character a level."""
    text = tomli_w.dumps(data).encode()
    if shallow_toml(text, limit):
        assert not too_deep(tomllib.loads(text.decode()), limit)


@pytest.mark.parametrize(
    "text",
    [
        "[[a]]\n[[a.b]]\n[[a.b.c]]\nx = 1\n",
        "[a.b.c]\nd.e.f = [[{g = [1]}]]\n",
        "a = [[[[[[[[1]]]]]]]]\n",
        "[[a]]\n[a.b]\n[[a.b.c]]\n[[a.b.c.d]]\n",
    ],
)
def test_nesting_by_headers_and_inline_tables_is_counted(text: str) -> None:
    data = tomllib.loads(text)
    for limit in range(1, 10):
        if shallow_toml(text.encode(), limit):
            assert not too_deep(data, limit), limit


def test_names_near_a_typo_stay_few_and_hold_the_likely_ones(tracked_repo: Path) -> None:
    """A reference that matched nothing is compared with a bounded set of names however many
    runs there are (all of them only while they are few), which still holds the likely ones."""
    from gittrack.index.db import Index

    repo = gitstore.find_repo(tracked_repo)
    gitstore.import_runs(
        repo,
        (
            RunRecord(id=f"{i + 1:032x}", command="sim.py", name=f"scan-{i}", status="completed")
            for i in range(3000)
        ),
    )
    index = Index(repo)
    assert len(index.names_near("scam-5")) == 3000  # few: every name
    for typo, meant in [
        ("scam-5", "scan-5"),
        ("scan5", "scan-5"),
        ("xcan-77", "scan-77"),
        ("scann-2999", "scan-2999"),
        ("scan-1234x", "scan-1234"),
    ]:
        near = index.names_near(typo, limit=100, every=500)
        assert meant in near, typo
        assert len(near) <= 2 * 100 + 10, typo
