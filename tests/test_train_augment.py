"""Capture augmentation (sensor noise and JPEG drawn per sample by the planner, applied to the stack only)
and fine-tuning from a checkpoint's weights (``fit --init``)."""

import json
import re

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from train_fixtures import TINY, single_torch_thread, synthetic_file, tiny_fit_config  # noqa: F401

from focalstack.dataset.capture import recapture_srgb8
from focalstack.dataset.colour import srgb_to_linear
from focalstack.train.augment import Capture, CaptureAugment, recapture_stack
from focalstack.train.checkpoint import CheckpointError, export_weights, load_checkpoint
from focalstack.train.cli import main
from focalstack.train.data import FocalStackDataset, inspect_source
from focalstack.train.plan import PlanSettings, SampleKey, plan_epoch
from focalstack.train.trainer import fit


def test_recapture_adds_poisson_gaussian_noise_in_linear_light():
    grey = np.full((256, 256, 3), 128, np.uint8)
    x = float(srgb_to_linear(np.array(128 / 255)))
    out = recapture_srgb8(grey, 400.0, 0.01, 0, np.random.default_rng(0))
    linear = srgb_to_linear(out / 255.0)
    assert out.dtype == np.uint8 and out.shape == grey.shape
    assert linear.mean() == pytest.approx(x, abs=2e-3)
    # shot noise x / full well plus read noise squared: what the renderer's sensor adds to a linear render
    assert linear.var() == pytest.approx(x / 400.0 + 0.01**2, rel=0.08)
    np.testing.assert_array_equal(recapture_srgb8(grey, 0.0, 0.0, 0, np.random.default_rng(0)), grey)


def test_a_stacks_slices_get_independent_noise_from_the_captures_seed():
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(0, 256, (24, 24, 3)).astype(np.uint8), (0, 0), 2)  # what JPEG is made for
    stack = np.repeat(image[None], 3, axis=0)
    capture = Capture(300.0, 0.005, 80, seed=7)
    a = recapture_stack(stack, capture)
    np.testing.assert_array_equal(a, recapture_stack(stack, capture))  # from the seed alone
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])  # a camera's frames differ
    assert not np.array_equal(a, recapture_stack(stack, Capture(300.0, 0.005, 80, seed=8)))
    assert np.abs(a.astype(int) - stack).mean() < 12  # noise and JPEG, not another image


def _sources():
    return [inspect_source(synthetic_file("augment-a", 10, 16, 1))]


def test_the_planner_draws_each_samples_capture_within_the_option_and_replays_it():
    strongest = CaptureAugment(1000.0, 0.002, 90)
    settings = PlanSettings(batch_size=4, stack_size=5, capture=strongest, samples_per_epoch=400)
    keys = [k for b in plan_epoch(_sources(), [np.arange(10)], settings, 3, 1) for k in b]
    captured = [k.capture for k in keys if k.capture is not None]
    assert 0.4 < len(captured) / len(keys) < 0.6  # half the samples stay clean
    assert all(1000.0 <= c.full_well <= 10000.0 and 0 <= c.read_noise <= 0.002 for c in captured)
    assert all(90 <= c.jpeg_quality <= 100 for c in captured)
    assert max(c.full_well for c in captured) > 5000 and min(c.full_well for c in captured) < 2000
    assert len({c.seed for c in captured}) == len(captured)
    assert keys == [k for b in plan_epoch(_sources(), [np.arange(10)], settings, 3, 1) for k in b]
    off = [k for b in plan_epoch(_sources(), [np.arange(10)], PlanSettings(batch_size=4, stack_size=5), 3, 1) for k in b]
    assert not any(k.capture for k in off)


