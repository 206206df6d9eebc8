"""`make bench` loads every benchmark script: each must import as its runner imports it."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("bench_*.py")), ids=lambda p: p.stem)
def test_each_benchmark_loads_as_make_bench_loads_it(path: Path) -> None:
    import run

    module = run.load(path)
    assert "quick" in inspect.signature(module.main).parameters
