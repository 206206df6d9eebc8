"""Objects and refs read in-process answer exactly what `git cat-file` answers, or defer to it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git

from gittrack import store
from gittrack.store.localread import MISSING, LocalObjects


def _history(repo: Path, commits: int = 30) -> None:
    """Files edited a little at each commit: git's packs then hold deltas of them."""
    body = [f"line {i} of a model input with some words to compress\n" for i in range(300)]
    for n in range(commits):
        body[n * 7 % 300] = f"changed at commit {n}\n"
        (repo / "model.txt").write_text("".join(body))
        (repo / f"run{n % 4}.py").write_text(f"x = {n}\n" * (n + 1))
        git(repo, "add", ".")
        git(repo, "commit", "-qm", f"commit {n}")


def _git_objects(repo: Path) -> dict[str, tuple[str, bytes]]:
    listing = git(repo, "cat-file", "--batch-all-objects", "--batch-check")
    shas = [line.split()[0] for line in listing.splitlines()]
    out = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=repo,
        input="".join(s + "\n" for s in shas).encode(),
        capture_output=True,
        check=True,
    ).stdout
    found, at = {}, 0
    for sha in shas:
        end = out.index(b"\n", at)
        _, kind, size = out[at:end].decode().split()
        found[sha] = (kind, out[end + 1 : end + 1 + int(size)])
        at = end + 2 + int(size)
    return found


def _local(repo: Path) -> LocalObjects:
    return LocalObjects(str(repo / ".git"), str(repo / ".git"))


def _deltas(repo: Path) -> int:
    pack = next((repo / ".git" / "objects" / "pack").glob("*.idx"))
    verify = git(repo, "verify-pack", "-v", str(pack))
    return sum(1 for line in verify.splitlines() if len(line.split()) == 7)


@pytest.mark.parametrize("layout", ["loose", "gc", "ref-deltas"])
def test_every_object_reads_as_git_reads_it(repo: Path, layout: str) -> None:
    _history(repo)
    if layout == "gc":
        git(repo, "gc", "-q", "--aggressive")  # deltas by offset
        assert _deltas(repo) > 10
    elif layout == "ref-deltas":  # without --delta-base-offset, deltas name their base
        objects = git(repo, "rev-list", "--objects", "--all")
        pack = repo / ".git" / "objects" / "pack"
        pack.mkdir(exist_ok=True)
        subprocess.run(
            ["git", "pack-objects", "-q", "--window=50", str(pack / "pack")],
            cwd=repo,
            input=objects.encode(),
            capture_output=True,
            check=True,
        )
        git(repo, "prune-packed")
        assert _deltas(repo) > 10
    expected = _git_objects(repo)
    local = _local(repo)
    for sha, (kind, data) in expected.items():
        assert local.read(sha) == (sha, kind, data)
    # paths in a commit's tree, as `git cat-file --batch` answers "<rev>:<path>"
    for rev in ("HEAD", "HEAD~3", git(repo, "rev-parse", "HEAD~7")):
        commit = git(repo, "rev-parse", rev)
        for line in git(repo, "ls-tree", "-r", "-t", commit).splitlines():
            meta, path = line.split("\t")
            sha = meta.split()[2]
            name = rev if rev != "HEAD~3" else commit  # HEAD~3 itself is git's to read
            assert local.read(f"{name}:{path}") == (sha, *expected[sha])
            size = len(expected[sha][1])
            assert local.read(f"{name}:{path}", limit=size) == (sha, *expected[sha])
            if size:
                assert local.read(f"{name}:{path}", limit=size - 1) == (sha, expected[sha][0], size)
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    assert local.read("HEAD:") == (tree, "tree", expected[tree][1])
    for missing in ("HEAD:nothing", "HEAD:model.txt/inside", "refs/heads/main:run9.py"):
        assert local.read(missing) is MISSING
    for odd in ("HEAD:./model.txt", "HEAD:a//b", "HEAD~1:model.txt"):
        assert local.read(odd) is None  # git's to read


def test_refs_read_as_git_resolves_them(repo: Path) -> None:
    _history(repo, 3)
    local = _local(repo)
    head = git(repo, "rev-parse", "HEAD")
    assert local.read("HEAD")[0] == head  # type: ignore[index]
    assert local.read("refs/heads/main")[0] == head  # type: ignore[index]
    git(repo, "branch", "other", "HEAD~1")
    git(repo, "pack-refs", "--all")  # in packed-refs only now
    assert not (repo / ".git" / "refs" / "heads" / "other").exists()
    assert local.read("refs/heads/other")[0] == git(repo, "rev-parse", "other")  # type: ignore[index]
    assert local.read("HEAD")[0] == head  # type: ignore[index]
    git(repo, "checkout", "-q", "--detach", "HEAD~2")
    assert local.read("HEAD")[0] == git(repo, "rev-parse", "HEAD")  # type: ignore[index]
    for rev in ("HEAD~1", "main", "refs/heads/nothing", "refs/../HEAD", head[:12]):
        assert local.read(rev) is None  # a revision expression or nothing there: git decides


