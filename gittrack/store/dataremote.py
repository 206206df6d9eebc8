"""The remote side of the DVC store: push, fetch, what the remote holds, its ledger and gc.

What is on the remote is asked of the remote (a local folder is listed, a cloud remote is
asked through dvc-data), never believed. Objects a run teed into a local-folder remote while
writing them are found there by that listing, so its push costs no copy and no DVC import.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import FULL_ERRNOS, RemoteError
from .datacache import DataCache, _hash_info
from .dvcconfig import LAYOUT, cloud_fs, dvc_logs, is_local, local_path, reason
from .safefs import CHUNK, temps_in


class DataRemote(DataCache):
    """The cache and the repository's default DVC remote."""

    def remote(self) -> Any:
        """The default remote's object database; RemoteError when it cannot be reached."""
        if self._remote is not None:
            return self._remote
        from dvc_data.hashfile.db import HashFileDB
        from dvc_data.hashfile.db.local import LocalHashFileDB

        if is_local(self._configured()):
            self._remote = LocalHashFileDB(self.localfs, str(self._local_root()))
        else:
            fs, fs_path = cloud_fs(self.url)
            self._remote = HashFileDB(fs, fs.join(fs_path, *LAYOUT))
        return self._remote

    def _configured(self) -> str:
        if not self.url:
            raise RemoteError(
                "No DVC remote is configured; set one with 'gittrack remote set URL'."
            )
        return self.url

    def _local_root(self) -> Path:
        """The object folder of the local-folder remote; RemoteError when it is not there."""
        root = Path(local_path(self._configured()))
        if not root.is_dir():
            raise RemoteError(
                f"The DVC remote folder {root} does not exist (not mounted, or moved); "
                "create it, or set another remote with 'gittrack remote set URL'."
            )
        return root.joinpath(*LAYOUT)

    def push(self, oids: Iterable[str], progress: bool = False) -> set[str]:
        """Copy objects (folders with their files) missing on the remote there; returns those
        copied (file by file under a progress bar in bytes on stderr if `progress`).

        Files a local-folder remote already holds (e.g. teed there while a run wrote them)
        are found by listing it, without DVC; only the rest go through dvc-data.
        """
        oids = set(oids)
        if oids and is_local(self._configured()):
            oids -= self.on_remote(o for o in oids if not o.endswith(".dir"))
        if not oids:
            return set()
        from dvc_data.hashfile.transfer import transfer

        remote = self.remote()
        before = self._remote_temps()
        with dvc_logs() as logged:
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
            why = getattr(full[0], "strerror", None) or str(full[0])
            raise RemoteError(
                f"The DVC remote {self.url} has no space left ({why}); free space there or "
                "set another remote with 'gittrack remote set URL', then 'gittrack push'."
            ) from error
        if error is not None:
            raise RemoteError(
                f"Cannot push to the DVC remote {self.url} ({reason(error)}); "
                "check that it is reachable and writable."
            ) from error
        raise RemoteError(
            f"Could not push {len(failed)} object(s) to the DVC remote {self.url}; "
            "check that it is reachable and writable."
        )

    def _remote_temps(self) -> set[Path]:
        """Temporary files in a local remote's object folders (DVC copies through `.*.tmp`)."""
        if not is_local(self.url):
            return set()
        root = Path(local_path(self.url)).joinpath(*LAYOUT)
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
        try:
            if is_local(self._configured()):
                root = self._local_root()
                found: set[str] = set()
                for prefix in {o[:2] for o in oids}:
                    with (
                        contextlib.suppress(FileNotFoundError, NotADirectoryError),
                        os.scandir(root / prefix) as entries,
                    ):
                        found |= {prefix + e.name for e in entries if e.is_file()}
                return found & set(oids)
            return set(self.remote().oids_exist(oids))
        except RemoteError:
            raise
        except Exception as exc:
            raise RemoteError(f"Cannot read the DVC remote {self.url} ({reason(exc)}).") from exc

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
            raise RemoteError(f"Cannot read the DVC remote {self.url} ({reason(exc)}).") from exc
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
                f"Cannot fetch from the DVC remote {self.url} ({reason(exc)})."
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
            raise RemoteError(f"Cannot clean the DVC remote {self.url} ({reason(exc)}).") from exc
        return count, size

    def stale_temps(self, *, remote: bool) -> list[Path]:
        """Temp files left in the cache (and a local-folder remote) by copies cut short."""
        found = temps_in(self.cache_root)
        if remote and is_local(self.url) and Path(local_path(self.url)).is_dir():
            found += temps_in(self._local_root())
        return found
