"""``--depth-loss relative``: L1 on the depth error over the true depth, which weighs near pixels more."""

from __future__ import annotations

import pytest
import torch

from focalstack.train.config import TrainConfig
from focalstack.train.losses import FocusLoss, LossWeights

DEPTH_ONLY = LossWeights(defocus=0.0, depth=1.0, aif=0.0, perceptual=0.0, edges=0.0)


def depth_term(pred, truth, depth_loss, mask=None, floor=0.0) -> float:
    truth = torch.as_tensor(truth, dtype=torch.float32).view(1, 1, -1)
    pred = torch.as_tensor(pred, dtype=torch.float32).expand_as(truth)
    mask = truth > 0 if mask is None else torch.as_tensor(mask).view(1, 1, -1)
    out = {"depth": pred, "defocus": torch.zeros(1, 1, 1, truth.shape[-1])}
    loss = FocusLoss(DEPTH_ONLY, depth_loss=depth_loss, relative_floor=floor)
    total, terms = loss(out, {"depth": truth * mask, "depth_mask": mask})
    assert float(total) == pytest.approx(float(terms["depth"]))
    return float(terms["depth"])


def test_the_relative_depth_loss_is_the_mean_error_over_true_depth_on_valid_pixels():
    truth, pred = [0.1, 0.5, 1.0, 0.0], [0.12, 0.4, 1.3, 0.7]
    valid = [True, True, True, False]  # the last pixel has no depth (background): it counts in neither loss
    expected_relative = (0.02 / 0.1 + 0.1 / 0.5 + 0.3 / 1.0) / 3
    assert depth_term(pred, truth, "relative", valid) == pytest.approx(expected_relative, rel=1e-5)
    assert depth_term(pred, truth, "l1", valid) == pytest.approx((0.02 + 0.1 + 0.3) / 3, rel=1e-5)
    # the same error costs ten times more at a tenth of the depth, and the same under l1
    assert depth_term(0.11, 0.1, "relative") == pytest.approx(10 * depth_term(1.01, 1.0, "relative"), rel=1e-3)
    assert depth_term(0.11, 0.1, "l1") == pytest.approx(depth_term(1.01, 1.0, "l1"), rel=1e-3)


def test_a_floor_makes_pixels_nearer_than_it_weigh_alike_and_leaves_farther_ones_relative():
    truth, pred = [0.1, 0.2, 0.5, 1.0], [0.15, 0.3, 0.6, 1.5]
    expected = (0.05 / 0.4 + 0.1 / 0.4 + 0.1 / 0.5 + 0.5 / 1.0) / 4
    assert depth_term(pred, truth, "relative", floor=0.4) == pytest.approx(expected, rel=1e-5)
    # a floor above every depth is L1 over the floor
    assert depth_term(pred, truth, "relative", floor=2.0) == pytest.approx(depth_term(pred, truth, "l1") / 2.0, rel=1e-5)


def test_under_doubt_l1_answers_the_median_depth_and_the_relative_loss_a_nearer_one():
    """Why the option exists: when a stack cannot tell 0.2, 0.5 and 1 m apart, the single answer that L1
    rewards is their median; the relative loss weighs each by 1 / depth and rewards the nearest."""
    truths = [0.2, 0.5, 1.0]
    grid = [0.1 + 0.01 * i for i in range(100)]

    def best(depth_loss):
        return min(grid, key=lambda p: depth_term(p, truths, depth_loss))

    assert best("l1") == pytest.approx(0.5, abs=0.006)
    assert best("relative") == pytest.approx(0.2, abs=0.006)


