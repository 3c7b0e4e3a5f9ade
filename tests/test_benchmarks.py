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


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--seeds", "0"], "--seeds 0: expected at least 1"),
        (["--out", "/nonexistent/x.md"], "folder /nonexistent does not exist"),
    ],
)
def test_plane_depth_refuses_what_would_fail_after_the_work(extra, needle):
    """--seeds 0 ended in 'min() arg is an empty sequence', --out in a missing folder after all the work."""
    script = Path(__file__).parents[1] / "benchmarks" / "plane_depth.py"
    done = subprocess.run(
        [sys.executable, str(script), "fod-depth-fod500-v0", *extra], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and needle in done.stderr.strip().splitlines()[-1], done.stderr
