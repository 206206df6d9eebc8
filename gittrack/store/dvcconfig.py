"""Where DVC data lives and how the runs branch names its remote: `.dvc/config` and friends.

The cache folder, the default local-folder remote, the `.dvc` files of the runs branch's first
commit, reading and setting the default remote, and the small helpers every DVC-facing module
shares (local or cloud URL, DVC's log records, the reason an error gives). DVC itself is
imported only to open a cloud remote.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import store
from ..errors import RemoteError

HASH = "md5"
REMOTE_NAME = "storage"
LAYOUT = ("files", "md5")
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
def dvc_logs() -> Iterator[list[Any]]:
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


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


def set_remote(repo: store.Repo, url: str) -> str:
    """Make `url` the default remote (a commit on the runs branch); returns the stored URL."""
    if not url.strip():
        raise RemoteError(
            "The DVC remote URL is empty; give a folder or a URL such as s3://bucket/path."
        )
    if is_local(url):
        path = Path(local_path(url)).expanduser().resolve()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RemoteError(
                f"Cannot create the remote folder {path} ({exc.strerror}); "
                "choose a folder you can write to."
            ) from exc
        url = str(path)
    else:
        cloud_fs(url)  # fails early when the DVC plugin for the scheme is missing
    previous = store.read_file(repo, CONFIG_PATH)
    store.write_settings(
        repo, {CONFIG_PATH: config_text(url, previous)}, f"gittrack: set DVC remote to {url}"
    )
    return url


def cloud_fs(url: str) -> tuple[Any, str]:
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


def reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
