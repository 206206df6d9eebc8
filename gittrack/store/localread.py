"""Reading git objects and refs in-process, so that a run that only reads a few objects starts no
`git cat-file` process.

What git keeps in the plain way is read here: refs as loose files or in packed-refs, objects as
loose files or in packs through their version-2 index, deltas (by offset or by name) resolved,
`<rev>:<path>` walked through the trees (MISSING when the path names nothing there), and with a
size limit, an object over it is not inflated (its size stands for it). Anything else answers
None and the caller asks git: a revision that is not a full ref or object id, a symbolic ref
other than HEAD, replace refs, a reftable, environment that moves the object store, a pack or
index this module does not know, an object whose content does not hash to its id. A None is
never an answer about the repository: it only means "ask git".
"""

from __future__ import annotations

import os
import threading
import zlib

from .._hashes import sha1
from .trees import MODE_SUBMODULE, MODE_TREE, find_entry

_TYPES = {1: "commit", 2: "tree", 3: "blob", 4: "tag"}
_OFS_DELTA, _REF_DELTA = 6, 7
_MAX_DELTA_DEPTH = 64  # git's own packs stay within 50
SEEN_BYTES = 8 << 20  # commits and trees a reader keeps (`LocalObjects._remember`)
_ENV = ("GIT_DIR", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY", "GIT_REPLACE_REF_BASE")
_HEX = frozenset("0123456789abcdef")
ZERO = "0" * 40  # git's id of no object: a ref that does not exist


class _Unknown(Exception):
    """Something git must decide: the caller asks git."""


class _Big(Exception):
    """The object asked for is over the caller's limit: its type and size stand for it."""

    def __init__(self, kind: str, size: int) -> None:
        super().__init__(kind, size)
        self.kind, self.size = kind, size


class _Missing:
    """The answer "no such object": the path names nothing in a tree read whole."""

    __slots__ = ()


MISSING = _Missing()


class LocalObjects:
    """Objects and refs of one repository read from its files; None: ask git."""

    def __init__(self, git_dir: str, common_dir: str) -> None:
        self._git_dir = git_dir
        self._common = common_dir
        self._objects = os.path.join(common_dir, "objects")
        self._packs: list[_Pack] | None = None
        self._lock = threading.Lock()
        self._refs = not any(key in os.environ for key in _ENV) and not os.path.isdir(
            os.path.join(common_dir, "reftable")
        )  # refs as git keeps them in files
        self.enabled = self._refs and not _replaced(common_dir)
        # commits and trees already read and checked, by id: one command walks the same tip
        # commit and shard trees several times (`show`: 23 reads of 6 objects)
        self._seen: dict[str, tuple[str, bytes]] = {}
        self._seen_bytes = 0

    def read(
        self, rev: str, limit: int | None = None
    ) -> tuple[str, str, bytes | int] | _Missing | None:
        """(sha, type, content) of a full object id, "HEAD", a full ref name, or any of them
        followed by ":path" (a path in its tree); MISSING when that path names nothing; None:
        ask git. With `limit`, an object over `limit` bytes is not read: its size stands for
        its content."""
        if not self.enabled:
            return None
        base, colon, path = rev.partition(":")
        try:
            start = base if is_sha(base) else self._resolve(base)
            if start is None:
                return None
            found = self._walk(start, path) if colon else start
        except (_Unknown, OSError, zlib.error, ValueError, IndexError):
            return None
        if found is None:
            return MISSING
        sha = found
        seen = self._seen.get(sha)
        if seen is not None and (limit is None or len(seen[1]) <= limit):
            return sha, *seen
        try:
            kind, data = self._object(sha, 0, limit)
        except _Big as big:
            return sha, big.kind, big.size
        except (_Unknown, OSError, zlib.error, ValueError, IndexError):
            return None
        if _sha_of(kind, data) != sha:
            return None  # damaged: git says what is wrong
        self._remember(sha, kind, data)
        return sha, kind, data

    def _walk(self, sha: str, path: str) -> str | None:
        """The id of `path` in the tree of commit (or tree) `sha`; None when it names nothing."""
        kind, data = self._checked(sha)
        if kind == "commit":
            if not data.startswith(b"tree "):
                raise _Unknown
            kind, data = self._checked(data[5:45].decode("ascii"))
        if kind != "tree":
            raise _Unknown  # a tag, say: git peels it
        if not path:
            return _sha_of("tree", data)
        names = path.split("/")
        if any(n in ("", ".", "..") for n in names):
            raise _Unknown  # relative or odd paths: as git reads them
        for i, name in enumerate(names):
            entry = find_entry(data, name)
            if entry is None:
                return None
            mode, found = entry
            if i == len(names) - 1:
                if mode == MODE_SUBMODULE:
                    raise _Unknown
                return found
            if mode != MODE_TREE:
                return None  # a file where a folder should be: git says missing too
            kind, data = self._checked(found)
            if kind != "tree":
                raise _Unknown
        raise _Unknown  # not reached: the loop returns

    def _checked(self, sha: str) -> tuple[str, bytes]:
        seen = self._seen.get(sha)
        if seen is not None:
            return seen
        kind, data = self._object(sha, 0)
        if _sha_of(kind, data) != sha:
            raise _Unknown
        self._remember(sha, kind, data)
        return kind, data

    def _remember(self, sha: str, kind: str, data: bytes) -> None:
        """Keep a checked commit or tree for this process (an object never changes under its
        id), within SEEN_BYTES: past it, what was kept is dropped and keeping starts anew."""
        if kind not in ("commit", "tree") or len(data) > SEEN_BYTES // 8:
            return
        if self._seen_bytes + len(data) > SEEN_BYTES:
            self._seen = {}
            self._seen_bytes = 0
        self._seen[sha] = (kind, data)
        self._seen_bytes += len(data)

    # -- refs -------------------------------------------------------------------------------

    def _resolve(self, rev: str) -> str | None:
        if rev == "HEAD":
            text = _read_small(os.path.join(self._git_dir, "HEAD"))
            if text is None:
                return None
            if is_sha(text):
                return text
            if not text.startswith("ref: refs/"):
                return None
            rev = text[5:]
        if not rev.startswith("refs/") or ".." in rev or "//" in rev:
            return None
        text = _read_small(os.path.join(self._common, rev))
        if text is not None:
            return text if is_sha(text) else None  # symbolic, or not a ref file
        value = packed_value(self._common, rev)
        return None if value == ZERO else value  # exists nowhere: git says so

    def pin(self, rev: str, known: dict[str, str] | None = None) -> str:
        """`rev` as a `git cat-file` that has long been running must be asked it: a full ref
        name (before any ":path") as the commit the ref's file names now; anything else as it
        is. That git keeps its copy of packed-refs while the file's size, inode and times look
        unchanged, so after a `git gc` rewrote the file unnoticed it would go on naming a tip
        the branch has left (tests/test_branch_tip.py). `known` caches refs for one batch."""
        base, colon, path = rev.partition(":")
        if not self._refs or not base.startswith("refs/") or any(c in base for c in "^~@{ "):
            return rev
        if known is None or base not in known:
            try:
                value = self._resolve(base) or base
            except OSError:
                value = base
            if known is None:
                return value + colon + path
            known[base] = value
        return known[base] + colon + path

    # -- objects ----------------------------------------------------------------------------

    def _object(self, sha: str, depth: int, limit: int | None = None) -> tuple[str, bytes]:
        if depth > _MAX_DELTA_DEPTH:
            raise _Unknown
        loose = os.path.join(self._objects, sha[:2], sha[2:])
        try:
            fh = open(loose, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return self._packed(sha, depth, limit)
        with fh:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(fh.read(8192), 64)  # "<type> <size>\0" opens it
            header, nul, data = raw.partition(b"\0")
            kind, _, size_text = header.decode("ascii").partition(" ")
            if not nul or kind not in ("commit", "tree", "blob", "tag"):
                raise _Unknown
            size = int(size_text)
            if limit is not None and size > limit:
                raise _Big(kind, size)
            rest = inflater.unconsumed_tail + fh.read()
        data += inflater.decompress(rest, size + 1 - len(data)) if size >= len(data) else b""
        if len(data) != size or not inflater.eof:
            raise _Unknown
        return kind, data

    def _packed(self, sha: str, depth: int, limit: int | None) -> tuple[str, bytes]:
        key = bytes.fromhex(sha)
        for fresh in (False, True):  # a pack written since the last look: look again once
            for pack in self._pack_list(fresh):
                offset = pack.find(key)
                if offset is not None:
                    return pack.read(offset, depth, self, limit)
        raise _Unknown

    def _pack_list(self, fresh: bool) -> list[_Pack]:
        with self._lock:
            if self._packs is None or fresh:
                folder = os.path.join(self._objects, "pack")
                try:
                    names = [n for n in os.listdir(folder) if n.endswith(".idx")]
                except FileNotFoundError:
                    names = []
                known = {p.idx: p for p in self._packs or []}
                packs = [known.get(os.path.join(folder, n)) or _Pack(folder, n) for n in names]
                packs.sort(key=lambda p: p.mtime, reverse=True)  # the newest first, as git
                self._packs = packs
            return self._packs


class _Pack:
    """One pack and its version-2 index, read with pread (no mapping, nothing held open)."""

    def __init__(self, folder: str, idx_name: str) -> None:
        self.idx = os.path.join(folder, idx_name)
        self.pack = self.idx[:-4] + ".pack"
        try:
            self.mtime = os.stat(self.idx).st_mtime
        except OSError:
            self.mtime = 0.0

    def find(self, key: bytes) -> int | None:
        """The offset of object `key` in the pack, or None when this pack lacks it."""
        try:
            fd = os.open(self.idx, os.O_RDONLY)
        except FileNotFoundError:
            return None  # removed by a repack: another pack has it
        try:
            head = os.pread(fd, 1032, 0)  # the version, then the fanout: entry b counts
            if len(head) != 1032 or head[:8] != b"\xfftOc\x00\x00\x00\x02":  # the names
                raise _Unknown  # whose first byte is at most b
            at = 8 + 4 * key[0]
            first = int.from_bytes(head[at - 4 : at], "big") if key[0] else 0
            end = int.from_bytes(head[at : at + 4], "big")
            total = int.from_bytes(head[1028:1032], "big")
            if not first <= end <= total:
                raise _Unknown
            names = os.pread(fd, 20 * (end - first), 1032 + 20 * first)
            lo, hi = 0, len(names) // 20
            while lo < hi:  # binary search among them (sorted)
                mid = (lo + hi) // 2
                name = names[20 * mid : 20 * mid + 20]
                if name == key:
                    break
                if name < key:
                    lo = mid + 1
                else:
                    hi = mid
            else:
                return None
            mid += first
            table = 1032 + 24 * total  # names, then a CRC each, then a 4-byte offset each
            offset = int.from_bytes(os.pread(fd, 4, table + 4 * mid), "big")
            if offset & 0x80000000:  # in the table of 8-byte offsets
                large = table + 4 * total + 8 * (offset & 0x7FFFFFFF)
                offset = int.from_bytes(os.pread(fd, 8, large), "big")
            return offset
        finally:
            os.close(fd)

    def read(
        self, offset: int, depth: int, objects: LocalObjects, limit: int | None = None
    ) -> tuple[str, bytes]:
        fd = os.open(self.pack, os.O_RDONLY)
        try:
            kind, data = self._entry(fd, offset, depth, objects, limit)
        finally:
            os.close(fd)
        return kind, data

    def _entry(
        self, fd: int, offset: int, depth: int, objects: LocalObjects, limit: int | None = None
    ) -> tuple[str, bytes]:
        if depth > _MAX_DELTA_DEPTH:
            raise _Unknown
        head = os.pread(fd, 32, offset)
        byte = head[0]
        code, size, shift, at = (byte >> 4) & 7, byte & 15, 4, 1
        while byte & 0x80:
            byte = head[at]
            size |= (byte & 0x7F) << shift
            shift, at = shift + 7, at + 1
        if code in _TYPES:
            if limit is not None and size > limit:
                raise _Big(_TYPES[code], size)
            return _TYPES[code], _inflate(fd, offset + at, size)
        if code == _OFS_DELTA:
            byte = head[at]
            back, at = byte & 0x7F, at + 1
            while byte & 0x80:
                byte = head[at]
                back = ((back + 1) << 7) | (byte & 0x7F)
                at += 1
            if not 0 < back <= offset:
                raise _Unknown
            kind, base = self._entry(fd, offset - back, depth + 1, objects)
        elif code == _REF_DELTA:
            kind, base = objects._object(head[at : at + 20].hex(), depth + 1)
            at += 20
        else:
            raise _Unknown
        delta = _inflate(fd, offset + at, size)
        if limit is not None and (target := _delta_sizes(delta)[1]) > limit:
            raise _Big(kind, target)
        return kind, _apply_delta(base, delta)


def _inflate(fd: int, offset: int, size: int) -> bytes:
    """The `size` bytes of the zlib stream starting at `offset` in the pack."""
    inflater = zlib.decompressobj()
    parts: list[bytes] = []
    got = 0
    while not inflater.eof:
        data = os.pread(fd, max(4096, size + 64), offset)
        if not data:
            raise _Unknown  # a truncated pack
        offset += len(data)
        parts.append(inflater.decompress(data, size + 1 - got))  # one byte more: too long
        got += len(parts[-1])
        if got > size:
            raise _Unknown
    if got != size:
        raise _Unknown
    return b"".join(parts)


def _delta_sizes(delta: bytes) -> tuple[int, int, int]:
    """A delta's base size, result size, and where its instructions start."""
    sizes, at = [], 0
    for _ in range(2):
        value = shift = 0
        while True:
            byte = delta[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        sizes.append(value)
    return sizes[0], sizes[1], at


def _apply_delta(base: bytes, delta: bytes) -> bytes:
    """git's delta format: the sizes of base and result, then copy and insert instructions."""
    base_size, size, at = _delta_sizes(delta)
    if base_size != len(base):
        raise _Unknown
    out = bytearray()
    while at < len(delta):
        op = delta[at]
        at += 1
        if op & 0x80:  # copy from the base: offset and size bytes as the low bits say
            start = length = 0
            for bit in range(4):
                if op & (1 << bit):
                    start |= delta[at] << (8 * bit)
                    at += 1
            for bit in range(3):
                if op & (16 << bit):
                    length |= delta[at] << (8 * bit)
                    at += 1
            length = length or 0x10000
            if start + length > len(base):
                raise _Unknown
            out += base[start : start + length]
        elif op:  # insert the next `op` bytes
            out += delta[at : at + op]
            at += op
        else:
            raise _Unknown
    if len(out) != size:
        raise _Unknown
    return bytes(out)


def _replaced(common_dir: str) -> bool:
    """Whether replace refs may change what git answers (cat-file honours them)."""
    folder = os.path.join(common_dir, "refs", "replace")
    try:
        if os.listdir(folder):
            return True
    except FileNotFoundError:
        pass
    except OSError:
        return True
    try:
        with open(os.path.join(common_dir, "packed-refs"), "rb") as fh:
            return b" refs/replace/" in fh.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True


def _read_small(path: str) -> str | None:
    """A ref file's stripped text, or None when there is none."""
    try:
        with open(path, "rb") as fh:
            return fh.read(256).strip().decode("ascii", "replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _sha_of(kind: str, data: bytes) -> str:
    return sha1(f"{kind} {len(data)}\0".encode() + data).hexdigest()


def packed_value(common_dir: str, ref: str) -> str | None:
    """`ref`'s value in packed-refs: ZERO when it is not there, None when that file cannot be
    read or holds no plain value for it."""
    try:
        with open(os.path.join(common_dir, "packed-refs"), "rb") as fh:
            text = fh.read()
    except FileNotFoundError:
        return ZERO
    except OSError:
        return None
    at = text.find(f" {ref}\n".encode())
    if at == -1:
        return ZERO
    value = text[text.rfind(b"\n", 0, at) + 1 : at].decode("ascii", "replace")
    return value if is_sha(value) else None


def is_sha(value: str) -> bool:
    return len(value) == 40 and all(c in _HEX for c in value)
