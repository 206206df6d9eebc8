"""Tree objects as bytes: parsing, formatting, and editing a few entries of a big tree cheaply.

A tree on the way to a run folder holds up to 256 entries (`runs/3f/2a/`), and a shard of a
branch written by gittrack 0.1 (`runs/3f/`) about n/256 run folders: 3,900 entries (230 KB) at
a million runs. Parsing and re-sorting those in Python for every run would make recording
grow with the history, so `splice()` edits such trees in place: when every entry has the same
mode and name length (`40000 2a`, `40000 <32 hex>`), entries sit at a fixed stride,
a binary search finds the one to change, and the new tree is two slices around it. Other trees
are parsed and formatted whole (they are small).
"""

from __future__ import annotations

from collections.abc import Mapping

MODE_TREE = "40000"
MODE_BLOB = "100644"
MODE_EXEC = "100755"
MODE_LINK = "120000"
MODE_SUBMODULE = "160000"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

Entry = tuple[str, str] | None  # (mode, sha), or None to delete


def parse_tree(data: bytes) -> dict[str, tuple[str, str]]:
    """Tree object bytes -> {name: (mode, sha)}."""
    entries: dict[str, tuple[str, str]] = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        mode = data[pos:space].decode()
        name = data[space + 1 : nul].decode("utf-8", "surrogateescape")
        entries[name] = (mode, data[nul + 1 : nul + 21].hex())
        pos = nul + 21
    return entries


def format_tree(entries: Mapping[str, tuple[str, str]]) -> bytes:
    """{name: (mode, sha)} -> tree object bytes, in git's order (folders sort as "name/")."""

    def key(name: str) -> bytes:
        raw = name.encode("utf-8", "surrogateescape")
        return raw + b"/" if entries[name][0] == MODE_TREE else raw

    return b"".join(
        entries[n][0].encode()
        + b" "
        + n.encode("utf-8", "surrogateescape")
        + b"\0"
        + bytes.fromhex(entries[n][1])
        for n in sorted(entries, key=key)
    )


def tree_stride(data: bytes) -> tuple[bytes, int, int] | None:
    """(mode, name length, entry length) when every entry of `data` has the first one's mode
    and name length, so that entry i starts at i * entry length; else None."""
    space = data.find(b" ", 0, 8)
    nul = data.find(b"\0", space)
    if space < 1 or nul < 0:
        return None
    mode, name_len = data[:space], nul - space - 1
    size = nul + 21
    count, rest = divmod(len(data), size)
    if rest or count < 2:
        return None
    for i, byte in enumerate(mode + b" "):  # each a C-level comparison of every entry's byte
        if data[i::size] != bytes([byte]) * count:
            return None
    if data[nul::size] != b"\0" * count or b"\0" in data[space + 1 : nul]:
        return None
    return mode, name_len, size


def _bisect(data: bytes, name: bytes, start: int, size: int) -> int:
    """Index of the first entry whose name (at `start` within each entry) is >= `name`."""
    low, high = 0, len(data) // size
    end = start + len(name)
    while low < high:
        mid = (low + high) // 2
        if data[mid * size + start : mid * size + end] < name:
            low = mid + 1
        else:
            high = mid
    return low


def find_entry(data: bytes, name: str) -> tuple[str, str] | None:
    """The (mode, sha) of `name` in tree bytes `data`, or None."""
    stride = tree_stride(data)
    raw = name.encode("utf-8", "surrogateescape")
    if stride is None:
        return parse_tree(data).get(name)
    if len(raw) != stride[1]:
        return None  # every name of a uniform tree has the stride's length
    mode, _, size = stride
    start = len(mode) + 1
    at = _bisect(data, raw, start, size) * size
    if data[at + start : at + start + len(raw)] != raw:
        return None
    return mode.decode(), data[at + size - 20 : at + size].hex()


def splice(data: bytes, changes: Mapping[str, Entry]) -> bytes:
    """Tree bytes `data` with `changes` applied ({name: (mode, sha)}, None deletes)."""
    stride = tree_stride(data)
    if stride is not None:
        mode, name_len, size = stride
        start = len(mode) + 1
        raws = {name.encode("utf-8", "surrogateescape"): entry for name, entry in changes.items()}
        if all(
            e is None or (len(r) == name_len and e[0].encode() == mode) for r, e in raws.items()
        ):
            for raw, entry in raws.items():
                if len(raw) != name_len:
                    continue  # a deletion of a name no entry of this tree has
                at = _bisect(data, raw, start, size) * size
                found = data[at + start : at + start + len(raw)] == raw
                new = b"" if entry is None else mode + b" " + raw + b"\0" + bytes.fromhex(entry[1])
                data = data[:at] + new + data[at + size if found else at :]
            return data
    entries = parse_tree(data)
    for name, entry in changes.items():
        if entry is None:
            entries.pop(name, None)
        else:
            entries[name] = entry
    return format_tree(entries)
