"""Notebooks as runs: `gittrack notebook` (papermill) and `gittrack.track` in a kernel (nbclient)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import nbformat
import pytest
from conftest import git, write_script
from starlette.testclient import TestClient

import gittrack
from gittrack import store
from gittrack.ui import create_app

ROOT = Path(__file__).resolve().parents[1]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def make_notebook(path: Path, parameters: str, *cells: str, kernelspec: bool = True) -> None:
    nb = nbformat.v4.new_notebook()
    if kernelspec:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    first = nbformat.v4.new_code_cell(parameters)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, str(path))


def record_of(repo: Path, ref: str = "latest") -> dict:
    run = gittrack.Run(ref, repo)
    data = store.read_record_bytes(store.find_repo(repo), run.id)
    assert data is not None
    return tomllib.loads(data.decode())


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel imports this gittrack, as an installed one would be."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), path) if p))


@pytest.mark.slow
def test_notebook_run_with_params_and_an_input_run(
    tracked_repo: Path, run_cli, kernel_env: None
) -> None:
    for temp in (1.0, 2.0):
        assert run_cli(tracked_repo, "run", "sim.py", "--temp", str(temp)).exit_code == 0
    sims = gittrack.runs(repo=tracked_repo)
    make_notebook(
        tracked_repo / "fit.ipynb",
        "scale = 1\nsims = ''",
        "import gittrack\nruns = gittrack.runs(where=sims)\n"
        "energies = sorted(r.metrics['energy'] * scale for r in runs)\nprint('energies', energies)",
        "import base64, pathlib\n"  # a figure saved as a file (a 1x1 PNG: no matplotlib here)
        f"pathlib.Path('energies.png').write_bytes(base64.b64decode('{PNG}'))",
        "print('<b>not bold</b>')",
    )
    git(tracked_repo, "add", "fit.ipynb")
    git(tracked_repo, "commit", "-qm", "fit notebook")
    result = run_cli(
        tracked_repo, "notebook", "fit.ipynb", "-p", "scale", "10", "-p", "sims", "params.temp >= 1"
    )
    assert result.exit_code == 0, result.output
    rec = record_of(tracked_repo)
    assert rec["status"] == "completed"
    assert rec["command"] == "fit.ipynb"
    assert rec["params"] == {"scale": 10, "sims": "params.temp >= 1"}
    assert rec["code"]["script"] == "fit.ipynb"
    assert sorted(i["run"] for i in rec["inputs"]) == sorted(r.id for r in sims)
    assert sorted(rec["outputs"]) == ["energies", "notebook"]
    executed = gittrack.Run("latest", tracked_repo).path("notebook")
    nb = nbformat.read(str(executed), as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "energies [20.0, 40.0]" in printed
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    # lineage: the notebook is a node consuming both runs
    dot = run_cli(tracked_repo, "lineage", "latest", "--format", "dot")
    assert all(f'"{r.id}" -> "{rec["id"]}"' in dot.output for r in sims)
    # the run page shows the executed notebook read-only, its text escaped
    client = TestClient(create_app(tracked_repo, port=8765), base_url="http://127.0.0.1:8765")
    page = client.get(f"/runs/{rec['id']}").text
    assert 'id="notebook"' in page
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page and "<b>not bold</b>" not in page
    assert "energies [20.0, 40.0]" in page


@pytest.mark.slow
def test_a_failing_notebook_is_recorded_failed(
    tracked_repo: Path, run_cli, kernel_env: None
) -> None:
    make_notebook(tracked_repo / "bad.ipynb", "x = 1", "1 / 0", kernelspec=False)
    result = run_cli(tracked_repo, "notebook", "bad.ipynb")
    assert result.exit_code == 1
    rec = record_of(tracked_repo)
    assert rec["status"] == "failed"
    assert "ZeroDivisionError" in rec["error"]["message"]
    assert result.stderr.strip().splitlines()[-1].startswith("Error: Notebook bad.ipynb failed: ")
    assert "notebook" in rec["outputs"]  # the executed notebook shows where it stopped


@pytest.mark.slow
def test_track_inside_a_notebook_executed_by_nbclient(
    tracked_repo: Path, run_cli, kernel_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbclient

    assert run_cli(tracked_repo, "run", "sim.py", "--temp", "3").exit_code == 0
    sim = gittrack.Run("latest", tracked_repo)
    path = tracked_repo / "analysis.ipynb"
    make_notebook(
        path,
        "window = 0.2",
        "import gittrack\n"
        f"with gittrack.track('fit-tc', params={{'window': window}}) as run:\n"
        f"    e = gittrack.Run('{sim.short}').metrics['energy']\n"
        "    run.log(tc=e * window)\n"
        "    run.save('values', [1, 2, 3])\n"
        "print(run.id)",
    )
    git(tracked_repo, "add", "analysis.ipynb")
    git(tracked_repo, "commit", "-qm", "analysis")
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))  # what Jupyter tells its kernels
    nb = nbformat.read(str(path), as_version=4)
    nbclient.NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": str(tracked_repo)}}
    ).execute()
    run_id = nb.cells[1].outputs[-1]["text"].strip().splitlines()[-1]
    rec = record_of(tracked_repo, run_id)
    assert rec["command"] == "fit-tc"
    assert rec["params"] == {"window": 0.2}
    assert rec["metrics"] == {"tc": pytest.approx(1.2)}
    assert rec["code"]["script"] == "analysis.ipynb"
    assert [i["run"] for i in rec["inputs"]] == [sim.id]
    assert gittrack.Run(run_id, tracked_repo).load("values") == [1, 2, 3]


def test_track_in_plain_python_records_inputs_outputs_and_failures(
    tracked_repo: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(tracked_repo, "run", "sim.py", "--temp", "2").exit_code == 0
    sim = gittrack.Run("latest", tracked_repo)
    monkeypatch.chdir(tracked_repo)
    with gittrack.track("fit", params={"order": 2}) as run:
        energies = [r.metrics["energy"] for r in gittrack.runs()]
        run.log(best=max(energies))
        run.save("energies", energies)
    assert run.record is not None and run.record.status == "completed"
    rec = record_of(tracked_repo, run.id)
    assert rec["params"] == {"order": 2}
    assert rec["code"]["script"] == ""  # pytest's main module is not code of the run
    assert rec["metrics"] == {"best": 4.0}
    assert [i["run"] for i in rec["inputs"]] == [sim.id]
    assert "energies" in rec["outputs"]
    with pytest.raises(ValueError, match="bad window"), gittrack.track("fit") as failing:
        raise ValueError("bad window")
    rec = record_of(tracked_repo, failing.id)
    assert rec["status"] == "failed" and rec["error"]["message"] == "bad window"
    # outside a track block nothing counts as an input
    write_script(
        tracked_repo,
        "lister.py",
        """\
        import gittrack


        @gittrack.command()
        def main():
            return {"n": len(list(gittrack.runs()))}
        """,
    )
    assert run_cli(tracked_repo, "run", "lister.py").exit_code == 0
    assert "inputs" not in record_of(tracked_repo)
