"""The worker side of a Dask sweep: each task runs as its own `python -m` process on the worker.

The worker thread starts `python -m gittrack.execute.dask_worker TASK_JSON` in the repository (or
a temporary checkout of the task's code), announces the run id as soon as the run is staged,
watches for cancellation, and sends back the run (and, without a shared filesystem, its folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import store
from ..model.record import RunRecord
from ..store import staging
from .executors import Task

POLL_S = 0.05
CANCEL_POLL_S = 0.5


# -- on the worker --------------------------------------------------------------------------


def execute(payload: dict[str, Any], bundle: bytes | None = None) -> dict[str, Any]:
    """Run one task on a Dask worker; returns the run (and in clone mode its folder's files)."""
    from distributed import Event, get_worker

    worker = get_worker()
    cancel = Event(payload["topic"] + "-cancel")
    workdir = None
    if payload["shared_repo"]:
        repo = store.find_repo(payload["shared_repo"])
    else:
        assert bundle is not None
        cache = Path(tempfile.gettempdir()) / f"gittrack-dask-{os.getuid()}"
        cache.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="task-", dir=cache))
        repo = store.clone_from_bundle(
            bundle, payload["code"], payload["settings"], workdir / "repo", cache
        )
    try:
        repo.make_dir(repo.state_dir)
        fd, name = tempfile.mkstemp(prefix="run-id-", dir=repo.state_dir)
        os.close(fd)
        id_file = Path(name)
        result_file = id_file.with_suffix(".result")
        env = {
            **os.environ,
            "GITTRACK_REPO": str(repo.root),
            "GITTRACK_DASK_ID_FILE": str(id_file),
            "GITTRACK_DASK_RESULT_FILE": str(result_file),
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "gittrack.execute.dask_worker",
                json.dumps(payload["task"]),
            ],
            cwd=repo.root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        stderr: list[bytes] = []
        reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        run_id, announced, last_check, signalled = "", False, 0.0, False
        while proc.poll() is None:
            if not run_id:
                run_id = id_file.read_text().strip()
            if run_id and not announced:
                with contextlib.suppress(OSError, ValueError):  # ValueError: RecordError
                    path = repo.state_dir / "running" / run_id / "run.toml"
                    staged = staging.read_record_file(path).decode()
                    worker.log_event(
                        payload["topic"], {"key": payload["key"], "run": run_id, "record": staged}
                    )
                    announced = True
            if not signalled and time.monotonic() - last_check > CANCEL_POLL_S:
                last_check = time.monotonic()
                with contextlib.suppress(Exception):
                    if cancel.is_set():  # once: a second Ctrl-C would cut its recording short
                        proc.send_signal(signal.SIGINT)
                        signalled = True
            time.sleep(POLL_S)
        run_id = run_id or id_file.read_text().strip()
        id_file.unlink()
        reported: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            reported = json.loads(result_file.read_text())
            result_file.unlink()
        if reported.get("reused"):
            return {
                "run": reported.get("run_id", ""),
                "status": reported.get("status", ""),
                "reused": True,
            }
        run_id = reported.get("run_id") or run_id
        reader.join(timeout=5)
        result: dict[str, Any] = {
            "run": run_id,
            "status": "error",
            "stderr": b"".join(stderr).decode(errors="replace")[-4000:],
        }
        data = store.read_record_bytes(repo, run_id) if run_id else None
        if data is None:
            return result
        record = RunRecord.from_toml(data, run_id)
        result["status"] = record.status
        if not payload["shared_repo"]:
            result["data"] = _push_outputs(repo)
            result["files"] = store.run_folder_contents(repo, run_id)
        return result
    finally:
        repo.close()
        if workdir is not None:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


def _die_with_parent() -> None:
    """In the child: die with the worker, so that a killed worker leaves no orphan run."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.setpgrp()  # Ctrl-C on the client's terminal reaches the client only


def _push_outputs(repo: store.Repo) -> Any:
    """Push the run's outputs from the worker's checkout to the DVC remote."""
    from ..ops.data import push_outputs

    result = push_outputs(repo)
    return result if isinstance(result, int | str | list | dict | None) else str(result)


def _announcer(path: str) -> Callable[[str], None] | None:
    """A callback writing the task's run id to `path`, for the worker to announce it."""
    if not path:
        return None

    def announce(run_id: str) -> None:
        Path(path + ".tmp").write_text(run_id)
        os.replace(path + ".tmp", path)

    return announce


def _main(argv: list[str]) -> int:
    """`python -m gittrack.execute.dask_worker TASK_JSON`: run one task in this process."""
    from . import executors

    task = Task(**json.loads(argv[0]))
    task.script = str(Path(task.script).resolve())
    task.repo, task.cwd = os.environ.get("GITTRACK_REPO"), os.getcwd()
    result = executors.execute(
        task, on_start=_announcer(os.environ.get("GITTRACK_DASK_ID_FILE", ""))
    )
    if path := os.environ.get("GITTRACK_DASK_RESULT_FILE"):
        Path(path).write_text(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "status": result.status,
                    "reused": result.reused,
                    "error": result.error,
                }
            )
        )
    if result.error and result.status == "error":
        print(result.error, file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
