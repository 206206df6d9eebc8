"""Big outputs the fast way: hashed while written, teed into a local remote, no DVC imported."""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import mmap
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import run_python, write_script

from gittrack import store
from gittrack.library.run import Run
from gittrack.recording.outputs import place
from gittrack.store import datastore, localobjects
from gittrack.store.localobjects import ColdCopy
from gittrack.store.safefs import THREAD_MIN, hashing_writer

MiB = 1 << 20

# A run returning a 24 MiB array (over the 16 MiB from which it is teed to the remote); at exit
# it says which DVC modules the process imported.
BIG_SIM = """\
import atexit, json, sys
import click, numpy as np, gittrack

atexit.register(lambda: print(json.dumps(sorted(
    m for m in sys.modules if m.split(".")[0] in ("dvc", "dvc_data", "dvc_objects")))))


@gittrack.command()
@click.option("--seed", type=int, default=1)
def main(seed):
    return {"field": np.arange(3 << 20, dtype=np.float64) + seed}


if __name__ == "__main__":
    main()
"""


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def record_of(repo: Path) -> dict:
    run = Run("latest", repo)
    return tomllib.loads(store.read_record_bytes(store.find_repo(repo), run.id).decode())


def object_path(root: Path, md5: str) -> Path:
    return root / "files" / "md5" / md5[:2] / md5[2:]


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_the_hash_computed_while_writing_is_the_md5_of_the_file_and_of_its_tee(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    pieces = [rng.bytes(n) for n in (10, THREAD_MIN, 5 * MiB, 1, THREAD_MIN - 1, 2 * MiB + 3, 0)]
    pieces.append(bytearray(rng.bytes(3 * MiB)))
    pieces.append(memoryview(np.arange(MiB, dtype=np.int32)))  # 4 MiB of int32, not bytes
    tee = io.BytesIO()
    with hashing_writer(tmp_path / "out.bin", tee) as writer:
        for piece in pieces:
            writer.write(piece)
    data = (tmp_path / "out.bin").read_bytes()
    assert data == b"".join(bytes(p) for p in pieces)
    assert writer.md5.hexdigest() == hashlib.md5(data).hexdigest()
    assert writer.size == len(data)
    assert tee.getvalue() == data and not writer.tee_failed


ARRAYS = {
    "40 MiB of float64": np.arange(5 * MiB, dtype=np.float64).reshape(-1, 1024),
    "Fortran order": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "a strided view": np.arange(100)[::3],
    "big-endian": np.arange(10, dtype=">i4"),
    "0-d": np.array(3.5),
    "empty": np.zeros((0, 4)),
    "booleans": np.array([True, False, True]),
    "datetimes": np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[D]"),
    "unicode strings": np.array(["a", "ünï"]),
    "a structured array": np.zeros(3, dtype=[("x", "f8"), ("y", "i2")]),
    "unicode field names (version 3)": np.zeros(2, dtype=[("ünï", "f8")]),
}


@pytest.mark.parametrize("what", list(ARRAYS))
def test_an_array_output_is_byte_for_byte_what_np_save_writes(tmp_path: Path, what: str) -> None:
    array = ARRAYS[what]
    np.save(tmp_path / "plain.npy", array)
    placed = place("field", array, tmp_path / "out")
    written = tmp_path / "out" / placed.path
    assert written.read_bytes() == (tmp_path / "plain.npy").read_bytes()
    assert placed.md5 == md5_of(written) and placed.size == written.stat().st_size
    np.testing.assert_array_equal(np.load(written), array)


def test_a_failing_tee_costs_only_the_copy(tmp_path: Path) -> None:
    tee = open(tmp_path / "tee.bin", "wb")  # noqa: SIM115 (closed at once: writes fail)
    tee.close()
    with hashing_writer(tmp_path / "out.bin", tee) as writer:
        writer.write(b"x" * 10)
        writer.write(b"y" * (2 * MiB))
    assert writer.tee_failed
    assert (tmp_path / "out.bin").read_bytes() == b"x" * 10 + b"y" * (2 * MiB)
    assert writer.md5.hexdigest() == md5_of(tmp_path / "out.bin")


def test_a_big_returned_array_is_cached_and_pushed_without_importing_dvc(
    tracked_repo: Path,
) -> None:
    write_script(tracked_repo, "big.py", BIG_SIM)
    proc = run_python(tracked_repo, "big.py", "--seed", "3")
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []  # no DVC module imported
    rec = record_of(tracked_repo)
    field = rec["outputs"]["field"]
    assert field["pushed"] is True and field["size"] == 24 * MiB + 128  # + the .npy header
    out = tracked_repo / ".gittrack" / "outputs" / rec["id"] / "field.npy"
    np.testing.assert_array_equal(np.load(out), np.arange(3 << 20, dtype=np.float64) + 3)
    repo = store.find_repo(tracked_repo)
    cached = datastore.cache_dir(repo) / "files" / "md5" / field["md5"][:2] / field["md5"][2:]
    remote = Path(datastore.remote_url(repo))
    for path in (out, cached, object_path(remote, field["md5"])):
        assert md5_of(path) == field["md5"], path
    assert cached.stat().st_mode & 0o777 == 0o444  # protected as DVC protects its cache
    assert out.samefile(cached)  # linked into the cache, not copied
    assert [p.name for p in files_in(remote) if p.name.endswith(".tmp")] == []


def test_a_remote_filling_up_during_the_copy_leaves_the_run_unpushed_until_gittrack_push(
    tracked_repo: Path, small_disk: Callable[[str], Path]
) -> None:
    remote = small_disk("8m")  # the 24 MiB copy runs out of space a third of the way
    assert run_python(tracked_repo, "-m", "gittrack", "remote", "set", str(remote)).returncode == 0
    write_script(tracked_repo, "big.py", BIG_SIM)
    ran = run_python(tracked_repo, "big.py")
    assert "Traceback" not in ran.stderr, ran.stderr
    assert "not pushed" in ran.stderr and "'gittrack push' sends them later" in ran.stderr
    rec = record_of(tracked_repo)
    assert rec["status"] == "completed"
    field = rec["outputs"]["field"]
    assert field.get("pushed", False) is False
    assert files_in(remote) == []  # neither the object nor the cut-short copy is left
    status = run_python(tracked_repo, "-m", "gittrack", "status", check=False)
    assert "1 output(s) not pushed" in status.stdout + status.stderr
    subprocess.run(["mount", "-o", "remount,size=64m", str(remote)], check=True)
    pushed = run_python(tracked_repo, "-m", "gittrack", "push")
    assert "Traceback" not in pushed.stderr, pushed.stderr
    assert md5_of(object_path(remote, field["md5"])) == field["md5"]
    status = run_python(tracked_repo, "-m", "gittrack", "status")
    assert "not pushed" not in status.stdout + status.stderr


KILLED_SIM = """\
import os, signal, threading, time
from pathlib import Path
import click, numpy as np, gittrack

REMOTE = Path(os.environ["REMOTE"]) / "files" / "md5"


def kill_once_copying():
    while True:  # the tee's temp file in the remote, partly written: this process dies now
        for tmp in REMOTE.glob(".gittrack-*.tmp") if REMOTE.is_dir() else ():
            if tmp.stat().st_size > 0:
                os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.0005)


@gittrack.command()
def main():
    field = np.arange(8 << 20, dtype=np.float64)  # 64 MiB
    threading.Thread(target=kill_once_copying, daemon=True).start()
    return {"field": field}


if __name__ == "__main__":
    main()
"""


def test_a_run_killed_while_copying_to_the_remote_puts_no_object_there(
    tracked_repo: Path,
) -> None:
    remote = Path(datastore.remote_url(store.find_repo(tracked_repo)))
    write_script(tracked_repo, "killed.py", KILLED_SIM)
    proc = run_python(tracked_repo, "killed.py", check=False, env={"REMOTE": str(remote)})
    assert proc.returncode == -9, proc.stderr
    objects = [p for p in files_in(remote / "files" / "md5")]
    assert objects and all(p.name.startswith(".gittrack-") for p in objects)  # only the temp
    time.sleep(0.1)
    run_python(tracked_repo, "-m", "gittrack", "doctor", check=False)  # commits the died run
    rec = record_of(tracked_repo)
    assert rec["status"] == "died"
    assert not any(o.get("md5") and o.get("pushed") for o in rec.get("outputs", {}).values())
    gc = run_python(tracked_repo, "-m", "gittrack", "gc")
    assert "Traceback" not in gc.stderr
    assert files_in(remote / "files" / "md5") == []  # the cut-short copy is cleaned up


def cached_bytes(path: Path) -> int:
    """How many bytes of `path` the page cache holds now (mincore over a mapping of it)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        mapping = mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY)  # writable: ctypes
    pages = -(-size // mmap.PAGESIZE)
    vec = (ctypes.c_ubyte * pages)()
    start = ctypes.c_char.from_buffer(mapping)
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.mincore(ctypes.c_void_p(ctypes.addressof(start)), ctypes.c_size_t(size), vec)
    del start
    mapping.close()
    assert rc == 0, os.strerror(ctypes.get_errno())
    return sum(v & 1 for v in vec) * mmap.PAGESIZE


def direct_writes_work(folder: Path) -> bool:
    """True when `folder`'s filesystem takes O_DIRECT writes (tmpfs before Linux 6.6 does not)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fd = os.open(folder / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT)
    except OSError:
        return False
    try:
        os.write(fd, mmap.mmap(-1, mmap.PAGESIZE))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        (folder / "probe").unlink()


@pytest.mark.parametrize("direct", [True, False])
def test_a_cold_copy_holds_exactly_the_bytes_written(tmp_path: Path, direct: bool) -> None:
    rng = np.random.default_rng(1)
    sizes = (128, 3 * MiB, 1, 0, 5, MiB - 7, 2 * MiB, 77, MiB)
    pieces = [rng.bytes(n) for n in sizes] + [memoryview(np.arange(MiB, dtype=np.int16))]
    copy = ColdCopy(tmp_path / "copy.bin", direct=direct)
    for piece in pieces:
        assert copy.write(piece) == memoryview(piece).nbytes
    copy.close()
    copy.close()  # idempotent, as a file's close is
    assert (tmp_path / "copy.bin").read_bytes() == b"".join(bytes(p) for p in pieces)


def test_a_big_output_is_copied_to_the_remote_around_the_page_cache(
    tracked_repo: Path,
) -> None:
    remote = Path(datastore.remote_url(store.find_repo(tracked_repo)))
    if not direct_writes_work(remote):
        pytest.skip("the remote's filesystem takes no O_DIRECT writes")
    write_script(tracked_repo, "big.py", BIG_SIM)
    run_python(tracked_repo, "big.py", "--seed", "5")
    rec = record_of(tracked_repo)
    field = rec["outputs"]["field"]
    out = tracked_repo / ".gittrack" / "outputs" / rec["id"] / "field.npy"
    copy = object_path(remote, field["md5"])
    assert cached_bytes(out) >= out.stat().st_size // 2  # the run's own, in memory to be read
    assert cached_bytes(copy) <= mmap.PAGESIZE  # the remote's: on disk only (but its tail)
    assert field["pushed"] is True and md5_of(copy) == field["md5"]


def test_a_cold_copy_to_a_slow_disk_goes_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not direct_writes_work(tmp_path):
        pytest.skip("this filesystem takes no O_DIRECT writes")
    monkeypatch.setattr(localobjects, "SLOW_BYTES_S", 1 << 50)  # any disk is slow at 1 PiB/s
    data = np.random.default_rng(2).bytes(localobjects.JUDGED_AFTER * MiB + 3 * MiB + 5)
    copy = ColdCopy(tmp_path / "copy.bin")
    copy.write(data)
    assert not copy.direct
    copy.close()
    assert (tmp_path / "copy.bin").read_bytes() == data
    rest = len(data) - localobjects.JUDGED_AFTER * MiB
    assert cached_bytes(tmp_path / "copy.bin") >= rest  # what followed the verdict is cached
