"""Writing a run's few new objects as one small pack: two fsynced files instead of one a object.

A pack of whole (undeltified) objects with its version-2 index, in git's formats
(gitformat-pack(5)); housekeeping.py later rolls the small packs into bigger ones with deltas.
The pack is written beside its final name, fsynced, renamed into place, and its index last: git
sees a pack once its `.idx` is there, so a crash leaves at worst an unused temporary file.
"""

from __future__ import annotations

import contextlib
import os
import threading
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._hashes import sha1

TYPES = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}


def _u32(n: int) -> bytes:
    """A big-endian 32-bit number (struct.pack(">I") without importing struct)."""
    return n.to_bytes(4, "big")


def _header(kind: str, size: int) -> bytes:
    """An entry's type and size: 4 bits of size in the first byte, then 7 a byte."""
    out = bytearray()
    byte = (TYPES[kind] << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def _write_synced(files: Mapping[str, bytes]) -> None:
    """Write each new file and fsync them all at once: the fsyncs run side by side, so the
    filesystem makes both durable in about one journal commit instead of one each."""
    fds: list[int] = []
    try:
        for path, data in files.items():
            fds.append(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444))
            view = memoryview(data)
            while view:
                view = view[os.write(fds[-1], view) :]
        fsync_all(fds)
    finally:
        for fd in fds:
            os.close(fd)


def fsync_all(fds: Sequence[int]) -> None:
    """fsync every descriptor, side by side (one thread each but the last); raises the first
    failure only once all have ended."""
    errors: list[OSError] = []

    def sync(fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sync, args=(fd,)) for fd in fds[:-1]]
    for thread in threads:
        thread.start()
    if fds:
        sync(fds[-1])
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


STORE_ABOVE = 32 << 10  # bytes: bigger trees go into a run's pack stored, not compressed


def _level(kind: str, data: bytes) -> int:
    """zlib's level for one object of a run's pack: fast compression, none for a big tree.

    A big tree is a one-level shard folder of a long history written by gittrack 0.1 (3,900
    entries, 200 KiB at a million runs: 3 ms to compress, a tenth of a run's whole cost).
    Mostly ids, it shrinks by about a third; a run's pack lives only until the next roll-up
    (housekeeping.py), which compresses it (and deltas it against the tree before) as git
    does. Blobs (logs: text) are always compressed."""
    return 0 if kind == "tree" and len(data) > STORE_ABOVE else 1


def write_pack(folder: Path, objects: Mapping[str, tuple[str, bytes]], temp: str) -> Path:
    """Write {sha: (kind, data)} as pack-<checksum>.pack/.idx into `folder`; the pack's path.

    `temp` is a unique prefix for the temporary files (beside the final ones, same filesystem).
    The caller fsyncs `folder` before a ref points at the objects.
    """
    names = sorted(objects)
    body = [b"PACK" + _u32(2) + _u32(len(names))]
    offsets: dict[str, int] = {}
    crcs: dict[str, int] = {}
    at = len(body[0])
    for sha in names:
        kind, data = objects[sha]
        entry = _header(kind, len(data)) + zlib.compress(data, _level(kind, data))
        offsets[sha], crcs[sha] = at, zlib.crc32(entry)
        body.append(entry)
        at += len(entry)
    pack = b"".join(body)
    checksum = sha1(pack).digest()
    pack += checksum
    fanout = [0] * 256
    for sha in names:
        fanout[int(sha[:2], 16)] += 1
    total = 0
    for i, count in enumerate(fanout):
        total += count
        fanout[i] = total
    small: list[bytes] = []
    large: list[bytes] = []  # offsets from 2 GiB on go into a table of 64-bit ones
    for sha in names:
        if offsets[sha] < 1 << 31:
            small.append(_u32(offsets[sha]))
        else:
            small.append(_u32(1 << 31 | len(large)))
            large.append(offsets[sha].to_bytes(8, "big"))
    index = b"".join(
        [
            b"\377tOc" + _u32(2),
            b"".join(_u32(n) for n in fanout),
            b"".join(bytes.fromhex(sha) for sha in names),
            b"".join(_u32(crcs[sha]) for sha in names),
            b"".join(small),
            b"".join(large),
            checksum,
        ]
    )
    index += sha1(index).digest()
    final = folder / f"pack-{checksum.hex()}"
    tmp_pack, tmp_idx = f"{temp}.pack", f"{temp}.idx"
    try:
        _write_synced({tmp_pack: pack, tmp_idx: index})
        os.replace(tmp_pack, f"{final}.pack")
        os.replace(tmp_idx, f"{final}.idx")
    finally:
        for leftover in (tmp_pack, tmp_idx):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    return final.with_suffix(".pack")
