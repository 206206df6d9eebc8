"""Outputs through DVC: hash, cache, push and fetch objects, pointer files and remote settings.

The facade of the modules that talk to DVC. They use DVC's data layer (dvc-data object
databases, dvc-objects filesystems) directly instead of `dvc add` / `dvc push`: a file is hashed
once, while it is written or streamed, linked into the cache (reflink, hardlink, else copy) and
copied once to the remote. The cache and remote use DVC 3's `files/md5/<2>/<30>` layout, so the
real `dvc` CLI reads them.

- `dvcconfig.py`: where the cache and the default remote live, `.dvc/config`, set the remote;
- `localobjects.py`: object folders written without DVC (a run's file outputs: link into the
  cache, tee into a local-folder remote while writing);
- `datacache.py`: the cache (add files and folders, check, materialise, unused objects);
- `dataremote.py`: the remote (push, fetch, what it holds, its ledger, gc).

DVC itself is imported only for folders, cloud remotes and repository-wide operations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from .. import store
from ..errors import FULL_ERRNOS as FULL_ERRNOS
from .datacache import Stored as Stored, pointer_file as pointer_file
from .dataremote import DataRemote
from .dvcconfig import (
    CONFIG_PATH as CONFIG_PATH,
    DVC_GITIGNORE as DVC_GITIGNORE,
    DVCIGNORE as DVCIGNORE,
    HASH as HASH,
    LAYOUT as LAYOUT,
    REMOTE_NAME as REMOTE_NAME,
    cache_dir as cache_dir,
    config_text as config_text,
    default_remote_dir as default_remote_dir,
    initial_files as initial_files,
    is_local,
    local_path,
    remote_url as remote_url,
    set_remote as set_remote,
)
from .localobjects import PREPUSH_MIN_BYTES as PREPUSH_MIN_BYTES, RemoteTee
from .safefs import (
    CHUNK as CHUNK,
    PARTIAL as PARTIAL,
    TMP_PREFIX as TMP_PREFIX,
    HashingWriter as HashingWriter,
    hash_file as hash_file,
    hashing_writer as hashing_writer,
    partial_path as partial_path,
)


class Store(DataRemote):
    """The repository's DVC cache and its default remote, as dvc-data object databases."""


def remote_objects(repo: store.Repo) -> Path | None:
    """The object folder of the default remote when it is a local folder that exists."""
    url = remote_url(repo)
    if not url or not is_local(url):
        return None
    root = Path(local_path(url))
    return root.joinpath(*LAYOUT) if root.is_dir() else None


@contextlib.contextmanager
def output_writer(
    path: Path, *, size: int = -1, repo: store.Repo | None = None
) -> Iterator[HashingWriter]:
    """`hashing_writer(path)` that, for an output of `size` >= 16 MiB bound for a local-folder
    remote of `repo`, also copies the bytes there as they are written (`RemoteTee`).

    The copy becomes the remote's object only once the output is whole, so the push at the
    run's end finds it there; if the copy fails, that push sends the object the ordinary way.
    """
    tee = None
    if repo is not None and size >= PREPUSH_MIN_BYTES:
        with contextlib.suppress(OSError):
            tee = RemoteTee.open(remote_objects(repo), size)
    try:
        with hashing_writer(path, tee.fh if tee else None) as writer:
            yield writer
    except BaseException:
        if tee is not None:
            tee.drop()
        raise
    if tee is not None:
        tee.finish(writer.md5.hexdigest(), writer.size, writer.tee_failed)
