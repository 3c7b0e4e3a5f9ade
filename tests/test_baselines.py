"""The constant-depth baseline of experiment reports: its constant, and its scores by the models' code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_fixtures import synthetic_file

from focalstack.dataset import FocalStackFile
from focalstack.train.baselines import ConstantDepth, mean_depth
from focalstack.train.data import Norm
from focalstack.train.evaluate import evaluate_model
from focalstack.train.protocols import resolve_protocols


def true_arrays(path):
    with FocalStackFile(path) as f:
        return f.read_all("depth").astype(np.float64), np.stack([f[i].defocus for i in range(len(f))])


def test_mean_depth_is_the_mean_over_valid_pixels_of_every_file():
    a, b = synthetic_file("base-a", 3, 32, 51), synthetic_file("base-b", 2, 32, 52, depth_range=(0.5, 4.0))
    depth = np.concatenate([true_arrays(a)[0].ravel(), true_arrays(b)[0].ravel()])
    assert (depth > 3.0).any()  # pixels beyond max_depth are not part of the mean
    valid = depth[np.isfinite(depth) & (depth > 0) & (depth <= 3.0)]
    assert mean_depth([str(a), str(b)], 3.0) == pytest.approx(valid.mean(), rel=1e-9)


def test_constant_depth_is_scored_per_image_like_a_network():
    path = synthetic_file("base-eval", 3, 32, 53)
    norm = Norm()
    c = 0.8
    result = evaluate_model(
        ConstantDepth(c, norm), norm, [str(path)], resolve_protocols(("focalstack",)), ("All",), device=torch.device("cpu")
    )
    row = next(r for r in result.rows if r["setting"] == "All")
    depth, defocus = true_arrays(path)
    valid = np.isfinite(depth) & (depth > 0) & (depth <= norm.max_depth)
    mse = [np.mean((c - d[v]) ** 2) for d, v in zip(depth, valid)]  # per image, then over scenes
    absrel = [np.mean(np.abs(c - d[v]) / d[v]) for d, v in zip(depth, valid)]
    assert row["depth_mse"] == pytest.approx(np.mean(mse), rel=1e-5)
    assert row["depth_rmse"] == pytest.approx(np.mean(np.sqrt(mse)), rel=1e-5)
    assert row["depth_absrel"] == pytest.approx(np.mean(absrel), rel=1e-5)
    # zero defocus everywhere: the defocus error is the mean squared true defocus
    assert row["defocus_mse"] == pytest.approx(np.mean([np.mean(d[np.isfinite(d)] ** 2) for d in defocus]), rel=1e-4)
    assert row["aif_ssim"] is None  # no AiF branch
