"""The weights in weights/ read depth from blur: on textured fronto-parallel planes blurred with the disk that
the optics give for their own training camera (an image generator they never saw, not Blender), the depth they
predict must follow the plane's depth where the blur differences are larger than a pixel. The planes and the
network's median answer are benchmarks/plane_depth.py's, which puts the same table in every model card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from train_fixtures import load_benchmark, single_torch_thread  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = sorted((REPO / "weights").glob("*.pt"))
NEAR = (0.12, 0.2, 0.3)  # at 64 px and f/0.25 the slices' blur differs by 2 px or more here
RISING = (0.12, 0.2, 0.3, 0.45, 0.7)


def load_plane_depth():
    return load_benchmark("plane_depth")


@pytest.mark.skipif(not WEIGHTS, reason="no weights shipped")
@pytest.mark.parametrize("path", WEIGHTS, ids=[p.stem for p in WEIGHTS])
def test_shipped_weights_follow_the_depth_of_a_blurred_plane(path):
    _, rows = load_plane_depth().measure(str(path), depths=RISING, seeds=3)
    medians = {r["depth_m"]: np.median(r["predicted_m"]) for r in rows}
    for z in NEAR:
        assert medians[z] == pytest.approx(z, rel=0.15), medians
    assert all(medians[a] < medians[b] for a, b in zip(RISING, RISING[1:])), medians
