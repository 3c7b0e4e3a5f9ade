"""Every benchmark script starts: its imports still resolve after code moved (a render_bench import of a
removed function once went unnoticed because nothing ran it)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parents[1] / "benchmarks").glob("*_bench.py"))


def test_benchmarks_found():
    assert {b.name for b in BENCHMARKS} >= {"render_bench.py", "train_bench.py", "scale_bench.py"}


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_help(script):
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    assert "usage" in done.stdout.lower()
