"""Turning a value a run returns or saves into a file or folder in its output folder.

`place()` knows every output kind: a path the run wrote (used in place or copied in), bytes,
a numpy array (`.npy`), a pandas table (`.parquet`, else `.csv`), a list or tuple (`.json`).
A new output kind is a branch here and its reader in library/outputs.py `load_output()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..errors import OutputError, OutputNameError, UnsupportedOutput

if TYPE_CHECKING:
    from .. import store


def validate_name(name: object) -> str:
    """`name` when it is usable as an output name (a plain file name), else OutputNameError."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 200
        or name != name.strip()
        or name.startswith(".")
        or any(c in name for c in "/\\\0")
        or os.path.isabs(name)
    ):
        raise OutputNameError(name)
    return name


@dataclass
class Placed:
    """An output as a file or folder in the output folder (relative path), hashed if known."""

    path: str
    kind: str
    md5: str = ""
    size: int = -1


def place(name: str, value: Any, out_dir: Path, *, repo: store.Repo | None = None) -> Placed:
    """Write `value` into `out_dir` as output `name`; UnsupportedOutput for other types.

    Written once, hashed while written, and (when big, with `repo`'s remote a local folder)
    copied to the remote at the same time: see `datastore.output_writer`.
    """
    from ..store import datastore

    out_dir.mkdir(parents=True, exist_ok=True)
    top = type(value).__module__.split(".")[0]
    if isinstance(value, os.PathLike):
        return _path(name, Path(os.fspath(value)), out_dir, repo)
    if isinstance(value, bytes | bytearray | memoryview):
        file = name if PurePosixPath(name).suffix else f"{name}.bin"
        size = memoryview(value).nbytes
        with datastore.output_writer(out_dir / file, size=size, repo=repo) as writer:
            writer.write(value)
        return Placed(file, "bytes", writer.md5.hexdigest(), writer.size)
    if top == "numpy" and hasattr(value, "dtype"):
        import numpy as np

        array = np.asarray(value)
        if array.dtype.hasobject:
            raise UnsupportedOutput(name, value, "arrays of Python objects need pickling")
        file = f"{name}.npy"
        size = array.nbytes
        with datastore.output_writer(out_dir / file, size=size, repo=repo) as writer:
            write_npy(writer, array)
        return Placed(file, "npy", writer.md5.hexdigest(), writer.size)
    if top == "pandas" and hasattr(value, "to_csv"):
        return _table(name, value, out_dir)
    if isinstance(value, list | tuple):
        try:
            text = json.dumps(value, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise UnsupportedOutput(name, value, f"not JSON: {exc}") from exc
        file = f"{name}.json"
        with datastore.hashing_writer(out_dir / file) as writer:
            writer.write(text.encode())
        return Placed(file, "json", writer.md5.hexdigest(), writer.size)
    raise UnsupportedOutput(name, value)


def write_npy(fh: Any, array: Any) -> None:
    """The bytes `np.save` writes, a C-ordered array's data passed on without a copy."""
    import io

    import numpy as np

    header = io.BytesIO()
    try:
        if not array.flags.c_contiguous or array.dtype.itemsize == 0:
            raise ValueError("not C-ordered bytes")
        np.lib.format.write_array_header_1_0(
            header, np.lib.format.header_data_from_array_1_0(array)
        )
    except (ValueError, UnicodeEncodeError):  # a header np.save writes in another version
        np.save(fh, array, allow_pickle=False)
        return
    fh.write(header.getvalue())
    data = array.reshape(-1).view(np.uint8)
    for start in range(0, len(data), 16 << 20):
        fh.write(data[start : start + (16 << 20)])


def _table(name: str, table: Any, out_dir: Path) -> Placed:
    import pandas as pd

    from ..store.datastore import partial_path

    frame = table.to_frame() if isinstance(table, pd.Series) else table
    try:
        try:
            import pyarrow  # noqa: F401

            file, kind = f"{name}.parquet", "parquet"
            frame.to_parquet(partial_path(out_dir / file))
        except ImportError:
            file, kind = f"{name}.csv", "csv"
            index = not isinstance(frame.index, pd.RangeIndex)
            frame.to_csv(partial_path(out_dir / file), index=index)
        os.replace(partial_path(out_dir / file), out_dir / file)  # complete: now an output
        return Placed(file, kind)
    except BaseException:
        for suffix in (".parquet", ".csv"):
            with contextlib.suppress(OSError):
                partial_path(out_dir / f"{name}{suffix}").unlink()
        raise


def _path(name: str, path: Path, out_dir: Path, repo: store.Repo | None) -> Placed:
    """A path the run wrote: used in place inside the output folder, else copied in."""
    from ..store import datastore

    path = path.expanduser().absolute()
    if not path.exists():
        raise OutputError(
            f"Output '{name}' names {path}, which does not exist; write it before returning it."
        )
    kind = "dir" if path.is_dir() else "file"
    with contextlib.suppress(ValueError):  # a symlink in the output folder stays one (see add)
        rel = (Path(os.path.realpath(path.parent)) / path.name).relative_to(out_dir.resolve())
        if not rel.parts:
            raise OutputError(
                f"Output '{name}' is the run's output folder itself; everything in it is kept "
                "anyway, so return its files or nothing."
            )
        return Placed(rel.as_posix(), kind)
    dest = out_dir / path.name
    if dest.exists():
        dest = out_dir / f"{name}-{path.name}"
    if kind == "dir":
        tmp = datastore.partial_path(dest)
        try:
            shutil.copytree(path, tmp, symlinks=False)
            os.replace(tmp, dest)
        except (OSError, shutil.Error):
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Placed(dest.name, kind)
    size = path.stat().st_size
    with datastore.output_writer(dest, size=size, repo=repo) as writer, open(path, "rb") as src:
        while chunk := src.read(datastore.CHUNK):
            writer.write(chunk)
    return Placed(dest.name, kind, writer.md5.hexdigest(), writer.size)


def kind_of(path: Path) -> str:
    return {".npy": "npy", ".parquet": "parquet", ".csv": "csv", ".json": "json"}.get(
        path.suffix, "file"
    )
