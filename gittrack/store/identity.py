"""The author/committer identity of the commits gittrack writes: the user's git identity.

Asking git (`git var GIT_COMMITTER_IDENT`) costs a process; a run does not pay it when the
environment names the committer, or when the answer was cached under `.git/gittrack/cache/`
for the same environment and the same git config files (path, size, modification time). Config
files with `[include]`/`[includeIf]` sections are not cached: what they include could change
unseen.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from .objects import Repo

ENV_KEYS = (
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "EMAIL",
    "HOME",
    "XDG_CONFIG_HOME",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_NOSYSTEM",
    "GIT_CONFIG",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_PARAMETERS",
)


def config_files(repo: Repo) -> list[str]:
    """The config files git reads for the identity, in git's order."""
    home = os.environ.get("HOME", "")
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return [
        os.environ.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig",
        os.path.join(xdg, "git", "config"),
        os.environ.get("GIT_CONFIG_GLOBAL") or os.path.join(home, ".gitconfig"),
        str(repo.common_dir / "config"),
        str(repo.git_dir / "config.worktree"),
    ]


def _cache_key(repo: Repo) -> str | None:
    """What the identity depends on, as one line; None when it cannot be cached."""
    parts = [f"{k}={os.environ.get(k, '')}" for k in ENV_KEYS]
    parts += [f"uid={os.getuid()}", f"host={os.uname().nodename}"]
    for path in config_files(repo):
        try:
            with open(path, "rb") as fh:
                stat = os.fstat(fh.fileno())
                if b"include" in fh.read().lower():
                    return None
        except FileNotFoundError:
            parts.append(f"{path}:-")
            continue
        except OSError:
            return None
        parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    return "\t".join(parts)


def _ask_git(repo: Repo) -> str:
    proc = repo.git("var", "GIT_COMMITTER_IDENT", check=False)
    ident = proc.stdout.decode().strip()
    if proc.returncode != 0 or not ident:
        ident = f"gittrack <gittrack@localhost> {int(time.time())} +0000"
    return ident.rsplit(" ", 2)[0]  # keep name and email; the time is filled in per commit


def _cached(repo: Repo) -> str:
    key = _cache_key(repo)
    cache = repo.state_dir / "cache" / "identity"
    if key is not None:
        with contextlib.suppress(OSError, ValueError):
            stored_key, ident = cache.read_text(encoding="utf-8").split("\n")[:2]
            if stored_key == key and ident:
                return ident
    ident = _ask_git(repo)
    if key is not None:
        with contextlib.suppress(OSError):
            repo.make_dir(cache.parent)
            tmp = cache.with_name(f"identity.{os.getpid()}.tmp")
            tmp.write_text(f"{key}\n{ident}\n", encoding="utf-8")
            os.replace(tmp, cache)
    return ident


class Identity:
    """Author/committer line for commits gittrack writes: the user's git identity."""

    _cached: ClassVar[dict[object, str]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()  # one `git var` even when prefetched

    @classmethod
    def get(cls, repo: Repo) -> str:
        with cls._lock:
            if repo.common_dir not in cls._cached:
                name = os.environ.get("GIT_COMMITTER_NAME", "").strip()
                email = os.environ.get("GIT_COMMITTER_EMAIL", "").strip()
                if name and email and "<" not in name + email and ">" not in name + email:
                    cls._cached[repo.common_dir] = f"{name} <{email}>"
                else:
                    cls._cached[repo.common_dir] = _cached(repo)
            return cls._cached[repo.common_dir]
