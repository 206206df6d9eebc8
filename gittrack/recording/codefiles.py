"""The code a run executes: its script, the modules it imports from the repository and the files
its command declares, each with its git blob id, and their snapshot when one differs from HEAD.

The script's own imports happen when it is loaded, so most modules are known when the run
starts; modules imported inside the command are collected from `sys.modules` when it ends.
Files are hashed from their content (git's blob ids, computed in-process): no stat data is
trusted and no git process is started unless the run is dirty.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .. import store
from .._ids import short
from ..errors import UsageError
from ..model.record import Code, CodeFile
from ..store import project

SNAPSHOT_MAX_BYTES = 1 << 20  # default size limit of a file in a code snapshot
SKIP = (".git/", f"{project.WORK_DIR}/")  # never code: git's data and gittrack's output folder
LOADED_SCRIPT = "__gittrack_script_"  # scripts loaded by `gittrack run` (see loader.py)
INSTALLED = ("/site-packages", "/dist-packages")  # a virtual environment inside the repository


def settings(repo: store.Repo) -> tuple[list[str], int]:
    """The project's declared code patterns and the snapshot size limit (store/config.py)."""
    from ..store.config import settings as project_settings

    found = project_settings(repo)
    limit = found.snapshot_max_bytes
    return list(found.code or []), SNAPSHOT_MAX_BYTES if limit is None else limit