def test_damage_and_replace_refs_defer_to_git(repo: Path) -> None:
    _history(repo, 3)
    head = git(repo, "rev-parse", "HEAD")
    blob = git(repo, "rev-parse", "HEAD:model.txt")
    loose = repo / ".git" / "objects" / blob[:2] / blob[2:]
    data = loose.read_bytes()
    loose.chmod(0o644)
    import zlib

    loose.write_bytes(zlib.compress(zlib.decompress(data).replace(b"line", b"LINE", 1)))
    assert _local(repo).read(blob) is None  # its content no longer hashes to its id
    loose.write_bytes(data[: len(data) // 2])
    assert _local(repo).read(blob) is None  # truncated
    loose.write_bytes(data)
    git(repo, "gc", "-q")
    pack = next((repo / ".git" / "objects" / "pack").glob("*.pack"))
    pack.chmod(0o644)
    whole = pack.read_bytes()
    pack.write_bytes(whole[: len(whole) // 3])
    assert _local(repo).read(head) is None or _local(repo).read(blob) is None
    pack.write_bytes(whole)
    assert _local(repo).read(head) is not None
    git(repo, "replace", head, git(repo, "rev-parse", "HEAD~1"))
    assert _local(repo).read(head) is None  # cat-file honours the replacement


def test_a_clean_run_starts_no_git_process(tracked_repo: Path, tmp_path: Path) -> None:
    real = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    log = tmp_path / "git.log"
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "git").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    (tmp_path / "bin" / "git").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}

    def sim(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "sim.py", *args], cwd=tracked_repo, capture_output=True, env=env
        )
        assert done.returncode == 0, done.stderr

    sim("--steps", "1")
    log.write_text("")
    sim("--steps", "2")
    assert log.read_text() == ""
    sim("--steps", "2")  # reused: the earlier run's record is read to compare its code
    assert log.read_text() == ""
    repo = store.find_repo(tracked_repo)
    assert len(store.list_run_ids(repo)) == 2
    git(tracked_repo, "fsck", "--strict")


def test_ref_names_sent_to_git_are_pinned_to_what_their_files_say_now(repo: Path) -> None:
    """Whatever is asked of the long-lived `git cat-file` names the commit a ref holds now (its
    own copy of packed-refs may lag: test_branch_tip.py), also when git reads the objects."""
    _history(repo, 2)
    head = git(repo, "rev-parse", "HEAD")
    local = _local(repo)
    assert local.pin("refs/heads/main") == head
    assert local.pin("refs/heads/main:model.txt") == f"{head}:model.txt"
    git(repo, "pack-refs", "--all")
    known: dict[str, str] = {}
    assert local.pin("refs/heads/main:run0.py", known) == f"{head}:run0.py"
    assert known == {"refs/heads/main": head}
    for other in ("HEAD~1", "refs/heads/main~1", "refs/heads/none:x", head, "main"):
        assert local.pin(other) == other  # git's to resolve
    git(repo, "replace", head, git(repo, "rev-parse", "HEAD~1"))
    replaced = _local(repo)
    assert replaced.read(head) is None  # objects: git's (it honours the replacement)
    assert replaced.pin("refs/heads/main") == head  # refs: still read from their files


def test_a_reader_reads_each_commit_and_tree_from_the_files_once(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One command walks the same tip commit and trees again and again (`show` asked for 6
    objects 23 times): a reader keeps those it has checked, within SEEN_BYTES."""
    from gittrack.store import localread

    _history(repo, 6)
    expected = _git_objects(repo)
    local = _local(repo)
    reads: list[str] = []
    real = LocalObjects._object

    def counted(self: LocalObjects, sha: str, depth: int, limit: int | None = None) -> object:
        if depth == 0:
            reads.append(sha)
        return real(self, sha, depth, limit)

    monkeypatch.setattr(LocalObjects, "_object", counted)
    head = git(repo, "rev-parse", "HEAD")
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    for _ in range(5):
        found = local.read("HEAD:model.txt")
        assert isinstance(found, tuple) and found[2] == expected[found[0]][1]
        assert local.read(head) == (head, "commit", expected[head][1])
    assert reads.count(head) == 1 and reads.count(tree) == 1
    assert reads.count(git(repo, "rev-parse", "HEAD:model.txt")) == 5  # blobs are not kept
    assert local.read(head, limit=10) == (head, "commit", len(expected[head][1]))

    monkeypatch.setattr(localread, "SEEN_BYTES", 400)
    small = _local(repo)
    for sha, (kind, data) in expected.items():
        assert small.read(sha) == (sha, kind, data)
        assert small._seen_bytes <= 400
