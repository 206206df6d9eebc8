"""The shared cat-file reader: nested queries, loops left early, several threads."""

from __future__ import annotations

import threading
from pathlib import Path

from gittrack import store
from gittrack.model.record import RunRecord


def test_reader_survives_nesting_early_exit_and_threads(tracked_repo: Path) -> None:
    repo = store.find_repo(tracked_repo)
    ids = [f"{i:032x}" for i in range(1, 41)]
    store.import_runs(repo, (RunRecord(id=i, command="sim.py", status="completed") for i in ids))
    revs = [f"{store.RUNS_REF}:runs/{i[:2]}/{i}/run.toml" for i in ids]
    reader = repo.reader()

    # a query inside a read_many loop goes to a process of its own
    for rev, data in reader.read_many(revs[:3]):
        assert data is not None and rev.split("/")[-2].encode() in data
        nested = reader.read(revs[-1])
        assert nested is not None and ids[-1].encode() in nested[2]

    # a loop left early leaves the shared process in step
    for _ in reader.read_many(revs):
        break
    again = store.find_repo(tracked_repo).reader()
    assert again is reader
    found = again.read(revs[5])
    assert found is not None and ids[5].encode() in found[2]

    # several threads at once each get their own answers
    results: dict[int, bool] = {}

    def work(n: int) -> None:
        got = [data for _, data in reader.read_many(revs)]
        results[n] = all(ids[k].encode() in (got[k] or b"") for k in range(len(ids)))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {0: True, 1: True, 2: True, 3: True}
