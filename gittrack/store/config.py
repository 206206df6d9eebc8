"""Project settings: `[tool.gittrack]` in pyproject.toml or `gittrack.toml` at the repository root.

Environment variables override them (docs/configuration.md lists both). Reading is cached per
repository root and file modification time, and costs two `stat` calls when neither file exists.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import UsageError

FILES = ("gittrack.toml", "pyproject.toml")  # gittrack.toml wins when both hold settings
KNOWN = {"remote", "snapshot_max_bytes", "code", "memoize", "executor", "jobs"}
ENV = {
    "remote": "GITTRACK_REMOTE",
    "snapshot_max_bytes": "GITTRACK_SNAPSHOT_MAX_BYTES",
    "memoize": "GITTRACK_MEMOIZE",
    "executor": "GITTRACK_EXECUTOR",
    "jobs": "GITTRACK_JOBS",
}


class Settings:
    """The project's defaults; None means "not set here": gittrack's built-in default applies.

    Read-only once made (shared through a cache). A plain class, not a dataclass: it is made at
    the start of every run, where @dataclass would cost half a millisecond.
    """

    __slots__ = (
        "code",
        "executor",
        "extra",
        "jobs",
        "memoize",
        "remote",
        "snapshot_max_bytes",
        "source",
    )
    remote: str | None
    snapshot_max_bytes: int | None
    code: list[str] | None
    memoize: bool
    executor: str | None
    jobs: int | None
    source: str
    extra: dict[str, Any]

    def __init__(
        self,
        remote: str | None = None,  # DVC remote URL written by `gittrack init`
        snapshot_max_bytes: int | None = None,  # largest untracked file put in a code snapshot
        code: list[str] | None = None,  # globs of files that are the code, besides git's own
        memoize: bool = True,  # reuse an identical completed run (False: always record anew)
        executor: str | None = None,  # default `gittrack sweep --executor`
        jobs: int | None = None,  # default `gittrack sweep --jobs`
        source: str = "",  # the file the settings came from ("" when none)
        extra: dict[str, Any] | None = None,
    ) -> None:
        values = {
            "remote": remote,
            "snapshot_max_bytes": snapshot_max_bytes,
            "code": code,
            "memoize": memoize,
            "executor": executor,
            "jobs": jobs,
            "source": source,
            "extra": {} if extra is None else extra,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Settings are read-only: cannot set {name!r}")

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` (as dataclasses.replace)."""
        return Settings(**{**{name: getattr(self, name) for name in self.__slots__}, **changes})


_cache: dict[tuple[str, tuple[float, ...]], Settings] = {}


def settings(repo: Any) -> Settings:
    """The settings of `repo` (a store.Repo or a root folder), environment variables applied."""
    root = Path(repo) if isinstance(repo, str | os.PathLike) else Path(repo.root)
    stamps = tuple(_mtime(root / name) for name in FILES)
    key = (str(root), stamps)
    base = _cache.get(key)
    if base is None:
        base = _read(root, stamps)
        _cache.clear()  # one project per process in practice: keep the cache tiny
        _cache[key] = base
    return _with_env(base)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


def _read(root: Path, stamps: tuple[float, ...]) -> Settings:
    for name, stamp in zip(FILES, stamps, strict=True):
        if stamp < 0:
            continue
        path = root / name
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path} is not valid TOML ({exc}); fix or remove it.") from exc
        if name == "pyproject.toml" and "gittrack" not in text:
            continue  # no [tool.gittrack] table: not parsed (tomllib is not imported)
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path} is not valid TOML ({exc}); fix or remove it.") from exc
        table = data.get("tool", {}).get("gittrack") if name == "pyproject.toml" else data
        if table:
            return _parse(table, str(path))
    return Settings()


def _parse(table: dict[str, Any], source: str) -> Settings:
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in KNOWN:
            continue
        values[key] = _check(key, value, source)
    extra = {k: v for k, v in table.items() if k not in KNOWN}
    return Settings(**values, source=source, extra=extra)


def _check(key: str, value: Any, source: str) -> Any:
    ok = {
        "remote": isinstance(value, str),
        "snapshot_max_bytes": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
        "code": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "memoize": isinstance(value, bool),
        "executor": isinstance(value, str) and bool(value),
        "jobs": isinstance(value, int) and not isinstance(value, bool) and value >= 1,
    }[key]
    if not ok:
        wanted = {
            "remote": "a URL or path string",
            "snapshot_max_bytes": "a number of bytes",
            "code": 'a list of globs, e.g. ["src/**/*.py"]',
            "memoize": "true or false",
            "executor": "an executor name, e.g. local or dask",
            "jobs": "a whole number of 1 or more",
        }[key]
        raise UsageError(f"Setting '{key}' in {source} must be {wanted}, not {value!r}.")
    return value


def _with_env(base: Settings) -> Settings:
    """`base` with GITTRACK_* environment variables (when set and not empty) taking precedence."""
    changes: dict[str, Any] = {}
    for key, name in ENV.items():
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        if key in ("snapshot_max_bytes", "jobs"):
            try:
                changes[key] = _check(key, int(raw), name)
            except ValueError:
                what = (
                    "a number of bytes, e.g. 10485760"
                    if key == "snapshot_max_bytes"
                    else "a whole number"
                )
                raise UsageError(f"{name} must be {what}; got {raw!r}.") from None
        elif key == "memoize":
            changes[key] = raw.lower() not in ("0", "false", "no", "off")
        else:
            changes[key] = raw
    if not changes:
        return base
    return base.replace(**changes)
