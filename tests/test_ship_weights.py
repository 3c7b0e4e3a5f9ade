"""benchmarks/ship_weights.py: a trained run becomes weights/NAME.pt with a model card whose figures are those of
the shipped (float16) file, beside a constant depth, and nothing is left half written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from train_fixtures import load_benchmark, synthetic_file, tiny_run

from focalstack.train.checkpoint import load_checkpoint
from focalstack.train.cli import main as train_main

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ship_weights.py"


def load_script():
    return load_benchmark("ship_weights")


def ship(to: Path, held: Path, *extra: str) -> list[str]:
    return [
        "--checkpoint",
        str(tiny_run("fod") / "best.pt"),
        "--name",
        "tiny-v0",
        "--held-out",
        f"held={held}",
        "--summary",
        "A tiny test network.",
        "--limitation",
        "Trained for one epoch.",
        "--to",
        str(to),
        "--quiet",
        *extra,
    ]


def test_the_card_reports_the_shipped_file_beside_the_constant_of_its_training_data(tmp_path):
    held = synthetic_file("ship-held", 2, 32, 5)
    to = tmp_path / "weights"
    assert load_script().main(ship(to, held, "--figure", "held", "--figures-to", str(tmp_path / "img"))) == 0
    assert sorted(p.name for p in to.iterdir()) == ["tiny-v0.json", "tiny-v0.md", "tiny-v0.pt"]  # no scratch left
    assert [p.name for p in (tmp_path / "img").iterdir()] == ["tiny-v0__held.jpg"]

    ckpt = load_checkpoint(to / "tiny-v0.pt")
    assert ckpt["weights_only"] and ckpt["weights_dtype"] == "float16" and "optimizer" not in ckpt
    results = json.loads((to / "tiny-v0.json").read_text())

    # the figures are the shipped file's: evaluate, run on it separately, gives the same dfv MSE
    out = tmp_path / "eval"
    args = [
        "evaluate",
        "-c",
        str(to / "tiny-v0.pt"),
        "--data",
        str(held),
        "--protocol",
        "dfv",
        "--setting",
        "All",
        "-o",
        str(out),
        "-q",
    ]
    assert CliRunner().invoke(train_main, args).exit_code == 0
    direct = json.loads((out / "metrics.json").read_text())["results"]["dfv"][str(held)]["All"]
    card_row = next(r for r in results["tiny-v0"] if r["protocol"] == "dfv" and r["setting"] == "All" and r["region"] == "all")
    assert card_row["mse"] == pytest.approx(direct["mse"], rel=1e-6)

    # the constant is the mean valid depth of the run's training file, and scores as that depth should
    with h5py.File(synthetic_file("tiny-train", 6, 32, 11), "r") as f:
        depth = f["depth"][:].astype(np.float64)
    assert results["constant_depth_m"] == pytest.approx(depth[(depth > 0) & (depth <= 3.0)].mean(), rel=1e-6)
    with h5py.File(held, "r") as f:
        truth = f["depth"][:].astype(np.float64)
    const = next(
        r for r in results["constant"] if r["protocol"] == "focalstack" and r["setting"] == "All" and r["region"] == "all"
    )
    valid = (truth > 0) & (truth <= 3.0)
    per_scene = [np.sqrt(((t[v] - results["constant_depth_m"]) ** 2).mean()) for t, v in zip(truth, valid)]
    assert const["depth_rmse"] == pytest.approx(np.mean(per_scene), rel=1e-4)

    card = (to / "tiny-v0.md").read_text()
    assert card.startswith("# tiny-v0\n\nA tiny test network.")
    for who in ("tiny-v0", "constant"):
        assert f"| held | All | all | {who} |" in card and f"| held | Random | all | {who} |" in card
    assert "| published [1] | | | DefocusNet |" in card  # the dfv protocol's published rows, with their source
    assert "![tiny-v0__held](../img/tiny-v0__held.jpg)" in card
    assert "## Depth from blur alone" in card and "\n| 0.12 | " in card  # benchmarks/plane_depth.py's table
    # benchmarks/depth_bands.py's table on the first held-out set: its bands add up to the card's dfv MSE
    assert "## Where the depth error comes from" in card and "held:\n\n| true depth (m) |" in card
    assert sum(r["mse_share"] for r in results["bands"]["held"]) == pytest.approx(card_row["mse"], rel=1e-4)
    assert "- Trained for one epoch." in card and f"{ckpt['global_step']} steps" in card
    assert "| loss | L1 depth loss; term weights defocus 1, depth 1," in card  # the tiny run's config: the paper's


def test_a_held_out_set_without_a_name_or_a_figure_of_none_is_one_line_and_writes_nothing(tmp_path):
    held = synthetic_file("ship-held", 2, 32, 5)
    to = tmp_path / "weights"
    args = [a if not a.startswith("held=") else str(held) for a in ship(to, held)]
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"error: --held-out {str(held)!r}: expected NAME=FILE"]
    proc = subprocess.run([sys.executable, str(SCRIPT), *ship(to, held), "--figure", "nope"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == ["error: --figure 'nope': expected the name of a --held-out set (held)"]
    assert not to.exists()


def test_a_failed_evaluation_keeps_the_weights_that_were_shipped(tmp_path):
    held = synthetic_file("ship-held", 2, 32, 5)
    to = tmp_path / "weights"
    assert load_script().main(ship(to, held)) == 0
    before = {p.name: p.read_bytes() for p in to.iterdir()}
    script = load_script()

    def fail(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    script.evaluate_shipped = fail
    with pytest.raises(RuntimeError, match="evaluation failed"):
        script.main(ship(to, held))
    assert {p.name: p.read_bytes() for p in to.iterdir()} == before
    # a held-out file that is no focalstack file is one line, before anything is written
    broken = tmp_path / "broken.h5"
    broken.write_text("not an HDF5 file")
    proc = subprocess.run([sys.executable, str(SCRIPT), *ship(to, broken)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        f"ship_weights.py: error: --held-out held={broken}"
    )
    assert {p.name: p.read_bytes() for p in to.iterdir()} == before
    for extra, needle in ((["--name", "a/b"], "--name 'a/b'"), (["--to", str(broken)], "not a folder")):
        proc = subprocess.run([sys.executable, str(SCRIPT), *ship(to, held), *extra], capture_output=True, text=True)
        assert proc.returncode == 2 and needle in proc.stderr.strip().splitlines()[-1], proc.stderr


def test_a_fine_tuned_run_names_the_weights_it_started_from_its_capture_augmentation_and_averaging(tmp_path):
    from train_fixtures import TINY

    from focalstack.train.trainer import TrainConfig, fit

    start = tiny_run("fod") / "best.pt"
    tuned = fit(
        TrainConfig(
            data=[str(synthetic_file("tiny-train", 6, 32, 11))],
            out=str(tmp_path / "tuned"),
            arch="fod",
            arch_kwargs=dict(TINY),
            epochs=1,
            batch_size=2,
            init=str(start),
            capture_augment=[500.0, 0.004, 80, 0.25],
            ema=0.9,
            progress=False,
            tensorboard=False,
        )
    )
    args = ship(tmp_path / "weights", synthetic_file("ship-held", 2, 32, 5))
    args[args.index("--checkpoint") + 1] = str(tuned.last)
    assert load_script().main(args) == 0
    training = next(ln for ln in (tmp_path / "weights" / "tiny-v0.md").read_text().splitlines() if ln.startswith("| training |"))
    assert "3 steps (1 epochs) from the weights of `best` at batch 2" in training
    capture = "sensor noise and JPEG on 25% of the samples, up to `--capture-augment 500,0.004,80,0.25`"
    assert f"{capture}; these weights are the run's moving average of its weights (`--ema 0.9`); " in training


def test_a_checkpoint_whose_data_names_file_weights_ships(tmp_path):
    """An experiment's runs record their data as FILE:WEIGHT: ship_weights took 'FILE:1' for a missing file."""
    import torch

    ckpt = torch.load(tiny_run("fod") / "best.pt", weights_only=False)
    ckpt["config"]["data"] = [f"{spec}:1" for spec in ckpt["config"]["data"]]
    weighted = tmp_path / "weighted.pt"
    torch.save(ckpt, weighted)
    held = synthetic_file("ship-held", 2, 32, 5)
    args = ship(tmp_path / "weights", held)
    args[args.index("--checkpoint") + 1] = str(weighted)
    assert load_script().main(args) == 0
    assert (tmp_path / "weights" / "tiny-v0.pt").is_file()