class CodeFiles:
    """The repository's source files one run executes, hashed as they are found."""

    def __init__(
        self,
        repo: store.Repo,
        base: store.Head,
        script: Path | None,
        declared: Sequence[str],
        *,
        main_is_code: bool = True,
    ) -> None:
        """`main_is_code`: whether `__main__` is code of the run (`python sim.py`), or a driver
        that started it (`gittrack run`, a sweep's worker, an Experiment script)."""
        self.repo = repo
        self._main_is_code = main_is_code
        self.base = base  # HEAD when the run started
        patterns, self.limit = settings(repo)
        self._prefix = str(repo.root) + os.sep
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
        self._outside = tuple(p + os.sep for p in prefixes if p.startswith(self._prefix))
        self.files: dict[str, CodeFile] = {}
        self._changed: dict[str, bytes] = {}  # content (as it ran) of the files unlike HEAD's
        self._too_big: dict[str, int] = {}  # changed files over the size limit, by size
        self._now: dict[str, str | None] = {}  # blob ids of other files, read for reuse checks
        self._snapshot: store.Snapshot | None = None
        self._built: tuple[frozenset[str], str, str] | None = None
        self.unknown: dict[str, str] = {}  # modules whose file could not be told, and why
        self.declared = sorted(self._glob([*patterns, *declared]))
        first = set(self.declared) | self.imported()
        if script is not None and (rel := self.relative(str(script.resolve()))):
            first.add(rel)
        self.add(first)

    # -- finding files ------------------------------------------------------------------

    def relative(self, filename: str) -> str | None:
        """`filename` relative to the repository root, or None when it is no code of a run."""
        if not os.path.isabs(filename):
            filename = os.path.abspath(filename)
        if not filename.startswith(self._prefix) or filename.startswith(self._outside):
            return None
        rel = filename[len(self._prefix) :]
        if os.sep != "/":
            rel = rel.replace(os.sep, "/")
        if rel.startswith(SKIP) or any(f"{d}/" in f"/{rel}" for d in INSTALLED):
            return None
        return rel

    def imported(self) -> set[str]:
        """The repository's files among the modules imported so far in this process."""
        found: set[str] = set()
        # a copy, not a walk: list(sys.modules.items()) raises "dictionary changed size during
        # iteration" when a collection in the middle of it runs a finalizer and the GIL passes
        # to a thread that imports (the environment scan, a user's thread)
        for name, module in sys.modules.copy().items():
            try:
                filename = getattr(module, "__file__", None)
            except Exception as exc:  # whether it is code of the run cannot be told: on record
                self.unknown.setdefault(name, f"{type(exc).__name__}: {exc}")
                continue
            if not isinstance(filename, str) or name.startswith(LOADED_SCRIPT):
                continue  # scripts loaded for other runs (the run's own is its script)
            if name == "__main__" and not self._main_is_code:
                continue
            rel = self.relative(filename)
            if rel is not None:
                found.add(rel)
        return found

    def _glob(self, patterns: Iterable[str]) -> set[str]:
        found: set[str] = set()
        root = self.repo.root
        for pattern in patterns:
            if os.path.isabs(pattern) or ".." in Path(pattern).parts:
                raise UsageError(
                    f'The code pattern "{pattern}" leaves the repository; give a pattern '
                    'relative to its root, e.g. "model/*.yaml".'
                )
            for path in root.glob(pattern):
                if path.is_file() and (rel := self.relative(str(path))):
                    found.add(rel)
        return found

    def add(self, paths: Iterable[str]) -> None:
        """Hash the files of `paths` not seen yet and compare them with HEAD."""
        contents: dict[str, bytes] = {}
        for path in sorted(set(paths) - set(self.files)):
            try:
                contents[path] = (self.repo.root / path).read_bytes()
            except OSError:
                continue  # gone (or never a file): nothing to identify
        if not contents:
            return
        in_head = store.tree_blobs(self.repo, self.base.tree, contents)
        for path, data in contents.items():
            blob = store.blob_id(data)
            dirty = path not in in_head or in_head[path][1] != blob
            self.files[path] = CodeFile(blob=blob, dirty=dirty)
            if dirty and len(data) > self.limit:
                self._too_big[path] = len(data)
            elif dirty:
                self._changed[path] = data

    def collect(self) -> None:
        """At the end of the run: add the modules it imported while it ran."""
        self.add(self.imported())

    # -- reuse ----------------------------------------------------------------------------

    def blob_now(self, path: str) -> str | None:
        """The blob id of `path` as it is now (for this run's files: as it ran); None if gone."""
        if path in self.files:
            return self.files[path].blob
        if path not in self._now:
            try:
                self._now[path] = store.blob_id((self.repo.root / path).read_bytes())
            except OSError:
                self._now[path] = None
        return self._now[path]

    def unchanged(self, files: Mapping[str, CodeFile]) -> bool:
        """Whether an earlier run with these code files ran the code this run would run.

        Every file it executed has the same blob id now, and every file this run declares
        (`code=` patterns) was one of them.
        """
        if not all(self.blob_now(p) == f.blob for p, f in files.items()):
            return False
        return all(p in files for p in self.declared)

    # -- the record -------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return any(f.dirty for f in self.files.values())

    def code(self, run_id: str, script: Path | None) -> Code:
        """The `[code]` table: HEAD when no code file changed, else a snapshot commit."""
        commit, tree = self.base.commit, self.base.tree
        if self.dirty:
            if self._snapshot is None:
                skip = (*SKIP, *self._outside_rel())
                self._snapshot = store.Snapshot(self.repo, self.base, self.limit, skip)
            key = frozenset(self._changed)
            if self._built is None or self._built[0] != key:
                commit, tree = self._snapshot.build(run_id, self._changed)
                self._built = (key, commit, tree)
            commit, tree = self._built[1], self._built[2]
        rel, digest = store.script_identity(self.repo, script)
        return Code(
            commit=commit,
            tree=tree,
            hash=digest,
            dirty=self.dirty,
            script=rel,
            head=self.base.commit,
            branch=self.base.branch,
            detached=self.base.detached,
            shallow=self.repo.shallow,
            files=dict(sorted(self.files.items())),
            omitted=self.omitted,
            incomplete=self.incomplete,
        )

    @property
    def incomplete(self) -> str:
        """Why `files` may lack code the run executed ("" when they are all known)."""
        if not self.unknown:
            return ""
        names = sorted(self.unknown)
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return f"the file of module {shown} could not be told ({self.unknown[names[0]]})"

    def _outside_rel(self) -> list[str]:
        return [p[len(self._prefix) :].replace(os.sep, "/") for p in self._outside]

    @property
    def omitted(self) -> list[str]:
        """Changed files the snapshot left out, being over the size limit."""
        left = dict(self._too_big)
        if self._snapshot is not None:
            left.update(self._snapshot.omitted)
        return sorted(left)

    def omitted_line(self, run_id: str) -> str:
        """One line saying what the snapshot left out and how to include it ("" if nothing)."""
        sizes = dict(self._too_big)
        if self._snapshot is not None:
            sizes.update(self._snapshot.omitted)
        if not sizes:
            return ""
        shown = ", ".join(f"{p} ({_size(n)})" for p, n in sorted(sizes.items())[:5])
        more = f" and {len(sizes) - 5} more" if len(sizes) > 5 else ""
        return (
            f"Warning: the code snapshot of run {short(run_id)} leaves out changed files over "
            f"{_size(self.limit)}: {shown}{more}; commit them, or raise [tool.gittrack] "
            "snapshot_max_bytes in pyproject.toml (or GITTRACK_SNAPSHOT_MAX_BYTES) to include them."
        )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"
