"""The types and paths a run.toml may hold, checked when a record is read (records are untrusted).

A record comes from a collaborator's push or a hand edit as much as from gittrack itself, so
every field is checked against the documented schema (docs/storage-format.md) before any reader
uses it, and every path in it must stay inside the run's own folder. `check_record` returns the
first problem as text ("'params' must be a table, not a string") and `check_paths` the first
path leaving the run's folder; the caller makes that one run unreadable and every other run
reads as before.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any

from .limits import MAX_DEPTH  # tables and arrays inside each other: deeper is damage

RUN_ID = re.compile(r"[0-9a-f]{4,64}")
DRIVE = re.compile(r"[A-Za-z]:")
MAX_NAME = 255  # bytes in one file name (most filesystems)
MAX_PATH = 1024

Check = Callable[[Any], bool]


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_datetime(value: Any) -> bool:
    return isinstance(value, dt.datetime)


def _is_table(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # the ABC check is slow


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


# (check, what it must be, the types that pass it without calling it: what TOML parsers give)
Rule = tuple[Check, str, frozenset[type]]
STR: Rule = (_is_str, "a string", frozenset((str,)))
INT: Rule = (_is_int, "an integer", frozenset((int,)))
COUNT: Rule = (_is_count, "an integer of 0 or more", frozenset())
NUMBER: Rule = (_is_number, "a number", frozenset((int, float)))
BOOL: Rule = (_is_bool, "true or false", frozenset((bool,)))
DATETIME: Rule = (_is_datetime, "a date and time", frozenset((dt.datetime,)))
TABLE: Rule = (_is_table, "a table", frozenset((dict,)))
ARRAY: Rule = (_is_list, "an array", frozenset((list,)))

CODE_FIELDS = {
    "commit": STR,
    "tree": STR,
    "hash": STR,
    "dirty": BOOL,
    "script": STR,
    "head": STR,
    "branch": STR,
    "detached": BOOL,
    "shallow": BOOL,
    "files": TABLE,
    "omitted": ARRAY,
    "incomplete": STR,
}
CODE_FILE_FIELDS = {"blob": STR, "dirty": BOOL}
INPUT_FIELDS = {"run": STR, "commit": STR, "output": STR, "md5": STR}
OUTPUT_FIELDS = {
    "path": STR,
    "md5": STR,
    "size": COUNT,
    "kind": STR,
    "pushed": BOOL,
    "nfiles": COUNT,
    "error": STR,
    "partial": BOOL,
}
PROGRAM_FIELDS = {
    "path": STR,
    "resolved": STR,
    "sha256": STR,
    "version": STR,
    "package": STR,
    "package_version": STR,
    "in_repo": BOOL,
    "argv": ARRAY,
    "exit_code": INT,
    "duration_s": NUMBER,
}
EXEC_FIELDS = {
    "command": ARRAY,
    "cwd": STR,
    "run_in": STR,
    "outputs": ARRAY,
    "metrics_from": ARRAY,
    "files": TABLE,
    "args": ARRAY,
}
TOP_FIELDS = {
    "command": STR,
    "status": STR,
    "name": STR,
    "started": DATETIME,
    "finished": DATETIME,
    "duration_s": NUMBER,
    "exit_code": INT,
    "experiment": STR,
    "parent": STR,
    "rerun_of": STR,
    "memo": STR,
    "note": STR,
    "params": TABLE,
    "param_sources": TABLE,
    "metrics": TABLE,
    "env": TABLE,
    "error": TABLE,
    "logs": TABLE,
    "argv": ARRAY,
    "tags": ARRAY,
    "code": TABLE,
    "inputs": ARRAY,
    "input_files": TABLE,
    "outputs": TABLE,
    "programs": ARRAY,
    "exec": TABLE,
}


def type_name(value: Any) -> str:
    """What a TOML value is, in the words of the schema ("a string", "an array", ...)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dt.datetime):
        return "a date and time"
    if isinstance(value, dt.date):
        return "a date"
    if isinstance(value, dt.time):
        return "a time"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _wrong(key: str, value: Any, rule: Rule) -> str:
    check, expected, _ = rule
    return "" if check(value) else f"'{key}' must be {expected}, not {type_name(value)}"


def _fields(prefix: str, data: Mapping[str, Any], rules: Mapping[str, Rule]) -> str:
    for key, value in data.items():
        rule = rules.get(key)
        # the message only for a wrong one; the check only for a type it does not know
        if rule is not None and type(value) not in rule[2] and not rule[0](value):
            return _wrong(f"{prefix}{key}", value, rule)
    return ""


def _strings(prefix: str, values: Any) -> str:
    """The first item of a list (`prefix[i]`) or table (`prefix.key`) that is not a string,
    as `_wrong` says it, or ""."""
    if type(values) is dict or isinstance(values, Mapping):
        for name, value in values.items():
            if not isinstance(value, str):
                return _wrong(f"{prefix}.{name}", value, STR)
        return ""
    for i, value in enumerate(values):
        if not isinstance(value, str):
            return _wrong(f"{prefix}[{i}]", value, STR)
    return ""


