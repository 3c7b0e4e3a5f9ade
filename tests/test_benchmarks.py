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


@pytest.mark.parametrize(
    "script, args, needle",
    [
        ("sample_cost_bench.py", ["--samples", "1"], "--samples 1: expected at least 2"),  # was a ZeroDivisionError
        ("compression_bench.py", ["--layouts", "foo", "--size", "32", "--slices", "1"], "--layouts foo: expected some of"),
        ("train_bench.py", ["--device", "cpu", "--rounds", "0"], "--rounds 0: expected an integer >= 1"),
        ("render_bench.py", ["--growth-scenes", "1"], "--growth-scenes 1: expected at least 2"),  # printed a growth of 0
    ],
)
def test_benchmark_settings_that_give_no_figure_are_refused(script, args, needle):
    path = Path(__file__).parents[1] / "benchmarks" / script
    done = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and needle in done.stderr, done.stderr[-1000:]


def test_scale_bench_counts_a_short_last_batch_by_its_stacks(capsys, tmp_path, monkeypatch):
    """The collate time per stack divided each batch's time by --batch-size: a batch of 2 counted as 8 stacks."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import scale_bench

    real = scale_bench.per_sample

    def every_item_takes_8_ms(fn, items):
        real(fn, items)
        return 8.0, 8.0

    monkeypatch.setattr(scale_bench, "per_sample", every_item_takes_8_ms)
    path = tmp_path / "loader.h5"
    scale_bench.write_synthetic(path, 2)
    scale_bench.bench_loader(path, 1, 8)  # one batch, of 2 stacks
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "batch (default_collate)" in ln)
    assert line.split()[-2:] == ["4.00", "4.00"]  # 8 ms for the batch of 2: 4 ms per stack (not 8 / 8)
