"""The weights in weights/ read depth from blur: on textured fronto-parallel planes blurred with the disk that
the optics give for their own training camera (an image generator they never saw, not Blender), the depth they
predict must follow the plane's depth where the blur differences are larger than a pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from train_fixtures import single_torch_thread, synthetic_scene  # noqa: F401

from focalstack.train.checkpoint import load_checkpoint, model_from_checkpoint

WEIGHTS = sorted((Path(__file__).resolve().parents[1] / "weights").glob("*.pt"))
NEAR = (0.12, 0.2, 0.3)  # at 64 px and f/0.25 the slices' blur differs by 2 px or more here
RISING = (0.12, 0.2, 0.3, 0.45, 0.7)


def plane_depth(model, norm, camera: dict, depth_m: float, seed: int) -> float:
    """Median predicted depth (m) of one synthetic scene whose layers all lie at ``depth_m``."""
    size = camera["image_size"][1]
    focus = tuple(camera["focus_distances"])
    optics = {k: camera[k] for k in ("f_number", "focal_length_mm", "sensor_width_mm")}
    rec = synthetic_scene(np.random.default_rng(seed), size, focus, optics, (depth_m, depth_m))
    stack = torch.from_numpy(rec.stack.astype(np.float32) / 255).permute(0, 3, 1, 2)[None]
    with torch.no_grad():
        out = model(stack, norm.focus(torch.tensor(focus, dtype=torch.float32)[None]))
    return float(np.median(norm.physical(out)["depth_m"][0].numpy()))


@pytest.mark.skipif(not WEIGHTS, reason="no weights shipped")
@pytest.mark.parametrize("path", WEIGHTS, ids=[p.stem for p in WEIGHTS])
def test_shipped_weights_follow_the_depth_of_a_blurred_plane(path):
    ckpt = load_checkpoint(path)
    model, norm = model_from_checkpoint(ckpt, path)
    model.eval()
    medians = {z: np.median([plane_depth(model, norm, ckpt["camera"], z, seed) for seed in range(3)]) for z in RISING}
    for z in NEAR:
        assert medians[z] == pytest.approx(z, rel=0.15), medians
    assert all(medians[a] < medians[b] for a, b in zip(RISING, RISING[1:])), medians