def test_a_captured_sample_differs_in_its_stack_only():
    ds = FocalStackDataset([str(synthetic_file("augment-a", 10, 16, 1))])
    key = SampleKey(0, 2, (0, 1, 2, 3, 4), flip_h=True, transpose=True)
    clean, noisy = ds[key], ds[SampleKey(0, 2, (0, 1, 2, 3, 4), flip_h=True, transpose=True, capture=Capture(200.0, 0.01, 70, 5))]
    assert not torch.equal(clean["stack"], noisy["stack"]) and noisy["stack"].dtype == torch.uint8
    for name in ("aif", "defocus", "depth", "edges", "focus"):
        assert torch.equal(clean[name], noisy[name]), name
    stack = clean["stack"].permute(0, 2, 3, 1).numpy()  # the oriented frame is what the camera saw
    want = recapture_stack(stack, Capture(200.0, 0.01, 70, 5))
    np.testing.assert_array_equal(noisy["stack"].permute(0, 2, 3, 1).numpy(), want)
    ds.close()


@pytest.mark.parametrize(
    "text, message",
    [
        ("1000,0.002", "expected FULL_WELL,READ_NOISE,JPEG_QUALITY[,SHARE]"),
        ("1000,abc,90", "expected FULL_WELL,READ_NOISE,JPEG_QUALITY[,SHARE]"),
        ("1000,0.002,90,0.5,1", "expected FULL_WELL,READ_NOISE,JPEG_QUALITY[,SHARE]"),
        ("1000,0.002,90,0", "share 0.0: expected a number in (0, 1]"),
        ("1000,0.002,90,1.5", "share 1.5: expected a number in (0, 1]"),
        ("-5,0.002,90", "full well -5.0: expected a finite number >= 0"),
        ("1000,nan,90", "read noise nan: expected a finite number >= 0"),
        ("1000,0.002,101", "JPEG quality 101: expected 0 (none) to 100"),
        ("0,0,0", "no noise and no JPEG"),
        # numpy's Poisson draw failed mid-training with "lam value too large", naming no option
        ("1e308,0.004,80", "full well 1e+308: expected at most 1e+12 electrons"),
    ],
)
def test_bad_capture_augment_values_are_refused_naming_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        CaptureAugment.parse(text)


def test_the_share_of_re_captured_samples_is_the_fourth_value_and_stored_only_when_not_a_half():
    quarter = CaptureAugment.parse("1000,0.002,90,0.25")
    assert quarter.to_list() == [1000.0, 0.002, 90, 0.25] and CaptureAugment.from_list(quarter.to_list()) == quarter
    assert CaptureAugment.parse("1000,0.002,90").to_list() == [1000.0, 0.002, 90]
    settings = PlanSettings(batch_size=4, stack_size=5, capture=quarter, samples_per_epoch=800)
    keys = [k for b in plan_epoch(_sources(), [np.arange(10)], settings, 3, 1) for k in b]
    assert 0.19 < np.mean([k.capture is not None for k in keys]) < 0.31


cfg = tiny_fit_config


def test_a_run_with_capture_augmentation_trains_on_it_and_resumes_exactly(tmp_path, monkeypatch):
    from focalstack.train import data

    noisy, seen = [200.0, 0.01, 60], []

    def recorded(stack, capture):
        seen.append(capture)
        return recapture_stack(stack, capture)

    monkeypatch.setattr(data, "recapture_stack", recorded)
    straight = fit(cfg(tmp_path, "straight", capture_augment=noisy))
    assert 0 < len(seen) < 12  # of 2 epochs x 6 samples, about half; validation stays clean
    seen.clear()
    clean = fit(cfg(tmp_path, "clean"))
    assert not seen
    fit(cfg(tmp_path, "killed", capture_augment=noisy, max_steps=4))
    resumed = fit(cfg(tmp_path, "killed"), resume=True)  # the augmentation comes from the checkpoint
    a, b, c = (load_checkpoint(r.last)["model"] for r in (straight, resumed, clean))
    assert all(torch.allclose(v, b[k], atol=1e-6) for k, v in a.items())
    assert not all(torch.allclose(v, c[k], atol=1e-6) for k, v in a.items())
    assert "capture augmentation 200,0.01,60" in (tmp_path / "straight" / "train.log").read_text()
    with pytest.raises(ValueError, match="JPEG quality 300"):
        fit(cfg(tmp_path, "bad", capture_augment=[200.0, 0.01, 300]))


