"""The shared cat-file reader: nested queries, loops left early, several threads."""

from __future__ import annotations

import threading
from pathlib import Path

from gittrack import store
from gittrack.model.record import RunRecord, run_folder


def test_reader_survives_nesting_early_exit_and_threads(tracked_repo: Path) -> None:
    repo = store.find_repo(tracked_repo)
    ids = [f"{i:032x}" for i in range(1, 41)]
    store.import_runs(repo, (RunRecord(id=i, command="sim.py", status="completed") for i in ids))
    revs = [f"{store.RUNS_REF}:{run_folder(i)}/run.toml" for i in ids]
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


def test_a_repo_closed_in_one_thread_leaves_another_threads_reads_whole(
    tracked_repo: Path,
) -> None:
    # two Dask worker threads of one process: one task ends (closing its Repo) while another
    # task of the same repository is reading; that read once failed "write to closed file"
    ids = [f"{i:032x}" for i in range(1, 401)]
    store.import_runs(
        store.find_repo(tracked_repo),
        (RunRecord(id=i, command="sim.py", status="completed") for i in ids),
    )
    revs = [f"{store.RUNS_REF}:{run_folder(i)}/run.toml" for i in ids]
    reading, closing = store.find_repo(tracked_repo), store.find_repo(tracked_repo)
    assert reading.reader() is closing.reader()  # one process shared by both
    first_answer, go_on = threading.Event(), threading.Event()
    got: list[bytes | None] = []
    failed: list[BaseException] = []

    def read_all() -> None:
        try:
            for _, data in reading.reader().read_many(revs):
                got.append(data)
                first_answer.set()
                go_on.wait(timeout=30)
            got.append(reading.reader().read(revs[0])[2])  # type: ignore[index]
        except BaseException as exc:
            failed.append(exc)
        finally:
            first_answer.set()

    reader = threading.Thread(target=read_all)
    reader.start()
    first_answer.wait(timeout=30)
    closer = threading.Thread(target=closing.close)
    closer.start()
    closer.join(timeout=1)  # the close waits for the read in progress (or is done already)
    go_on.set()
    reader.join(timeout=60)
    closer.join(timeout=60)
    assert failed == []
    assert len(got) == len(ids) + 1
    assert all(ids[k].encode() in (got[k] or b"") for k in range(len(ids)))
    assert ids[0].encode() in (got[-1] or b"")
    later = store.find_repo(tracked_repo).reader().read(revs[-1])  # and reading goes on
    assert later is not None and ids[-1].encode() in later[2]
