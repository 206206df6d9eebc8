"""Honouring `core.sharedRepository`: what gittrack creates under `.git/` is shared as git's own.

In a repository made with `git init --shared=group` (a group project folder on a cluster)
every member must be able to record: git makes its files group-writable and its folders
group-writable and setgid whatever the umask. gittrack's own files (loose objects, the index
database, locks, memo keys, push markers, staged runs) follow the same rule here.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path

_MODES: dict[Path, int | None] = {}  # common dir -> git's shared permission (None: umask)
PERM_GROUP, PERM_EVERYBODY = 0o660, 0o664


def shared_perm(common_dir: Path) -> int | None:
    """git's reading of core.sharedRepository: 0o660/0o664 added, -0oXXX exact, None umask."""
    if common_dir not in _MODES:
        _MODES[common_dir] = _read(common_dir / "config")
    return _MODES[common_dir]


def _read(config: Path) -> int | None:
    """core.sharedRepository from a git config file, read without starting git (hot path)."""
    try:
        text = config.read_text(errors="replace")
    except OSError:
        return None
    value, section = "", ""
    for line in text.splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]").strip().lower()
        elif section == "core" and "=" in line:
            key, _, raw = line.partition("=")
            if key.strip().lower() == "sharedrepository":
                value = raw.strip().strip('"').lower()
    if value in ("group", "true", "1"):
        return PERM_GROUP
    if value in ("all", "world", "everybody", "2"):
        return PERM_EVERYBODY
    if re.fullmatch(r"0[0-7]{3}", value):
        return -int(value, 8)
    return None


def _wanted(mode: int, perm: int) -> int:
    """git's calc_shared_perm (path.c) plus the setgid bit git forces on folders."""
    tweak = -perm if perm < 0 else perm
    if not mode & stat.S_IWUSR:
        tweak &= ~0o222
    if mode & stat.S_IXUSR:
        tweak |= (tweak & 0o444) >> 2
    new = (mode & ~0o777) | tweak if perm < 0 else mode | tweak
    if stat.S_ISDIR(mode):
        new |= stat.S_ISGID
    return new


def adjust(common_dir: Path, *paths: Path | str) -> None:
    """Give `paths` (just created by us) the permissions git would; nothing when not shared."""
    perm = shared_perm(common_dir)
    if perm is None:
        return
    for path in paths:
        with contextlib.suppress(OSError):  # someone else's file: it is theirs to share
            mode = os.stat(path).st_mode
            wanted = stat.S_IMODE(_wanted(mode, perm))
            if wanted != stat.S_IMODE(mode):
                os.chmod(path, wanted)


def make_dirs(common_dir: Path, folder: Path) -> Path:
    """`folder.mkdir(parents=True, exist_ok=True)`, sharing each folder it created."""
    if folder.is_dir():
        return folder
    missing = []
    for parent in [folder, *folder.parents]:
        if parent.is_dir():
            break
        missing.append(parent)
    folder.mkdir(parents=True, exist_ok=True)
    adjust(common_dir, *reversed(missing))
    return folder
