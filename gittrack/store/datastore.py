"""Outputs through DVC: hash, cache, push and fetch objects, pointer files and remote settings.

The only module that talks to DVC. It uses DVC's data layer (dvc-data object databases,
dvc-objects filesystems and link types) directly instead of `dvc add` / `dvc push`: a file is
hashed once (streamed), linked into the cache (reflink, hardlink, else copy) and copied once to
the remote. The cache and remote use DVC 3's `files/md5/<2>/<30>` layout, so the real `dvc` CLI
reads them. DVC itself is imported only when a run has outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import store
from ..errors import FULL_ERRNOS as FULL_ERRNOS, OutputError, RemoteError, StorageFull
from ..model.schema import safe_path
from .safefs import (
    CHUNK as CHUNK,
    PARTIAL as PARTIAL,
    TMP_PREFIX as TMP_PREFIX,
    HashingWriter as HashingWriter,
    check_within,
    folder_files,
    hash_file as hash_file,
    hashing_writer as hashing_writer,
    link_target,
    partial_path as partial_path,
    same_file,
    temps_in,
    tmp_name,
)

HASH = "md5"
REMOTE_NAME = "storage"
LAYOUT = ("files", "md5")
PREPUSH_MIN_BYTES = 16 << 20
CONFIG_PATH = ".dvc/config"

DVC_GITIGNORE = b"/config.local\n/tmp\n/cache\n"
DVCIGNORE = (
    b"# DVC ignore patterns for checkouts of the gittrack runs branch (see .gitignore syntax)\n"
)


# -- where things live ----------------------------------------------------------------------


def cache_dir(repo: store.Repo) -> Path:
    """The DVC cache: `.gittrack/cache` in the main working tree, shared by linked worktrees."""
    if repo.common_dir.name == ".git":
        return repo.common_dir.parent / ".gittrack" / "cache"
    return repo.common_dir / "gittrack" / "cache"  # a bare repository or a separate git dir


def default_remote_dir(repo: store.Repo) -> Path:
    """The default remote: a folder in the user's data dir, named after the repository."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    root = repo.common_dir.parent if repo.common_dir.name == ".git" else repo.common_dir
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", root.name.removesuffix(".git")) or "repo"
    return base / "gittrack" / "storage" / f"{name}-{digest}"


def config_text(url: str, previous: bytes | None = None) -> bytes:
    """`.dvc/config` with `url` as the default remote, keeping other settings of `previous`."""
    from configobj import ConfigObj

    conf = ConfigObj((previous or b"").decode().splitlines())
    conf.setdefault("core", {})["remote"] = REMOTE_NAME
    conf.setdefault(f'remote "{REMOTE_NAME}"', {})["url"] = url
    lines = conf.write()
    return ("\n".join(lines) + "\n").encode()


def initial_files(repo: store.Repo) -> dict[str, bytes]:
    """Files of the runs branch's first commit that make every run commit a DVC repository."""
    from .config import settings

    url = settings(repo).remote  # `remote` in [tool.gittrack] / gittrack.toml, GITTRACK_REMOTE
    if not url:
        remote = default_remote_dir(repo)
        remote.mkdir(parents=True, exist_ok=True)
        url = str(remote)
    return {
        CONFIG_PATH: config_text(url),
        ".dvc/.gitignore": DVC_GITIGNORE,
        ".dvcignore": DVCIGNORE,
    }


def remote_url(repo: store.Repo) -> str:
    """The default remote's URL from `.dvc/config` on the runs branch ("" when none)."""
    from configobj import ConfigObj

    data = store.read_file(repo, CONFIG_PATH)
    if not data:
        return ""
    conf = ConfigObj(data.decode().splitlines())
    name = conf.get("core", {}).get("remote", "")
    url = conf.get(f'remote "{name}"', {}).get("url", "") if name else ""
    if url and "://" not in url and not os.path.isabs(url):
        url = os.path.normpath(os.path.join(repo.root, ".dvc", url))
    return str(url)