def test_an_unknown_depth_loss_is_refused_by_name():
    with pytest.raises(ValueError, match="depth loss 'log': expected one of l1, relative"):
        FocusLoss(DEPTH_ONLY, depth_loss="log")
    with pytest.raises(ValueError, match="--depth-loss .log.: expected one of l1, relative"):
        TrainConfig(data=["x.h5"], out="x", depth_loss="log").check()
    with pytest.raises(ValueError, match="--relative-floor 0.5: expected 0 unless --depth-loss relative"):
        TrainConfig(data=["x.h5"], out="x", relative_floor=0.5).check()
    with pytest.raises(ValueError, match="--relative-floor -1: expected a depth in metres >= 0"):
        TrainConfig(data=["x.h5"], out="x", depth_loss="relative", relative_floor=-1).check()
    # a checkpoint's config from before the option trained with L1, and reads back so
    assert TrainConfig.from_dict({"data": ["x.h5"], "out": "x"}).depth_loss == "l1"


def test_fit_depth_loss_reaches_the_trainer_is_stored_and_kept_on_resume(tmp_path):
    import csv
    import json

    from click.testing import CliRunner
    from train_fixtures import synthetic_file, tiny_fit_config

    from focalstack.train.checkpoint import load_checkpoint
    from focalstack.train.cli import main
    from focalstack.train.trainer import fit

    data = str(synthetic_file("fit-train", 6, 32, 21))
    common = ["fit", "--data", data, "--arch", "fod-depth", "--width", "4", "--batch-size", "2", "--quiet", "--no-tensorboard"]
    common += ["--workers", "0", "--seed", "3", "--threads", "1"]
    relative = ["--depth-loss", "relative", "--relative-floor", "0.6"]
    done = CliRunner().invoke(main, [*common, "--epochs", "1", *relative, "--out", str(tmp_path / "rel")])
    assert done.exit_code == 0, done.output
    config = json.loads((tmp_path / "rel" / "config.json").read_text())
    assert config["depth_loss"] == "relative" and config["relative_floor"] == 0.6
    assert load_checkpoint(tmp_path / "rel" / "last.pt")["config"]["depth_loss"] == "relative"
    assert "relative depth loss (over at least 0.6 m)" in (tmp_path / "rel" / "train.log").read_text()
    done = CliRunner().invoke(main, [*common, "--epochs", "1", "--out", str(tmp_path / "l1")])
    assert done.exit_code == 0, done.output

    def first_loss(name):
        return float(next(csv.DictReader(open(tmp_path / name / "metrics.csv")))["train_loss"])

    assert first_loss("rel") != pytest.approx(first_loss("l1"), rel=1e-3)  # same seed and data: only the loss differs
    # a resumed run keeps the loss it was started with
    resumed = fit(tiny_fit_config(tmp_path, "rel", arch="fod-depth", arch_kwargs={"width": 4}, epochs=2), resume=True)
    assert load_checkpoint(resumed.last)["config"]["depth_loss"] == "relative"


def test_the_trainer_hands_the_floor_to_the_loss_in_normalised_depth(monkeypatch, tmp_path):
    from train_fixtures import tiny_fit_config

    from focalstack.train import trainer as trainer_module

    seen = {}
    real = trainer_module.FocusLoss

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "FocusLoss", spy)
    cfg = tiny_fit_config(tmp_path, depth_loss="relative", relative_floor=0.6, max_steps=1)
    cfg.norm = {**cfg.norm, "depth_scale": 2.0}
    trainer_module.fit(cfg)
    assert seen["depth_loss"] == "relative" and seen["relative_floor"] == pytest.approx(0.3)  # 0.6 m / 2 m


def test_the_loss_is_described_in_words_for_logs_and_cards_and_old_configs_read_as_l1():
    from focalstack.train.losses import describe_loss

    assert describe_loss({}) == "L1 depth loss; term weights defocus 1, depth 1, aif 1, perceptual 0.1, edges 0.1"
    config = {"depth_loss": "relative", "relative_floor": 0.5, "loss_weights": {"depth": 0.375}}
    assert describe_loss(config).startswith("relative depth loss (over at least 0.5 m); term weights defocus 1, depth 0.375,")
    assert describe_loss({"depth_loss": "relative"}).startswith("relative depth loss; ")
