"""The renderer against physics: scenes whose depth and blur are known in advance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from focalstack.dataset.optics import blur_diameter_px
from focalstack.render.config import RenderConfig
from focalstack.render.scene import CameraSpec
from render_fixtures import (
    disk_edge_width,
    edge_scene,
    fronto_plane,
    matte,
    measured_edge_width,
    sharpness,
    strips_scene,
)

pytestmark = pytest.mark.blender


def _render(desc, samples=16, denoise=True, model="cycles"):
    from focalstack.render.blender import BlenderRenderer
    from focalstack.render.pipeline import make_record

    config = RenderConfig(preset="test", defocus_model=model, samples=samples, denoise=denoise)
    # the camera says which blur its ground truth describes
    desc = dataclasses.replace(desc, camera=dataclasses.replace(desc.camera, defocus_model=model))
    with BlenderRenderer(samples=samples, denoise=denoise) as renderer:
        rendered = renderer.render(desc)
    return make_record(desc, rendered, config)


def test_fronto_parallel_plane_has_its_depth_in_every_pixel():
    cam = CameraSpec(2.9, 3.1, 1.0, [0.1, 0.7], 32, 32)
    z = 0.73
    desc = edge_scene(z, cam)
    record = _render(desc, samples=2, denoise=False)
    assert record.depth.shape == (32, 32)
    np.testing.assert_allclose(record.depth, z, atol=1e-4)
    # The stored defocus is the formula at that depth, for each slice.
    for k, s in enumerate(cam.focus_distances):
        np.testing.assert_allclose(record.defocus[k], blur_diameter_px(z, s, 1.0, 2.9, 3.1, 32), rtol=1e-5)


# A long lens wide open, so the blur spans several pixels at 64 px.
EDGE_CAMERA = CameraSpec(50.0, 36.0, 1.4, [0.25, 0.4, 0.7, 2.0], 64, 64)
EDGE_DEPTH = 0.4


@pytest.mark.parametrize("model, breathing", [("cycles", False), ("thin_lens", False), ("thin_lens", True)])
def test_rendered_edge_blur_matches_stored_defocus(model, breathing):
    from focalstack.render.effects import EffectsConfig, with_effects

    desc = with_effects(edge_scene(EDGE_DEPTH, EDGE_CAMERA), EffectsConfig(focus_breathing=breathing))
    record = _render(desc, samples=64, denoise=False, model=model)
    centre = record.defocus[:, 32, 32]
    for k, s in enumerate(EDGE_CAMERA.focus_distances):
        c = float(centre[k])
        expected = disk_edge_width(c)
        measured = measured_edge_width(record.stack[k], margin=14)
        assert measured == pytest.approx(expected, rel=0.10), (model, s, c, measured, expected)
    # The slices span in-focus (0 px) to strongly blurred (> 4 px) blur, front and back.
    assert abs(centre[1]) < 1e-6 and centre.min() < -4 and centre.max() > 2
    # The all-in-focus image is sharp: only the pixel box.
    assert measured_edge_width(record.aif, margin=14) == pytest.approx(disk_edge_width(0.0), abs=0.15)


def test_thin_lens_model_blurs_more_than_cycles_model_by_s_over_s_minus_f():
    cyc = blur_diameter_px(EDGE_DEPTH, 0.25, 1.4, 50.0, 36.0, 64, "cycles")
    thin = blur_diameter_px(EDGE_DEPTH, 0.25, 1.4, 50.0, 36.0, 64, "thin_lens")
    assert thin / cyc == pytest.approx(0.25 / (0.25 - 0.05))
    assert disk_edge_width(thin) > 1.15 * disk_edge_width(cyc)  # the test above can tell them apart


def test_in_focus_slice_is_sharpest_where_depth_equals_its_focus_distance():
    depths = [0.2, 0.4, 1.0]
    cam = CameraSpec(50.0, 36.0, 1.4, depths, 48, 48)
    record = _render(strips_scene(depths, cam), samples=16, denoise=True)
    for k, z in enumerate(depths):
        mask = np.abs(record.depth - z) < 1e-3
        mask[:, :2] = mask[:, -2:] = False
        # Stay clear of strip borders, where neighbours' blur spills in.
        cols = np.flatnonzero(mask.any(axis=0))
        mask[:, : cols.min() + 4] = False
        mask[:, cols.max() - 3 :] = False
        assert mask.sum() > 50
        scores = [sharpness(record.stack[j], mask) for j in range(len(depths))]
        assert int(np.argmax(scores)) == k, (z, scores)
        assert max(scores) > 1.5 * sorted(scores)[-2]


def test_image_rows_run_top_to_bottom_and_columns_left_to_right():
    cam = CameraSpec(50.0, 36.0, 1.0, [1.0], 32, 32)
    desc = edge_scene(2.0, cam)
    # A small plane up and to the right, in front of the backdrop.
    desc.objects.append(fronto_plane("marker", 1.0, 0.05, 0.15, 0.05, 0.15, matte(0.5)))
    record = _render(desc, samples=2, denoise=False)
    ys, xs = np.nonzero(record.depth < 1.5)
    assert ys.max() < 16 and xs.min() >= 16
