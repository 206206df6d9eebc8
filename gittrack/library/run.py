"""Run handles and how a user's reference (id, prefix, name, `latest`) resolves to runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import store
from .._ids import short
from ..errors import RecordError, RunNotFound
from ..index.db import Index
from ..model.record import (
    MAX_RECORD_BYTES,
    Code,
    Input,
    Output,
    RunRecord,
    legacy_run_folder,
    run_folder,
    too_large,
)
from .consumers import consumed
from .resolve import (
    MIN_PREFIX as MIN_PREFIX,
    named as named,
    resolve_id as resolve_id,
    suggest as suggest,
)


def open_repo(repo: str | os.PathLike[str] | store.Repo | None = None) -> store.Repo:
    """A Repo from a path, an existing Repo, GITTRACK_REPO or the current directory."""
    if isinstance(repo, store.Repo):
        return repo
    return store.find_repo(repo or os.environ.get("GITTRACK_REPO") or None)


def project_settings(repo: str | os.PathLike[str] | store.Repo | None = None) -> Any:
    """The project's settings (store.config.Settings): pyproject/gittrack.toml, env applied."""
    from ..store.config import settings

    return settings(open_repo(repo))


class Run:
    """A recorded run: its record's fields, and its outputs on demand.

    `gittrack.Run("3f2a")` resolves an id, prefix, name or `latest` in the current repository.
    """

    def __init__(
        self,
        ref: str,
        repo: str | os.PathLike[str] | store.Repo | None = None,
        *,
        record: RunRecord | None = None,
        commit: str = "",
    ) -> None:
        self._repo = open_repo(repo)
        if record is None:
            run_id = resolve_id(self._repo, ref)
            self._record: RunRecord | None = None
            self.id = run_id
        else:
            self.id = record.id
            self._record = record
        self._commit = commit

    @property
    def repo(self) -> store.Repo:
        return self._repo

    @property
    def record(self) -> RunRecord:
        if self._record is None:
            data = store.read_record_bytes(self._repo, self.id)
            if data is None:
                raise RunNotFound(self.id)
            self._record = RunRecord.from_toml(data, self.id)
        return self._record

    @property
    def short(self) -> str:
        return short(self.id)

    name = property(lambda self: self.record.name)
    status = property(lambda self: self.record.status)
    command = property(lambda self: self.record.command)
    experiment = property(lambda self: self.record.experiment)

    @property
    def params(self) -> dict[str, Any]:
        self._read()
        return self.record.params

    @property
    def metrics(self) -> dict[str, Any]:
        self._read()
        return self.record.metrics

    def _read(self) -> None:
        """Inside a tracked run (or a notebook run by one), this run becomes one of its inputs."""
        from .consumers import active

        if active():
            consumed(self.id, self.commit)

    @property
    def outputs(self) -> dict[str, Output]:
        return self.record.outputs

    @property
    def inputs(self) -> list[Input]:
        return self.record.inputs

    @property
    def code(self) -> Code:
        return self.record.code

    @property
    def env(self) -> dict[str, Any]:
        return self.record.env

    @property
    def commit(self) -> str:
        """The commit on the runs branch that recorded this run."""
        if not self._commit:
            row = Index(self._repo).get(self.id)
            self._commit = row["commit"] if row else ""
        return self._commit

    def to_json(self) -> dict[str, Any]:
        """The record in its one JSON form, with its commit and its current tags and note."""
        row = Index(self._repo).get(self.id)
        if row and row["record"]:
            self._commit = self._commit or row["commit"]
            return dict(row["record"]) | {"commit": row["commit"]}
        return self.record.to_json_dict() | {"commit": self.commit}

    def path(self, name: str) -> Path:
        """Local path of output `name`, fetched from the cache or remote when needed."""
        from . import outputs

        path = outputs.output_path(self, name)
        self._consumed(name)
        return path

    def load(self, name: str) -> Any:
        """Output `name` loaded back: numpy arrays, DataFrames for tables, paths for files."""
        from . import outputs

        value = outputs.load_output(self, name)
        self._consumed(name)
        return value

    def _consumed(self, name: str) -> None:
        """Inside a tracked run, record output `name` of this run as one of its inputs."""
        output = self.record.outputs.get(name)
        consumed(self.id, self.commit, name, output.md5 if output else "")

    def __deepcopy__(self, memo: dict[int, Any]) -> Run:
        return self  # a handle: records holding it as a param value copy it as is

    def __repr__(self) -> str:
        return f"<Run {self.short} {self.status}>"

    def _repr_html_(self) -> str:
        """The run in a notebook: status, params, metrics, outputs and inputs."""
        from .notebook import run_html

        return run_html(self)

    def lineage(self, downstream: bool = False) -> Any:
        """Where this run came from (or, `downstream`, what used it); shown as SVG in a notebook."""
        from .notebook import LineageSVG

        return LineageSVG(self, downstream)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


def iter_runs(repo: store.Repo, ids: list[str]) -> Iterator[Run | RecordError]:
    """Runs for ids, reading their records through one git process; unreadable ones as errors."""
    reader = repo.reader()
    tip = store.tip(repo)
    at = tip[0] if tip else store.RUNS_REF  # one tip for all
    for start in range(0, len(ids), 1000):  # bounded memory, and a second look at few
        chunk = ids[start : start + 1000]
        revs = [f"{at}:{run_folder(i)}/run.toml" for i in chunk]
        found = [data for _, data in reader.read_many_limited(revs, MAX_RECORD_BYTES)]
        legacy = [n for n, data in enumerate(found) if data is None]
        if legacy:  # folders gittrack 0.1 wrote, read where they are
            revs = [f"{at}:{legacy_run_folder(chunk[n])}/run.toml" for n in legacy]
            again = reader.read_many_limited(revs, MAX_RECORD_BYTES)
            for n, (_, data) in zip(legacy, again, strict=True):
                found[n] = data
        for run_id, data in zip(chunk, found, strict=True):
            try:
                if data is None:
                    raise RecordError(run_id, "run.toml is missing")
                if isinstance(data, int):
                    raise RecordError(run_id, too_large(data))
                yield Run(run_id, repo, record=RunRecord.from_toml(data, run_id))
            except RecordError as exc:
                yield exc
