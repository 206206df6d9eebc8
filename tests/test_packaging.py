"""The installed wheel, as a user gets it: a base install, then extras (issue 16's packaging)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)]
    subprocess.run(build, cwd=ROOT, check=True, capture_output=True)
    return next(out.glob("*.whl"))


def test_metadata_is_complete() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" in meta["dynamic"]  # one place: gittrack/_version.py
    assert any(c.startswith("Operating System :: POSIX") for c in meta["classifiers"])
    extras = meta["optional-dependencies"]
    assert {"ui", "dask", "cluster", "pandas", "all", "dev"} <= set(extras)
    assert not any(t in " ".join(extras["all"]) for t in ("ruff", "mypy", "playwright", "pytest"))


@pytest.mark.slow
def test_a_base_install_names_the_missing_extra(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    real_home = Path(os.environ.get("GITTRACK_PIP_CACHE", "/root/.cache/pip"))
    env["PIP_CACHE_DIR"] = str(real_home)  # a warm cache: the same wheels every run
    install = _run([python, "-m", "pip", "install", "-q", str(wheel)], tmp_path, env)
    assert install.returncode == 0, install.stderr[-2000:]
    project = tmp_path / "project"
    project.mkdir()
    for cmd in (["git", "init", "-q"], ["git", "commit", "-q", "--allow-empty", "-m", "start"]):
        assert _run(cmd, project, env).returncode == 0
    assert _run(["gittrack", "init"], project, env).returncode == 0

    ui = _run(["gittrack", "ui"], project, env)
    assert ui.returncode == 1
    assert ui.stderr.strip() == (
        "Error: gittrack ui needs the 'ui' extra: pip install 'gittrack[ui]'"
    )
    report = _run(["gittrack", "report", "-o", "r.html"], project, env)
    assert report.returncode == 1 and "pip install 'gittrack[ui]'" in report.stderr
    sweep = _run(["gittrack", "sweep", "x.py", "--executor", "dask"], project, env)
    assert sweep.returncode != 0 and "Traceback" not in sweep.stderr
    pandas = _run([python, "-c", "import gittrack; gittrack.runs().to_pandas()"], project, env)
    assert pandas.returncode == 1
    assert pandas.stderr.strip().splitlines()[-1] == (
        "gittrack.errors.MissingExtra: RunSet.to_pandas() needs the 'pandas' extra: "
        "pip install 'gittrack[pandas]'"
    )

    extra = _run([python, "-m", "pip", "install", "-q", f"{wheel}[ui]"], tmp_path, env)
    assert extra.returncode == 0, extra.stderr[-2000:]
    report = _run(["gittrack", "report", "-o", "r.html"], project, env)
    assert report.returncode == 0, report.stderr
    assert (project / "r.html").read_text().lower().startswith("<!doctype html>")


def test_the_published_description_has_no_link_that_breaks_off_a_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    import re
    import zipfile

    with zipfile.ZipFile(wheel) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        description = whl.read(name).decode().split("\n\n", 1)[1]
    links = re.findall(r"\]\(([^)\s]+)\)", description)
    assert links and all(link.startswith(("https://", "http://", "#")) for link in links)
    assert "Getting started (`docs/getting-started.md`)" in description
    build = [sys.executable, "-m", "hatchling", "build", "-t", "sdist", "-d", str(tmp_path)]
    subprocess.run(build, cwd=ROOT, check=True, capture_output=True)
    import tarfile

    with tarfile.open(next(tmp_path.glob("*.tar.gz"))) as sdist:
        shipped = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in sdist.getnames()}
    named = set(re.findall(r"`(docs/[^`]+\.md)`", description))
    assert named and named <= shipped
