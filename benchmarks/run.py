"""`make bench`: every benchmark of benchmarks/bench_*.py, one after the other.

Each prints its own table of measurements and ratios against a baseline measured in the same
run. `--quick` runs smaller sizes (a smoke test); `--only NAME` runs one benchmark.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import inspect
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}, {git}"
    )


def load(path: Path) -> ModuleType:
    """A benchmark script as a module, registered under its name first (dataclasses look their
    module up in sys.modules while the class is made)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    parser.add_argument("--only", help="run only benchmarks/bench_ONLY.py")
    parser.add_argument("--dvc", action="store_true", help="also time `dvc exp show` (~10 minutes)")
    args = parser.parse_args()
    print(f"gittrack benchmarks, {dt.date.today()}, {machine()}")
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if args.only and name != args.only:
            continue
        print(f"\n=== {name} ===", flush=True)
        module = load(path)
        if "dvc" in inspect.signature(module.main).parameters:
            module.main(quick=args.quick, dvc=args.dvc)
        else:
            module.main(quick=args.quick)


if __name__ == "__main__":
    main()
