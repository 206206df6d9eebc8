"""The compiled engine the tests drive (LAMMPS, installed by `make test`) runs the melt deck."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

LMP = shutil.which("lmp")
if LMP is None:
    raise RuntimeError("These tests need LAMMPS (`lmp`): run `make test`, which installs it.")

DECK = Path(__file__).parent / "engine" / "in.melt"
# The deck's last line in log.lammps (the echoed `print` command starts with "print", not "final").
FINAL = re.compile(
    r"^final step (?P<step>\d+) temp (?P<temp>\S+) pe (?P<pe>\S+) etotal (?P<etotal>\S+)$",
    re.MULTILINE,
)
# The timing line LAMMPS prints after every run.
LOOP = re.compile(
    r"^Loop time of (?P<loop_s>\S+) on (?P<procs>\d+) procs for (?P<steps>\d+) steps", re.MULTILINE
)
# The first line of `lmp -h` and of every log.lammps names the version.
HELP_VERSION = re.compile(r"Massively Parallel Simulator - (?P<version>.+?)\s*$", re.MULTILINE)
LOG_VERSION = re.compile(r"\ALAMMPS \((?P<version>[^)]+)\)")


def run_melt(cwd: Path, temp: float, steps: int) -> subprocess.CompletedProcess[str]:
    command = [str(LMP), "-in", str(DECK), "-var", "T", str(temp), "-var", "N", str(steps)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_melt_deck_writes_dump_and_log_with_a_parsable_final_energy(tmp_path: Path) -> None:
    result = run_melt(tmp_path, 1.5, 100)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.melt", "log.lammps"]

    dump = (tmp_path / "dump.melt").read_text()
    assert dump.count("ITEM: TIMESTEP") == 3  # steps 0, 50 and 100
    assert "ITEM: NUMBER OF ATOMS\n256\n" in dump

    log = (tmp_path / "log.lammps").read_text()
    final = FINAL.search(log)
    assert final is not None, log[-2000:]
    assert int(final["step"]) == 100
    # The crystal gives kinetic energy to the potential, at (nearly) constant total energy.
    assert float(final["temp"]) < 1.5
    start = re.search(r"^\s+0\s+1\.5\s+(\S+)\s+(\S+)\s+(\S+)", log, re.MULTILINE)
    assert start is not None, log
    assert float(final["etotal"]) == pytest.approx(float(start[3]), rel=0.01)
    loop = LOOP.search(log)
    assert loop is not None and int(loop["steps"]) == 100
    assert LOG_VERSION.match(log)


def test_version_is_in_the_help_and_the_log(tmp_path: Path) -> None:
    help_text = subprocess.run(
        [str(LMP), "-h"], cwd=tmp_path, capture_output=True, text=True, timeout=30
    ).stdout
    version = HELP_VERSION.search(help_text)
    assert version is not None, help_text[:500]
    run_melt(tmp_path, 1.5, 0)
    log_version = LOG_VERSION.match((tmp_path / "log.lammps").read_text())
    assert log_version is not None
    assert log_version["version"] == version["version"]
