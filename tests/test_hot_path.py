"""Recording a run stays light: no heavy imports and a fixed number of git processes."""

from __future__ import annotations

from pathlib import Path

from conftest import run_python, write_script

PROBE = """
import atexit, sys, click, gittrack

HEAVY = ("dvc", "dvc_data", "git", "graphviz", "pandas", "numpy", "starlette", "distributed")

@atexit.register
def report():
    print("HEAVY=" + ",".join(m for m in HEAVY if m in sys.modules), file=sys.stderr)

@gittrack.command()
@click.option("--x", type=int, default=1)
def main(x):
    return {"y": x}

if __name__ == "__main__":
    main()
"""


def test_recording_imports_nothing_heavy(tracked_repo: Path) -> None:
    write_script(tracked_repo, "probe.py", PROBE)
    proc = run_python(tracked_repo, "probe.py", "--x", "3")
    assert "recorded (completed" in proc.stderr
    assert "HEAVY=\n" in proc.stderr or proc.stderr.rstrip().endswith("HEAVY=")


def test_git_processes_per_run_do_not_grow_with_history(tracked_repo: Path) -> None:
    """Count git processes with a PATH shim that logs each call, at 1 and at 500 runs."""
    from gittrack import store
    from gittrack.model.record import RunRecord

    write_script(tracked_repo, "probe.py", PROBE)
    shim = tracked_repo.parent / "shim"
    shim.mkdir()
    real_git = __import__("shutil").which("git")
    log = tracked_repo.parent / "git-calls.log"
    (shim / "git").write_text(f'#!/bin/sh\necho "$1 $2" >> {log}\nexec {real_git} "$@"\n')
    (shim / "git").chmod(0o755)
    seen: list[int] = []
    env = {"PATH": f"{shim}:{__import__('os').environ['PATH']}"}

    def calls() -> list[str]:
        log.write_text("")
        run_python(tracked_repo, "probe.py", "--x", str(len(seen)), env=env)
        seen.append(1)
        return sorted(log.read_text().split("\n")[:-1])

    calls()  # the first run initialises the lookup table
    first = calls()
    repo = store.find_repo(tracked_repo)
    store.import_runs(
        repo,
        (RunRecord(id=f"{i:032x}", command="probe.py", status="completed") for i in range(500)),
    )
    calls()  # catches the lookup table up with the imported history
    assert calls() == first
    assert len(first) <= 9, first


EARLY = """
import click, gittrack

@gittrack.command()
@click.option("--x", type=int, default=1)
def main(x):
    return {"y": x}

if __name__ == "__main__":
    main()
"""


def test_a_script_outside_any_repository_fails_in_one_sentence(tracked_repo: Path) -> None:
    """No reader process is started early any more (a clean run reads its objects from the
    files: test_local_read.py), so nothing is left behind either when there is no repository."""
    write_script(tracked_repo, "early.py", EARLY)
    proc = run_python(tracked_repo, "early.py", "--x", "3")
    assert "recorded (completed" in proc.stderr
    outside = tracked_repo.parent / "elsewhere"
    outside.mkdir()
    (outside / "early.py").write_text(EARLY)
    proc = run_python(outside, "early.py", check=False)  # no repository: the usual error
    assert proc.returncode == 1
    assert proc.stderr == (
        f"Error: {outside} is not inside a git repository. "
        "Run 'git init' there first (or 'gittrack init --git').\n"
    )


REPEATED = """
import gc, sys, weakref
import click, gittrack

@gittrack.command()
@click.option("--x", type=int, default=1)
def main(x):
    return {"y": x}

class Node:
    pass

def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

for x in (1, 2, 3):
    try:
        main(["--x", str(x)])
    except SystemExit:
        pass
    gone = cycle()  # garbage made after the start-up objects were set aside
    gc.collect()
    print("collected" if gone() is None else "kept", gc.get_freeze_count() > 0)
"""


def test_start_up_objects_are_set_aside_once_and_later_garbage_is_still_collected(
    tracked_repo: Path,
) -> None:
    """A tracked command sets the start-up objects aside from the garbage collector (cheaper
    exits and collections), once a process: commands called again in-process leak nothing."""
    write_script(tracked_repo, "again.py", REPEATED)
    proc = run_python(tracked_repo, "again.py")
    assert proc.stdout.splitlines() == ["collected True"] * 3
    assert proc.stderr.count("recorded (completed") == 3