def test_init_starts_from_the_checkpoints_weights_even_half_precision_ones(tmp_path):
    first = fit(cfg(tmp_path, "first", epochs=1))
    half = tmp_path / "first-half.pt"
    export_weights(first.last, half, half=True)
    # With a learning rate of 1e-12 the weights cannot move: what the run ends with is what it started from.
    still = fit(cfg(tmp_path, "still", epochs=1, lr=1e-12, init=str(half)))
    fresh = fit(cfg(tmp_path, "fresh", epochs=1, lr=1e-12))
    want = load_checkpoint(half)["model"]
    got, other = load_checkpoint(still.last), load_checkpoint(fresh.last)["model"]
    assert all(torch.allclose(want[k].float(), v, atol=1e-6) for k, v in got["model"].items())
    assert not all(torch.allclose(want[k].float(), v, atol=1e-3) for k, v in other.items())
    assert got["global_step"] == 3 and got["config"]["init"] == str(half.resolve())
    assert f"starting from the weights of {half.resolve()}" in (tmp_path / "still" / "train.log").read_text()


def test_init_refuses_weights_of_another_network_or_normalisation(tmp_path):
    first = fit(cfg(tmp_path, "first", epochs=1))
    with pytest.raises(ValueError, match=r"the weights are of 'fod', this run trains 'fod-depth'"):
        fit(cfg(tmp_path, "a", arch="fod-depth", arch_kwargs={"width": 4}, init=str(first.last)))
    # built with another --width: the options are named, not 72 tensors of another shape
    with pytest.raises(ValueError, match=r"of 'fod' built with \{'width': 4.*this run builds it with \{'width': 8"):
        fit(cfg(tmp_path, "b", arch_kwargs={**TINY, "width": 8}, init=str(first.last)))
    norm = {"depth_scale": 1.5, "defocus_scale": 5.0, "focus_scale": 1.5, "max_depth": 3.0, "signed_defocus": False}
    with pytest.raises(ValueError, match=r"another normalisation: depth_scale 3.0 \(this run: 1.5\)"):
        fit(cfg(tmp_path, "c", norm=norm, init=str(first.last)))
    with pytest.raises(CheckpointError, match="no such checkpoint file, and no shipped weights of that name"):
        fit(cfg(tmp_path, "d", init=str(tmp_path / "missing.pt")))
    assert not (tmp_path / "a" / "last.pt").exists() and not (tmp_path / "c" / "last.pt").exists()


def test_fit_init_takes_the_network_from_the_checkpoint_and_capture_augment_from_the_command_line(tmp_path):
    first = fit(cfg(tmp_path, "first", arch="fod-depth", arch_kwargs={"width": 4}, epochs=1))
    data = synthetic_file("fit-train", 6, 32, 21)
    args = ["fit", "--data", data, "--out", tmp_path / "tuned", "--init", first.last, "--epochs", 1, "--batch-size", 2]
    args += ["--capture-augment", "500,0.004,85", "-q", "--no-tensorboard", "--threads", 1]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert config["arch"] == "fod-depth" and config["arch_kwargs"] == {"width": 4}
    assert config["capture_augment"] == [500.0, 0.004, 85]
    bad_args = ["fit", "--data", data, "--out", tmp_path / "bad", "--init", first.last, "--capture-augment", "5,0.1"]
    bad = CliRunner().invoke(main, [str(a) for a in bad_args])
    assert bad.exit_code == 2 and "Invalid value for '--capture-augment'" in bad.output
    assert "expected FULL_WELL,READ_NOISE,JPEG_QUALITY" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "bad").exists()
