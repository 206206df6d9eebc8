"""What a program a run executes is: its resolved path, sha256, version and package.

Hashing a large binary, asking it for its version and asking dpkg or pip which package owns it
cost from milliseconds to half a second, so the answer is cached under `.git/gittrack/cache/`
keyed by the file's path, size and modification time: a rebuilt or upgraded engine is looked at
again, an unchanged one costs one stat.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ProgramNotFound

PROBE_TIMEOUT_S = 2.0
CACHE_FILE = "programs.json"
VERSION_LIKE = re.compile(r"\d")


def resolve(program: str, cwd: Path) -> Path:
    """The executable `program` names: a path (relative to `cwd`) or a name on PATH."""
    if os.sep in program or (os.altsep and os.altsep in program):
        path = (cwd / program).absolute()
        if path.is_file():
            return path
        raise ProgramNotFound(program)
    found = shutil.which(program)
    if found is None:
        raise ProgramNotFound(program)
    return Path(found).absolute()


def identity(
    path: Path, cache_dir: Path | None, *, probe: bool = True, version: str = ""
) -> dict[str, Any]:
    """{path, sha256, version, package, package_version} of the executable at `path`.

    `probe=False` skips asking the program for its version and the package manager for its
    package (a script in the repository, whose identity is its content); a user-given `version`
    is recorded instead of the probed one.
    """
    real = path.resolve()
    stat = real.stat()
    key = f"{real}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = _load(cache_dir)
    info = cache.get(key)
    if not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
        info = {"sha256": sha256_of(real)}
    if probe and not info.get("probed"):
        info.update(version=probe_version(real), probed=True, **package_of(real))
    if cache.get(key) != info:
        cache[key] = info
        _save(cache_dir, cache)
    out: dict[str, Any] = {"path": str(path)}
    if real != path:
        out["resolved"] = str(real)
    out.update({k: v for k, v in info.items() if v and k != "probed"})
    if version:
        out["version"] = version
    return out


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def probe_version(path: Path) -> str:
    """The first line of `--version` (or of `-h` when that fails), if it answers in time."""
    for flag in ("--version", "-h"):
        line = _first_line([str(path), flag])
        if line and VERSION_LIKE.search(line) and "invalid" not in line.lower():
            return line[:200]
    return ""


def _first_line(argv: list[str]) -> str:
    with tempfile.TemporaryDirectory(prefix="gittrack-probe-") as tmp:
        try:
            done = subprocess.run(
                argv,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return ""
    if done.returncode != 0:
        return ""
    text = (done.stdout or done.stderr).decode("utf-8", "replace")
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def package_of(path: Path) -> dict[str, str]:
    """The conda, Debian or pip package owning `path`, and its version, where that is cheap."""
    return _conda(path) or _dpkg(path) or _pip(path)


def _conda(path: Path) -> dict[str, str]:
    """The conda package listing `path` in its environment's conda-meta/*.json."""
    for prefix in path.absolute().parents:
        meta = prefix / "conda-meta"
        if not meta.is_dir():
            continue
        rel = path.absolute().relative_to(prefix).as_posix()
        for record in sorted(meta.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(record.read_text())
                if isinstance(data, dict) and rel in (data.get("files") or []):
                    return {
                        "package": f"conda:{data.get('name', record.stem)}",
                        "package_version": f"{data.get('version', '')}",
                    }
        return {}
    return {}


def _dpkg(path: Path) -> dict[str, str]:
    if shutil.which("dpkg-query") is None:
        return {}
    for candidate in dict.fromkeys([path, Path(os.path.realpath(path))]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            owner = subprocess.run(
                ["dpkg-query", "-S", str(candidate)], capture_output=True, timeout=5, check=False
            )
            if owner.returncode != 0:
                continue
            name = owner.stdout.decode().split(":", 1)[0].split(",")[0].strip()
            version = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Version}", name],
                capture_output=True,
                timeout=5,
                check=False,
            ).stdout.decode()
            if name:
                return {"package": f"deb:{name}", "package_version": version.strip()}
    return {}


def _pip(path: Path) -> dict[str, str]:
    """The installed distribution whose RECORD lists `path` (a console script, say)."""
    from importlib import metadata

    target = os.path.realpath(path)
    for dist in metadata.distributions():
        for file in dist.files or ():
            if file.name != path.name:
                continue
            with contextlib.suppress(OSError, ValueError):
                if os.path.realpath(file.locate()) == target:
                    return {
                        "package": f"pip:{dist.metadata['Name']}",
                        "package_version": dist.version,
                    }
    return {}


def _load(cache_dir: Path | None) -> dict[str, Any]:
    if cache_dir is None:
        return {}
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((cache_dir / CACHE_FILE).read_text())
        if isinstance(data, dict):
            return data
    return {}


def _save(cache_dir: Path | None, cache: dict[str, Any]) -> None:
    if cache_dir is None:
        return
    with contextlib.suppress(OSError):
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f"{CACHE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        os.replace(tmp, cache_dir / CACHE_FILE)


def same_build(recorded: dict[str, Any], cache_dir: Path | None) -> bool:
    """Whether the program a record names is still the same build (for reuse)."""
    path = recorded.get("path")
    sha = recorded.get("sha256")
    if not isinstance(path, str) or not isinstance(sha, str):
        return True
    try:
        now = identity(Path(path), cache_dir, probe=False)
    except OSError:
        return False
    return now.get("sha256") == sha
