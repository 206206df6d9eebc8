"""`make demo`: the bundled random-walk example end to end in a fresh repository.

Prints every command as a user would type it, then what was recorded and where to look. The demo
lives in `.demo/` of this checkout (its DVC remote too), replaced by the next `make demo`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
DEMO = HERE.parent / ".demo"


def step(cmd: str, cwd: Path) -> str:
    print(f"\n$ {cmd}", flush=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(cmd, shell=True, cwd=cwd, env=env, text=True, capture_output=True)
    sys.stdout.write(proc.stdout)
    sys.stdout.write(proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"demo step failed (exit {proc.returncode}): {cmd}")
    return proc.stdout


def main() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)  # the previous demo, if any
    DEMO.mkdir()
    project = DEMO / "random-walk"
    shutil.copytree(HERE / "random_walk", project)
    print(f"Demo project: {project}")
    step(
        "git init -q && git add -A && git -c user.name=Demo -c user.email=demo@example.org "
        "commit -qm 'random walk simulation' && git config user.name Demo && "
        "git config user.email demo@example.org",
        project,
    )
    step("gittrack init", project)
    step(f"gittrack remote set {DEMO / 'storage'}", project)  # the data stays beside the demo
    step("gittrack run sim.py --stiffness 1.0 --steps 1000", project)
    step("python sim.py --stiffness 2.0 --steps 1000 --seed 1", project)
    step(
        "gittrack sweep sim.py --stiffness 0.5,4 --seed 2:4 --steps 500 -j 2 --name stiffness-scan",
        project,
    )
    step(
        "gittrack run --name check analyse.py --sims \"params.steps >= 500 and status = 'completed'\"",
        project,
    )
    step("gittrack ls", project)
    step("gittrack show check", project)
    step("gittrack lineage check -o flow.svg", project)
    step("git log --oneline gittrack/runs", project)
    step("git status --short", project)
    print(
        f"\nEverything above is in {project}:\n"
        f"  git log gittrack/runs        one commit per run (the lab notebook)\n"
        f"  gittrack ls / show / diff    read the runs; gittrack ui opens the web UI\n"
        f"  {project / 'flow.svg'}  the flow graph of the analysis\n"
        f"  {DEMO / 'storage'}  the DVC remote holding the outputs\n"
        f"The next 'make demo' replaces {DEMO}; 'make clean' removes it.\n"
    )


if __name__ == "__main__":
    main()
