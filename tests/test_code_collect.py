"""The modules a run imports as it runs are on its record, also while other code changes
`sys.modules`; where a module's file cannot be told, the record says so and is never reused."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import git, run_python, write_script

# A finalizer changing sys.modules at every collection, with a collection at (nearly) every
# allocation: what a thread importing while the run ends does (gittrack's environment scan on a
# cold cache, a user's thread), made certain. Listing sys.modules while it changes raised
# "dictionary changed size during iteration": the record lost the modules imported in the run.
CHURN = """
import gc
import sys
import types

import click

import gittrack


class Churn:
    def __init__(self):
        self.me = self  # a cycle: freed by the collector

    def __del__(self):
        if sys.modules.pop("_churn", None) is None:
            sys.modules["_churn"] = types.ModuleType("_churn")
        Churn()


@gittrack.command()
@click.option("--temp", type=float, default=1.0)
def main(temp):
    from model import units  # imported during the run

    Churn()
    gc.set_threshold(1)
    return {"energy": temp * units.SCALE}


if __name__ == "__main__":
    main()
"""

OPAQUE = """
import sys
import types

import click

import gittrack


class Opaque(types.ModuleType):
    @property
    def __file__(self):
        raise OSError("its loader is gone")


@gittrack.command()
@click.option("--temp", type=float, default=1.0)
def main(temp):
    from model import units  # imported during the run

    sys.modules["opaque_plugin"] = Opaque("opaque_plugin")
    return {"energy": temp * units.SCALE}


if __name__ == "__main__":
    main()
"""


def _model(repo: Path) -> None:
    (repo / "model").mkdir()
    (repo / "model" / "__init__.py").write_text("")
    (repo / "model" / "units.py").write_text("SCALE = 1.0\n")
    git(repo, "add", "model")
    git(repo, "commit", "-qm", "add model")


def _code(repo: Path) -> dict:
    shown = run_python(repo, "-m", "gittrack", "show", "latest", "--json")
    return json.loads(shown.stdout)["code"]


def test_modules_imported_while_sys_modules_changes_are_on_record(tracked_repo: Path) -> None:
    _model(tracked_repo)
    write_script(tracked_repo, "churn.py", CHURN)
    ran = run_python(tracked_repo, "churn.py", "--temp", "2")
    assert "Warning" not in ran.stderr, ran.stderr
    code = _code(tracked_repo)
    assert set(code["files"]) == {"churn.py", "model/__init__.py", "model/units.py"}
    assert code["incomplete"] == ""


def test_a_module_whose_file_cannot_be_told_is_on_record_and_never_reused(
    tracked_repo: Path,
) -> None:
    _model(tracked_repo)
    write_script(tracked_repo, "opaque.py", OPAQUE)
    ran = run_python(tracked_repo, "opaque.py", "--temp", "2")
    reason = "the file of module opaque_plugin could not be told (OSError: its loader is gone)"
    short = ran.stderr.split("run ")[-1][:8]
    assert ran.stderr.splitlines()[0] == (
        f"Warning: the code of run {short} may be incomplete: {reason}; it is recorded so and "
        "never reused."
    ), ran.stderr
    code = _code(tracked_repo)
    assert set(code["files"]) == {"opaque.py", "model/__init__.py", "model/units.py"}
    assert code["incomplete"] == reason
    again = run_python(tracked_repo, "opaque.py", "--temp", "2")  # the same params and code
    assert "recorded (completed" in again.stderr and f"run {short} reused" not in again.stderr
    listing = run_python(tracked_repo, "-m", "gittrack", "ls", "--json")
    assert len(json.loads(listing.stdout)) == 2