def safe_path(path: str) -> bool:
    """True for a relative POSIX path that stays inside its folder (no `..`, drive or `\\`)."""
    if not path or "\0" in path or "\\" in path or path.startswith("/") or DRIVE.match(path):
        return False
    parts = path.split("/")
    if len(path) > MAX_PATH or any(len(p.encode()) > MAX_NAME for p in parts):
        return False
    return ".." not in parts and any(p not in ("", ".") for p in parts)


def safe_name(name: str) -> bool:
    """True for an output name usable as one file name."""
    if not name or name in (".", "..") or len(name.encode()) > MAX_NAME:
        return False
    return not any(c in name for c in "/\\\0")


def too_deep(data: Mapping[str, Any], limit: int = MAX_DEPTH) -> bool:
    """Whether the tables and arrays of parsed TOML nest more than `limit` levels: walked a
    level at a time, without recursion (every record read by the index pays it: ~3 us)."""
    level: list[Any] = [v for v in data.values() if type(v) is dict or type(v) is list]
    for _ in range(limit):  # `level` holds the values `_ + 1` levels down
        below: list[Any] = []
        for value in level:
            items = value.values() if type(value) is dict else value
            below += [v for v in items if type(v) is dict or type(v) is list]
        if not below:
            return False
        level = below
    return True


def shallow_toml(text: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when the tables and arrays parsed from TOML `text` cannot nest more than `limit`
    levels (`too_deep` is then False without walking them): every level needs one `[`, `{`
    or `.` of its own (a table header, an array, an inline table or a dotted key), so fewer
    of them in the whole text (strings and numbers included) is a bound."""
    return text.count(b"[") + text.count(b"{") + text.count(b".") <= limit


def check_types(data: Mapping[str, Any], shallow: bool = False) -> str:
    """The first field of `data` (a parsed run.toml, schema checked) of the wrong type, or "".

    `shallow`: the caller knows `data` cannot nest more than MAX_DEPTH levels (`shallow_toml`).
    """
    if not shallow and too_deep(data):
        return f"it is nested more than {MAX_DEPTH} levels deep"
    problem = _fields("", data, TOP_FIELDS)
    if problem:
        return problem
    for key in ("argv", "tags", "param_sources", "error", "input_files"):
        if problem := _strings(key, data.get(key) or ()):
            return problem
    if problem := _fields("code.", data.get("code") or {}, CODE_FIELDS):
        return problem
    for path, item in ((data.get("code") or {}).get("files") or {}).items():
        if not _is_table(item):
            return _wrong(f"code.files.{path}", item, TABLE)
        if problem := _fields(f"code.files.{path}.", item, CODE_FILE_FIELDS):
            return problem
    if problem := _strings("code.omitted", (data.get("code") or {}).get("omitted") or ()):
        return problem
    for i, item in enumerate(data.get("inputs") or []):
        if problem := _wrong(f"inputs[{i}]", item, TABLE) or _fields(
            f"inputs[{i}].", item, INPUT_FIELDS
        ):
            return problem
        if "run" not in item:
            return f"'inputs[{i}]' has no 'run'"
    for i, item in enumerate(data.get("programs") or []):
        if problem := _wrong(f"programs[{i}]", item, TABLE) or _fields(
            f"programs[{i}].", item, PROGRAM_FIELDS
        ):
            return problem
        for j, arg in enumerate(item.get("argv") or []):
            if problem := _wrong(f"programs[{i}].argv[{j}]", arg, STR):
                return problem
    exec_table = data.get("exec") or {}
    if problem := _fields("exec.", exec_table, EXEC_FIELDS):
        return problem
    for key in ("command", "outputs", "metrics_from", "args"):
        for j, arg in enumerate(exec_table.get(key) or []):
            if problem := _wrong(f"exec.{key}[{j}]", arg, STR):
                return problem
    for name, item in (data.get("outputs") or {}).items():
        if problem := _wrong(f"outputs.{name}", item, TABLE) or _fields(
            f"outputs.{name}.", item, OUTPUT_FIELDS
        ):
            return problem
        if "path" not in item:
            return f"'outputs.{name}' has no 'path'"
    return ""


def check_paths(data: Mapping[str, Any]) -> str:
    """The first path of `data` (types checked) that leaves its folder, or "".

    Output paths are relative to the run's output folder; the script to the repository root.
    """
    script = (data.get("code") or {}).get("script", "")
    if script and not safe_path(script):
        return f"its script has an unsafe path {script!r}"
    for path in (data.get("code") or {}).get("files") or {}:
        if not safe_path(path):
            return f"its code file has an unsafe path {path!r}"
    for name, item in (data.get("outputs") or {}).items():
        if not safe_name(name):
            return f"output {name!r} has an unsafe name"
        path = item.get("path", "")
        if (path or item.get("md5")) and not safe_path(path):
            return f"output {name!r} has an unsafe path {path!r}"
    return ""
