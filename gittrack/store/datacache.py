"""The DVC cache of a repository: adding outputs, checking and placing them back, cleaning.

Files take the fast way of `localobjects.py` (no DVC import); folders are dvc-data trees (a
`.dir` listing plus its files). The layout is DVC 3's `files/md5/<2>/<30>`, so the real `dvc`
CLI reads the cache. `dataremote.py` adds the remote side on top of this class.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from .. import store
from ..errors import FULL_ERRNOS, OutputError, StorageFull
from ..model.schema import safe_path
from .dvcconfig import HASH, LAYOUT, cache_dir, is_local, local_path, remote_url
from .localobjects import PREPUSH_MIN_BYTES, Prepush, add_object, object_path, reflink
from .safefs import (
    CHUNK,
    check_within,
    folder_files,
    hash_file,
    link_target,
    same_file,
)


@dataclass
class Stored:
    """One object added to the cache: a file, or a folder (md5 ending in `.dir`)."""

    md5: str
    size: int
    nfiles: int = 0

    @property
    def isdir(self) -> bool:
        return self.md5.endswith(".dir")


def pointer_file(path: str, stored: Stored) -> bytes:
    """A DVC pointer file (`.dvc`) for one output; `path` is relative to the pointer's folder."""
    lines = ["outs:", f"- md5: {stored.md5}", f"  size: {stored.size}"]
    if stored.isdir:
        lines.append(f"  nfiles: {stored.nfiles}")
    lines += ["  hash: md5", f"  path: {json.dumps(path)}", ""]
    return "\n".join(lines).encode()


def _hash_info(oid: str) -> Any:
    from dvc_data.hashfile.hash_info import HashInfo

    return HashInfo(HASH, oid)