@contextlib.contextmanager
def _dvc_logs() -> Iterator[list[Any]]:
    """Collect what DVC logs (with tracebacks) instead of printing it; the caller says why."""
    import logging

    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.WARNING)
    loggers = [logging.getLogger(name) for name in ("dvc_objects", "dvc_data", "dvc")]
    saved = [(lg.propagate, lg.handlers[:]) for lg in loggers]
    for lg in loggers:
        lg.propagate, lg.handlers = False, [handler]
    try:
        yield records
    finally:
        for lg, (propagate, handlers) in zip(loggers, saved, strict=True):
            lg.propagate, lg.handlers = propagate, handlers


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _local_path(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


def set_remote(repo: store.Repo, url: str) -> str:
    """Make `url` the default remote (a commit on the runs branch); returns the stored URL."""
    if not url.strip():
        raise RemoteError(
            "The DVC remote URL is empty; give a folder or a URL such as s3://bucket/path."
        )
    if _is_local(url):
        path = Path(_local_path(url)).expanduser().resolve()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RemoteError(
                f"Cannot create the remote folder {path} ({exc.strerror}); "
                "choose a folder you can write to."
            ) from exc
        url = str(path)
    else:
        _cloud_fs(url)  # fails early when the DVC plugin for the scheme is missing
    previous = store.read_file(repo, CONFIG_PATH)
    store.write_settings(
        repo, {CONFIG_PATH: config_text(url, previous)}, f"gittrack: set DVC remote to {url}"
    )
    return url


def _cloud_fs(url: str) -> tuple[Any, str]:
    try:
        from dvc.fs import get_cloud_fs

        cls, config, fs_path = get_cloud_fs({}, url=url)
        return cls(**config), fs_path
    except Exception as exc:
        scheme = url.split("://", 1)[0]
        raise RemoteError(
            f"Cannot use the DVC remote {url} ({exc}); install DVC's plugin for it, "
            f"e.g. 'pip install dvc-{scheme}', or set another remote with 'gittrack remote set'."
        ) from exc


# -- the object databases -------------------------------------------------------------------


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


class Store:
    """The repository's DVC cache and its default remote, as dvc-data object databases."""

    def __init__(self, repo: store.Repo) -> None:
        from dvc_data.hashfile.db.local import LocalHashFileDB
        from dvc_objects.fs.local import localfs

        self.repo = repo
        self.localfs = localfs
        root = cache_dir(repo)
        self.cache = LocalHashFileDB(localfs, str(root.joinpath(*LAYOUT)))
        self._remote: Any = None
        self.url = remote_url(repo)

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
                prepush = _Prepush.start(self, source, md5)
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
        if self.cache.exists(md5):
            return
        self.cache.add(path, self.localfs, md5, hardlink=link)

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
        if not self.cache.exists(oid):
            return False
        if oid.endswith(".dir"):
            return all(self.cache.exists(h.value) for _, _, h in self._tree(self.cache, oid))
        return True

    def _tree(self, odb: Any, oid: str) -> Any:
        from dvc_data.hashfile.tree import Tree

        return Tree.load(odb, _hash_info(oid))

    def cache_path(self, oid: str) -> Path:
        return Path(self.cache.oid_to_path(oid))

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

    # -- remote ---------------------------------------------------------------------------

    def remote(self) -> Any:
        """The default remote's object database; RemoteError when it cannot be reached."""
        if self._remote is not None:
            return self._remote
        from dvc_data.hashfile.db import HashFileDB
        from dvc_data.hashfile.db.local import LocalHashFileDB

        if not self.url:
            raise RemoteError(
                "No DVC remote is configured; set one with 'gittrack remote set URL'."
            )
        if _is_local(self.url):
            root = Path(_local_path(self.url))
            if not root.is_dir():
                raise RemoteError(
                    f"The DVC remote folder {root} does not exist (not mounted, or moved); "
                    "create it, or set another remote with 'gittrack remote set URL'."
                )
            self._remote = LocalHashFileDB(self.localfs, str(root.joinpath(*LAYOUT)))
        else:
            fs, fs_path = _cloud_fs(self.url)
            self._remote = HashFileDB(fs, fs.join(fs_path, *LAYOUT))
        return self._remote

    def push(self, oids: Iterable[str], progress: bool = False) -> set[str]:
        """Copy objects (folders with their files) missing on the remote there; returns those
        copied (file by file under a progress bar in bytes on stderr if `progress`)."""
        from dvc_data.hashfile.transfer import transfer

        oids = set(oids)
        if not oids:
            return set()
        remote = self.remote()
        before = self._remote_temps()
        with _dvc_logs() as logged:
            try:
                done: set[str] = set()
                if progress:  # file by file under a bar of bytes, then the folder listings
                    files = self.expand(oids) - {o for o in oids if o.endswith(".dir")}
                    done |= self._push_files(remote, files)
                result = transfer(self.cache, remote, {_hash_info(o) for o in oids}, shallow=False)
                done |= {h.value for h in result.transferred if h.value is not None}
                failed: set[Any] = {h.value for h in result.failed}
                error: BaseException | None = None
            except Exception as exc:
                failed, error = oids, exc
        if not failed:
            return done
        for temp in self._remote_temps() - before:  # what the failed copies left behind
            with contextlib.suppress(OSError):
                temp.unlink()
        causes = [error] if error else []
        causes += [r.exc_info[1] for r in logged if r.exc_info and r.exc_info[1]]
        full = [c for c in causes if getattr(c, "errno", None) in FULL_ERRNOS]
        if full:
            reason = getattr(full[0], "strerror", None) or str(full[0])
            raise RemoteError(
                f"The DVC remote {self.url} has no space left ({reason}); free space there or "
                "set another remote with 'gittrack remote set URL', then 'gittrack push'."
            ) from error
        if error is not None:
            raise RemoteError(
                f"Cannot push to the DVC remote {self.url} ({_reason(error)}); "
                "check that it is reachable and writable."
            ) from error
        raise RemoteError(
            f"Could not push {len(failed)} object(s) to the DVC remote {self.url}; "
            "check that it is reachable and writable."
        )

    def _remote_temps(self) -> set[Path]:
        """Temporary files in a local remote's object folders (DVC copies through `.*.tmp`)."""
        if not _is_local(self.url):
            return set()
        root = Path(_local_path(self.url)).joinpath(*LAYOUT)
        return set(root.glob("*/.*.tmp")) if root.is_dir() else set()

    def _push_files(self, remote: Any, files: set[str]) -> set[str]:
        """Push file objects one at a time under a progress bar of bytes on stderr."""
        import sys

        from dvc_data.hashfile.transfer import transfer
        from tqdm import tqdm

        sizes = {o: self.cache_path(o).stat().st_size for o in files if self.cache.exists(o)}
        done: set[str] = set()
        with tqdm(
            total=sum(sizes.values()),
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="pushing",
            file=sys.stderr,
            leave=False,
        ) as bar:
            for oid, size in sizes.items():
                result = transfer(self.cache, remote, {_hash_info(oid)}, shallow=True)
                done |= {h.value for h in result.transferred if h.value is not None}
                bar.update(size)
        return done

    def on_remote(self, oids: Iterable[str]) -> set[str]:
        """Which of `oids` the remote holds, asked of the remote itself (never of the ledger).

        A local-folder remote is listed once per object folder (`files/md5/<2>/`) needed, so
        checking every output of a repository costs at most 256 directory listings.
        """
        oids = list(oids)
        if not oids:
            return set()
        remote = self.remote()
        try:
            if _is_local(self.url):
                root = Path(remote.path)
                found: set[str] = set()
                for prefix in {o[:2] for o in oids}:
                    with (
                        contextlib.suppress(FileNotFoundError, NotADirectoryError),
                        os.scandir(root / prefix) as entries,
                    ):
                        found |= {prefix + e.name for e in entries if e.is_file()}
                return found & set(oids)
            return set(remote.oids_exist(oids))
        except Exception as exc:
            raise RemoteError(f"Cannot read the DVC remote {self.url} ({_reason(exc)}).") from exc

    def complete_on_remote(self, oids: Iterable[str]) -> set[str]:
        """Which of `oids` the remote holds whole: a folder counts only with all its files."""
        oids = set(oids)
        present = self.on_remote(oids)
        folders = {o for o in present if o.endswith(".dir")}
        if not folders:
            return present
        files = {f: self.expand([f], odb=self.remote()) - {f} for f in folders}
        there = self.on_remote(set().union(*files.values()))
        return {o for o in present if o not in folders or files[o] <= there}

    def check_remote(self, oid: str, size: int) -> str:
        """ "" when the remote's copy of `oid` has `size` bytes and re-hashes to it, else why."""
        remote = self.remote()
        if oid.endswith(".dir"):
            try:
                entries = list(self._tree(remote, oid))
            except Exception:
                return "missing from the remote"
            for key, meta, h in entries:
                problem = self.check_remote(h.value, meta.size if meta.size is not None else -1)
                if problem:
                    return f"file {'/'.join(key)} {problem}"
            return ""
        path = remote.oid_to_path(oid)
        try:
            found = int(remote.fs.info(path).get("size") or 0)
            if size >= 0 and found != size:
                return f"size {found} bytes differs from the recorded {size}"
            md5 = hashlib.md5(usedforsecurity=False)
            with remote.fs.open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    md5.update(chunk)
        except FileNotFoundError:
            return "missing from the remote"
        except Exception as exc:
            raise RemoteError(f"Cannot read the DVC remote {self.url} ({_reason(exc)}).") from exc
        if md5.hexdigest() != oid:
            return "corrupted (its content no longer matches its md5)"
        return ""

    def fetch(self, oids: Iterable[str], progress: bool = False) -> None:
        """Bring objects missing from the cache back from the remote (with a bar if `progress`)."""
        from dvc_data.hashfile.transfer import transfer
        from fsspec.callbacks import DEFAULT_CALLBACK

        wanted = {o for o in oids if not self.in_cache(o)}
        if not wanted:
            return
        remote = self.remote()
        dirs = {o for o in wanted if o.endswith(".dir")}
        try:
            for oid in dirs:  # the listing first, then the files it names
                if not self.cache.exists(oid):
                    transfer(remote, self.cache, {_hash_info(oid)}, shallow=True)
                wanted |= {h.value for _, _, h in self._tree(self.cache, oid)}
            callback: Any = DEFAULT_CALLBACK
            if progress:
                from dvc_data.callbacks import TqdmCallback

                callback = TqdmCallback(desc="fetching", unit="file")
            with callback:
                result = transfer(
                    remote,
                    self.cache,
                    {_hash_info(o) for o in wanted - dirs},
                    shallow=True,
                    callback=callback,
                )
        except Exception as exc:
            raise RemoteError(
                f"Cannot fetch from the DVC remote {self.url} ({_reason(exc)})."
            ) from exc
        missing = [o for o in wanted if not self.cache.exists(o)]
        if result.failed or missing:
            raise RemoteError(
                f"{len(missing) or len(result.failed)} object(s) are neither in the local cache "
                f"nor on the DVC remote {self.url}; push them from the machine that has them."
            )

    def _ledger(self) -> Path:
        digest = hashlib.sha1(self.url.encode()).hexdigest()[:12]
        return self.repo.state_dir / "pushed" / digest

    def known_pushed(self) -> set[str]:
        """Objects this clone pushed to (or found on) the remote: a hint for when it is
        unreachable, never trusted over the remote's own listing."""
        try:
            return set(self._ledger().read_text().split())
        except FileNotFoundError:
            return set()

    def mark_pushed(self, oids: Iterable[str]) -> None:
        oids = sorted(set(oids))
        if not oids:
            return
        path = self._ledger()
        self.repo.make_dir(path.parent)
        fresh = not path.exists()
        with open(path, "a") as fh:
            fh.write("".join(o + "\n" for o in oids))
        if fresh:
            self.repo.share(path)

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

    def gc_remote(self, used: set[str]) -> tuple[int, int]:
        """Delete remote objects outside `used`; returns (objects, bytes) deleted."""
        remote = self.remote()
        keep = self.expand(used, odb=remote)
        count = size = 0
        try:
            for oid in list(remote.all()):
                if oid in keep or oid.endswith(".tmp"):  # temp files: see `temps_in`
                    continue
                path = remote.oid_to_path(oid)
                try:
                    size += int(remote.fs.info(path).get("size") or 0)
                except FileNotFoundError:
                    continue
                remote.fs.remove(path)
                count += 1
        except RemoteError:
            raise
        except Exception as exc:
            raise RemoteError(f"Cannot clean the DVC remote {self.url} ({_reason(exc)}).") from exc
        return count, size

    def stale_temps(self, *, remote: bool) -> list[Path]:
        """Temp files left in the cache (and a local-folder remote) by copies cut short."""
        found = temps_in(Path(self.cache.path))
        if remote and _is_local(self.url) and Path(_local_path(self.url)).is_dir():
            found += temps_in(Path(self.remote().path))
        return found


class _Prepush:
    """Copy a file into a local-folder remote under a temporary name while it is being hashed.

    Once the md5 is known the copy is renamed to its object path, so the push that follows
    finds it there; any failure only drops the copy, and the ordinary push reports it.
    """

    def __init__(self, remote: Any, src: Path) -> None:
        self.remote = remote
        self.tmp = Path(remote.path) / tmp_name()
        self.failed = False
        self.thread = threading.Thread(target=self._copy, args=(src,), daemon=True)
        self.thread.start()

    @classmethod
    def start(cls, store: Store, src: Path, md5: str) -> _Prepush | None:
        if not _is_local(store.url):
            return None
        try:
            remote = store.remote()
            if src.stat().st_size < PREPUSH_MIN_BYTES or (md5 and remote.exists(md5)):
                return None
        except (RemoteError, OSError):
            return None
        return cls(remote, src)

    def _copy(self, src: Path) -> None:
        try:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, self.tmp)
        except OSError:
            self.failed = True

    def finish(self, md5: str, size: int = -1) -> None:
        self.thread.join()
        try:
            complete = size < 0 or self.tmp.stat().st_size == size
            if md5 and complete and not self.failed and not self.remote.exists(md5):
                dest = Path(self.remote.oid_to_path(md5))
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(self.tmp, 0o444)
                os.replace(self.tmp, dest)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _link_or_copy(
    src: Path, dest: Path, link: bool, progress: Callable[[int], None] | None
) -> None:
    from dvc_objects.fs import system

    with contextlib.suppress(OSError):
        system.reflink(str(src), str(dest))
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
