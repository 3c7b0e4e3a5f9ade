"""Bundled experiments at tiny scale, end to end: killed midway, run again, every cell of the report filled,
and nothing that had finished rendered or trained again."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def command(name: str, out: Path, data: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "focalstack.train",
        "experiment",
        name,
        "--scale",
        "tiny",
        "-o",
        str(out),
        "--data-dir",
        str(data),
        "--device",
        "cpu",
        "--quiet",
    ]


def steps(out: Path) -> list[dict]:
    try:
        return json.loads((out / "state.json").read_text())["steps"]
    except (OSError, ValueError, KeyError):
        return []


def run_killed_then_again(name: str, out: Path, data: Path) -> tuple[list[dict], list[dict]]:
    """Kill the run once a model has been trained; run it again to the end. (steps before, steps after)."""
    proc = subprocess.Popen(
        command(name, out, data), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.time() + 900
    try:
        while time.time() < deadline and proc.poll() is None:
            if any(s["kind"] == "train" for s in steps(out)):
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        time.sleep(1.0)  # into the next model's training
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = steps(out)
    done = subprocess.run(command(name, out, data), capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return before, steps(out)


def assert_nothing_finished_was_redone(before: list[dict], after: list[dict]) -> None:
    finished = {(s["kind"], s["name"]) for s in before if s["kind"] in ("render", "train")}
    assert finished, before
    redone = [s for s in after if (s["kind"], s["name"]) in finished and s["action"] != "reused"]
    assert redone == [], redone


def assert_every_cell(report: dict, evaluation: str, models, datasets, settings, regions, metrics, source: str = "ours") -> None:
    rows = [r for r in report["evaluations"][evaluation]["rows"] if r["source"] == source]
    for m in models:
        for d in datasets:
            for s in settings:
                for region in regions:
                    match = [r for r in rows if (r["model"], r["dataset"], r["setting"], r["region"]) == (m, d, s, region)]
                    assert len(match) == 1, (m, d, s, region)
                    for metric in metrics:
                        if region != "all" and not metric.startswith("depth_"):
                            assert match[0][metric] is None, (m, d, s, region, metric)  # regions score depth only
                            continue
                        value = match[0][metric]
                        assert value is not None and math.isfinite(value), (m, d, s, region, metric)


def test_walls_fix_and_paper_table1_at_tiny_scale_killed_and_resumed(tmp_path):
    data = tmp_path / "data"  # shared: both experiments train on the same fod500 file
    walls = tmp_path / "walls-fix"
    before, after = run_killed_then_again("walls-fix", walls, data)
    assert_nothing_finished_was_redone(before, after)
    report = json.loads((walls / "report.json").read_text())
    assert report["scale"] == "tiny"
    assert_every_cell(
        report,
        "failure-cases",
        ["fod500", "fod500-walls", "fod500-walls-mirrors"],
        ["walls-test", "mirrors-test", "fod500-test"],
        ["All"],
        ["all", "flat"],
        ["depth_mse", "depth_rmse", "depth_absrel", "defocus_mse"],
    )
    # the constant-depth baseline beside them, scored by the same code
    assert_every_cell(
        report,
        "failure-cases",
        ["constant"],
        ["walls-test", "mirrors-test", "fod500-test"],
        ["All"],
        ["all", "flat"],
        ["depth_mse", "depth_rmse", "depth_absrel", "defocus_mse"],
        source="baseline",
    )
    md = (walls / "report.md").read_text()
    assert "Its numbers are not results" in md and "fod500-walls vs fod500" in md and "constant vs fod500" in md
    assert (walls / "figures" / "training_curves.png").stat().st_size > 1000
    again = subprocess.run(command("walls-fix", walls, data), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0  # ... and a rerun reuses every step, the constant baseline's too
    assert {s["action"] for s in steps(walls) if s["kind"] != "report"} == {"reused"}

    table1 = tmp_path / "paper-table1"
    before, after = run_killed_then_again("paper-table1", table1, data)
    assert_nothing_finished_was_redone(before, after)
    assert any(s["kind"] == "render" and s["name"] == "train" and s["action"] == "reused" for s in after)  # shared
    report = json.loads((table1 / "report.json").read_text())
    assert_every_cell(
        report,
        "table1",
        ["single-aif", "single-defocus-aif", "stack-aif", "stack-defocus-aif"],
        ["test-shape", "test-appearance", "test-wide-dof", "test-medium-dof"],
        ["All", "Random"],
        ["all"],
        ["aif_ssim", "aif_psnr", "aif_psnr_peak255"],
    )
    row = next(r for r in report["evaluations"]["table1"]["rows"] if r["source"] == "ours")
    assert row["aif_psnr_peak255"] == pytest.approx(row["aif_psnr"] + 48.13, abs=0.01)
    # a third run reuses everything
    again = subprocess.run(command("paper-table1", table1, data), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0
    assert {s["action"] for s in steps(table1) if s["kind"] != "report"} == {"reused"}