class DataCache:
    """The repository's DVC cache (a dvc-data object database opened on first need)."""

    def __init__(self, repo: store.Repo) -> None:
        self.repo = repo
        self.cache_root = cache_dir(repo).joinpath(*LAYOUT)
        self._remote: Any = None
        self.url = remote_url(repo)

    @cached_property
    def cache(self) -> Any:
        """The cache as a dvc-data object database (imports DVC: ~0.5 s)."""
        from dvc_data.hashfile.db.local import LocalHashFileDB

        return LocalHashFileDB(self.localfs, str(self.cache_root))

    @cached_property
    def localfs(self) -> Any:
        from dvc_objects.fs.local import localfs

        return localfs

    def local_remote_root(self) -> Path | None:
        """The object folder of a local-folder remote that exists (None for cloud remotes)."""
        if not self.url or not is_local(self.url):
            return None
        root = Path(local_path(self.url))
        return root.joinpath(*LAYOUT) if root.is_dir() else None

    # -- cache ----------------------------------------------------------------------------

    def add(
        self,
        path: Path,
        *,
        link: bool,
        md5: str = "",
        size: int = -1,
        progress: Callable[[int], None] | None = None,
        within: Path | None = None,
    ) -> Stored:
        """Put a file or folder into the cache (hashing it unless `md5` is known).

        A large file bound for a local-folder remote is copied there while it is hashed
        (`_Prepush`), so storing costs the longer of the two rather than their sum. A symlink
        is stored as the content it points to when that lies inside the repository or
        `within` (the run's output folder), and refused (OutputError) otherwise; its target
        is copied, never hard-linked or made read-only.
        """
        prepush = None
        within = within if within is not None else path.parent
        try:
            source = path
            if path.is_symlink():
                source, link, md5 = link_target(path, within, self.repo.root), False, ""
            if source.is_dir():
                return self._add_dir(source, link, progress, within)
            if link and source.stat().st_nlink > 1:
                link = False  # a hard link of another file: linking would chmod that file too
            if md5 and size >= 0 and source.stat().st_size != size:
                md5 = ""  # changed since it was hashed (e.g. a run killed while writing it)
            if size < 0 or size >= PREPUSH_MIN_BYTES:
                prepush = Prepush.start(self.local_remote_root(), source, md5)
            if not md5:
                md5, size = hash_file(source, progress)
            self._add_object(str(source), md5, link)
            return Stored(md5, size if size >= 0 else source.stat().st_size)
        except OSError as exc:
            md5 = ""
            if exc.errno in FULL_ERRNOS:
                raise StorageFull(
                    f"'{path.name}' in the DVC cache", exc.strerror or str(exc)
                ) from exc
            raise
        finally:
            if prepush is not None:
                prepush.finish(md5, size)

    def _add_object(self, path: str, md5: str, link: bool) -> None:
        add_object(self.cache_root, Path(path), md5, link=link)

    def _add_dir(
        self, path: Path, link: bool, progress: Callable[[int], None] | None, within: Path
    ) -> Stored:
        from dvc_data.hashfile.meta import Meta
        from dvc_data.hashfile.tree import Tree

        tree = Tree()
        total = 0
        todo: dict[str, tuple[str, bool]] = {}  # md5 -> one file with it, and if it may be linked
        seen = {os.path.realpath(path)}
        for parts, file, linkable in folder_files(path, (), within, self.repo.root, seen, not link):
            md5, size = hash_file(file, progress)
            if md5 not in todo or (linkable and not todo[md5][1]):
                todo[md5] = (str(file), linkable)
            tree.add(parts, Meta(size=size), _hash_info(md5))
            total += size
        for linkable in (True, False):  # one batched transfer each: link types probed once
            batch = {m: f for m, (f, ok) in todo.items() if ok == linkable}
            if batch:
                hardlink = link and linkable
                self.cache.add(list(batch.values()), self.localfs, list(batch), hardlink=hardlink)
        tree.digest()
        if not self.cache.exists(tree.oid):
            self.cache.add(tree.path, tree.fs, tree.oid)
        return Stored(tree.oid, total, len(tree))

    def in_cache(self, oid: str) -> bool:
        """True when the object (and for folders, every file in it) is in the cache."""
        if not self.cache_path(oid).exists():
            return False
        if oid.endswith(".dir"):
            return all(self.cache.exists(h.value) for _, _, h in self._tree(self.cache, oid))
        return True

    def _tree(self, odb: Any, oid: str) -> Any:
        from dvc_data.hashfile.tree import Tree

        return Tree.load(odb, _hash_info(oid))

    def cache_path(self, oid: str) -> Path:
        return object_path(self.cache_root, oid)

    def check(self, oid: str, size: int = -1) -> str:
        """ "" when the cached object has `size` bytes (unless -1) and re-hashes to `oid`."""
        if oid.endswith(".dir"):
            if not self.cache.exists(oid):
                return "missing from the cache"
            try:
                entries = list(self._tree(self.cache, oid))
            except Exception as exc:
                return f"folder listing unreadable ({exc})"
            for key, meta, h in entries:
                problem = self.check(h.value, meta.size if meta.size is not None else -1)
                if problem:
                    return f"file {'/'.join(key)} {problem}"
            return ""
        path = self.cache_path(oid)
        if not path.exists():
            return "missing from the cache"
        found = path.stat().st_size
        if size >= 0 and found != size:
            return f"corrupted in the cache (size {found} bytes differs from the recorded {size})"
        if hash_file(path)[0] != oid:
            return "corrupted in the cache (its content no longer matches its md5)"
        return ""

    def materialise(
        self,
        oid: str,
        dest: Path,
        *,
        link: bool,
        progress: Callable[[int], None] | None = None,
        force: bool = False,
        within: Path | None = None,
        what: str = "",
        hint: str = "move it away, or pass --force to replace it",
    ) -> None:
        """Place the cached object at `dest` (hardlinks only when `link`; else reflink or copy).

        Nothing is written outside `within` (default: dest's folder), symlinks on the way
        included; a file or folder already at a destination that differs from the object is
        kept (OutputError naming it and `hint`) unless `force`, which replaces only that entry.
        """
        within = within if within is not None else dest.parent
        what = what or f"object {oid}"
        if not oid.endswith(".dir"):
            self._place(oid, dest, link, progress, force, within, what, hint)
            return
        entries = list(self._tree(self.cache, oid))
        for key, _, _ in entries:
            rel = "/".join(key)
            if not safe_path(rel):
                raise OutputError(
                    f"The folder listing of {what} names an unsafe path {rel!r}, so nothing of "
                    "it was written; its cache or remote copy was crafted or damaged."
                )
        check_within(dest, within)
        if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
            if not force:
                raise OutputError(f"{dest} already exists and differs from {what}; {hint}.")
            dest.unlink()
        dest.mkdir(parents=True, exist_ok=True)
        for key, _, h in entries:
            self._place(h.value, dest.joinpath(*key), link, progress, force, within, what, hint)

    def _place(
        self,
        oid: str,
        dest: Path,
        link: bool,
        progress: Callable[[int], None] | None,
        force: bool,
        within: Path,
        what: str,
        hint: str,
    ) -> None:
        src = self.cache_path(oid)
        check_within(dest, within)
        if dest.is_symlink() or dest.exists():
            if not dest.is_symlink() and dest.is_file() and same_file(src, dest, oid):
                if progress:
                    progress(dest.stat().st_size)
                return
            if not force:
                raise OutputError(f"{dest} already exists and differs from {what}; {hint}.")
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)  # inside `within`: checked above
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        try:
            _link_or_copy(src, tmp, link, progress)
            os.replace(tmp, dest)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            if exc.errno in FULL_ERRNOS:
                raise StorageFull(str(dest), exc.strerror or str(exc)) from exc
            raise

    # -- garbage collection ---------------------------------------------------------------

    def expand(self, oids: Iterable[str], *, odb: Any = None) -> set[str]:
        """`oids` plus the files of every folder among them (listings read where available)."""
        used = set(oids)
        for oid in [o for o in used if o.endswith(".dir")]:
            for source in (odb, self.cache) if odb is not None else (self.cache,):
                try:
                    used |= {h.value for _, _, h in self._tree(source, oid)}
                    break
                except Exception:
                    continue
        return used

    def unused_in_cache(self, used: set[str], keep_newer_than: float | None = None) -> list[Path]:
        """Cache files of objects outside `used` (those linked in after `keep_newer_than` stay)."""
        keep = self.expand(used)
        found = []
        for oid in list(self.cache.all()):
            if oid in keep or oid.endswith(".tmp"):  # temp files: see `temps_in`
                continue
            path = self.cache_path(oid)
            with contextlib.suppress(FileNotFoundError):
                if keep_newer_than is None or path.stat().st_ctime < keep_newer_than:
                    found.append(path)
        return found


def _link_or_copy(
    src: Path, dest: Path, link: bool, progress: Callable[[int], None] | None
) -> None:
    with contextlib.suppress(OSError):
        reflink(src, dest)
        os.chmod(dest, 0o644)
        if progress:
            progress(src.stat().st_size)
        return
    if link:
        with contextlib.suppress(OSError):
            os.link(src, dest)
            if progress:
                progress(src.stat().st_size)
            return
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            if progress:
                progress(len(chunk))
    os.chmod(dest, 0o644)
