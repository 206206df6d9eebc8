"""`json.dumps` for the plain values a run writes while it records (its memo key, its heartbeat)
without importing json, about 1.5 ms of every run; anything else is json's own work.

The text is exactly json's (default separators, `ensure_ascii`, NaN and Infinity): values of
exactly the types None, bool, int, float, str, list, tuple and dict with str keys are written
here, and so are what `default` turns other values into; any other shape (a subclass, a key
that is not a str, a value that holds itself) is handed to `json.dumps` whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_MAX_DEPTH = 100  # deeper: json's own encoder says what it says


class _Other(Exception):
    """A value this module does not write: json writes the whole value."""


def dumps(
    value: Any, *, sort_keys: bool = False, default: Callable[[Any], Any] | None = None
) -> str:
    """As `json.dumps(value, sort_keys=sort_keys, default=default)`."""
    out: list[str] = []
    try:
        _write(value, sort_keys, default, out, 0)
    except _Other:
        import json

        return json.dumps(value, sort_keys=sort_keys, default=default)
    return "".join(out)


def _write(
    value: Any, sort_keys: bool, default: Callable[[Any], Any] | None, out: list[str], depth: int
) -> None:
    if depth > _MAX_DEPTH:
        raise _Other
    kind = type(value)
    if kind is str:
        out.append(_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        out.append(int.__repr__(value))
    elif kind is float:
        out.append(_float(value))
    elif kind is list or kind is tuple:
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(", ")
            _write(item, sort_keys, default, out, depth + 1)
        out.append("]")
    elif kind is dict:
        if any(type(key) is not str for key in value):
            raise _Other
        out.append("{")
        for i, (key, item) in enumerate(sorted(value.items()) if sort_keys else value.items()):
            if i:
                out.append(", ")
            out.append(_string(key))
            out.append(": ")
            _write(item, sort_keys, default, out, depth + 1)
        out.append("}")
    elif default is not None and not isinstance(value, str | int | float | list | tuple | dict):
        _write(default(value), sort_keys, default, out, depth + 1)
    else:
        raise _Other


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == -float("inf"):
        return "-Infinity"
    return float.__repr__(value)


def _string(text: str) -> str:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    parts = ['"']
    for char in text:
        if char in _ESCAPES:
            parts.append(_ESCAPES[char])
        elif " " <= char <= "~":
            parts.append(char)
        else:
            code = ord(char)
            if code > 0xFFFF:  # as a UTF-16 surrogate pair
                code -= 0x10000
                parts.append(f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}")
            else:
                parts.append(f"\\u{code:04x}")
    parts.append('"')
    return "".join(parts)
