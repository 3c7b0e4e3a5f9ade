"""The light-field slice path (render settings slices = "light_field") against the same physics as the
Cycles slices: every slice blurs as its stored defocus says, depth is the plane's, the in-focus slice is the
sharpest, occlusion edges look like Cycles' own depth of field, and the same scene renders the same pixels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from focalstack.render import lightfield
from focalstack.render.config import RENDER_SETTINGS_LIGHT_FIELD, ConfigError, RenderConfig, RenderSettings
from focalstack.render.effects import EffectsConfig, with_effects
from focalstack.render.scene import CameraSpec, MaterialSpec, TextureLayer
from render_fixtures import (
    disk_edge_width,
    edge_scene,
    fronto_plane,
    frustum_half_width,
    measured_edge_width,
    sharpness,
    strips_scene,
    UNIFORM_WHITE_WORLD,
)


LIGHT_FIELD = RENDER_SETTINGS_LIGHT_FIELD.to_dict()
EDGE_CAMERA = CameraSpec(50.0, 36.0, 1.4, [0.25, 0.4, 0.7, 2.0], 64, 64)
EDGE_DEPTH = 0.4


# -- pure: the layout and where rays land ------------------------------------------------------------
def test_margin_covers_the_largest_shift_and_views_tile_the_render():
    layout = lightfield.LightFieldLayout.for_camera(EDGE_CAMERA, 24)
    shift = layout.f_px * layout.radius_m / min(EDGE_CAMERA.focus_distances)
    assert shift < layout.margin <= shift + 2
    assert layout.grid_x * layout.grid_y >= 24
    tw, th = layout.view_size
    assert layout.image_size == (tw * layout.grid_x, th * layout.grid_y)
    # the aperture radius is the camera's f / (2 N)
    assert layout.radius_m == pytest.approx(50e-3 / 1.4 / 2)


def test_rays_are_stratified_over_the_aperture_and_the_pixel():
    layout = lightfield.LightFieldLayout.for_camera(EDGE_CAMERA, 16)
    px, py, x, y = layout.sample_rays()
    r2 = (px**2 + py**2) / layout.radius_m**2
    assert r2.max() <= 1.0 + 1e-6
    assert abs(r2.mean() - 0.5) < 0.01  # uniform over the disk: E[r^2] = R^2 / 2
    assert abs(px.mean()) < 0.01 * layout.radius_m and abs(py.mean()) < 0.01 * layout.radius_m
    frac = x - np.floor(x)
    assert abs(frac.mean() - 0.5) < 0.01
    # each view pixel's 16 rays spread over the disk: every quadrant holds some of them
    quadrants = (px > 0).astype(int) * 2 + (py > 0)
    counts = np.stack([(quadrants == q).sum(axis=0) for q in range(4)])
    assert (counts >= 1).mean() > 0.95


def test_every_pixel_of_every_slice_gets_about_one_ray_per_view():
    layout = lightfield.LightFieldLayout.for_camera(EDGE_CAMERA, 16)
    plan = lightfield.SlicePlan(layout)
    for k in range(len(EDGE_CAMERA.slices)):
        counts = plan.counts(k)
        assert counts.min() >= 1
        assert counts.mean() == pytest.approx(16, rel=0.01)


def test_a_constant_light_field_splats_to_the_constant():
    layout = lightfield.LightFieldLayout.for_camera(EDGE_CAMERA, 8)
    plan = lightfield.SlicePlan(layout)
    tw, th = layout.view_size
    rays = np.full((8 * tw * th, 3), 0.25, dtype=np.float32)
    np.testing.assert_allclose(plan.splat(0, rays), 0.25, rtol=1e-6)


def test_a_splat_is_the_mean_of_the_rays_that_land_in_each_pixel():
    # brute force: every ray's landing pixel from the thin-lens shift, then a plain per-pixel mean
    layout = lightfield.LightFieldLayout.for_camera(EDGE_CAMERA, 8)
    plan = lightfield.SlicePlan(layout)
    px, py, x, y = layout.sample_rays()
    rays = np.random.default_rng(0).random((px.size, 3)).astype(np.float32)
    w, h = layout.width, layout.height
    for k, s in enumerate(layout.focus_distances):
        col = np.floor(x + layout.f_px * px / s).astype(int).ravel()
        row = np.floor(y - layout.f_px * py / s).astype(int).ravel()
        ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        expected = np.zeros((h, w, 3))
        count = np.zeros((h, w))
        np.add.at(expected, (row[ok], col[ok]), rays[ok])
        np.add.at(count, (row[ok], col[ok]), 1)
        assert count.min() >= 1
        np.testing.assert_allclose(plan.splat(k, rays), expected / count[..., None], rtol=1e-5)


def _step_rays(layout, depth_m, edge_col):
    """Ray values of a fronto-parallel plane at ``depth_m`` whose all-in-focus image steps from 0 to 1 at
    column ``edge_col``: a ray from aperture point p through view position x hits the point that the
    pinhole camera sees at x + f_px p / depth (the shift formula with the plane's own depth)."""
    px, _, x, _ = layout.sample_rays()
    seen = x + layout.f_px * px / depth_m
    return (seen >= edge_col).astype(np.float32).reshape(-1, 1)


@pytest.mark.parametrize("model", ["cycles", "thin_lens"])
def test_slice_guides_blur_the_all_in_focus_image_as_the_light_field_slices_do(model):
    # The guides' radius convention (half the stored blur diameter, the camera's blur model) against the
    # light field's own shift-and-add of the same plane: a wrong radius (x 0.5, x 2) is several times off.
    cam = dataclasses.replace(EDGE_CAMERA, defocus_model=model)
    layout = lightfield.LightFieldLayout.for_camera(cam, 64)
    plan = lightfield.SlicePlan(layout)
    rays = _step_rays(layout, EDGE_DEPTH, 32)
    sharp = np.zeros((64, 64, 1), dtype=np.float32)
    sharp[:, 32:] = 1.0
    depth = np.full((64, 64), EDGE_DEPTH, dtype=np.float32)
    guides = lightfield.slice_guides(sharp, depth, cam)
    for k in range(len(cam.slices)):
        # rows averaged: the profile across the edge (Monte Carlo noise of the 64 views averages out)
        light_field = plan.splat(k, rays)[8:-8, :, 0].mean(axis=0)
        guide = guides[k][8:-8, :, 0].mean(axis=0)
        err = np.abs(light_field - guide).max()
        wrong = [np.abs(light_field - lightfield.disk_blur(sharp, np.abs(cam.defocus_maps(depth)[k]) * f)[8:-8, :, 0]
                        .mean(axis=0)).max() for f in (0.25, 1.0)]
        assert err < 0.06, (k, err)
        assert min(wrong) > 2 * err or abs(cam.defocus_maps(depth)[k]).max() < 1, (k, err, wrong)


def test_slices_that_move_or_breathe_are_not_light_field_slices():
    assert lightfield.supports(EDGE_CAMERA)
    breathing = with_effects(edge_scene(EDGE_DEPTH, EDGE_CAMERA), EffectsConfig(focus_breathing=True))
    assert not lightfield.supports(dataclasses.replace(breathing.camera, defocus_model="thin_lens"))
    shaken = with_effects(edge_scene(EDGE_DEPTH, EDGE_CAMERA, seed=3), EffectsConfig(shake_rotation_deg=0.5))
    assert not lightfield.supports(shaken.camera)


def test_light_field_settings_are_validated():
    with pytest.raises(ConfigError, match="denoiser"):
        RenderSettings(slices="light_field", denoiser="in_render").validate()
    with pytest.raises(ConfigError, match="light_field_views"):
        RenderSettings(light_field_views=0).validate()
    with pytest.raises(ConfigError, match="slices"):
        RenderConfig(preset="x", slices="pinhole").validate()
    assert RenderSettings().slice_denoise_prefilter() == "accurate"
    assert RENDER_SETTINGS_LIGHT_FIELD.slice_denoise_prefilter() == "none"  # clean all-in-focus guides
    rays = dataclasses.replace(RENDER_SETTINGS_LIGHT_FIELD, light_field_guides="rays")
    assert rays.slice_denoise_prefilter() == "fast"
    with pytest.raises(ConfigError, match="light_field_guides"):
        RenderSettings(light_field_guides="albedo").validate()


def test_view_grids_have_a_cell_for_every_view_and_none_empty_when_views_factor():
    for views in range(1, 70):
        gx, gy = lightfield.view_grid(views)
        assert gx * gy >= views and gx >= gy
        if any(views % a == 0 and a <= 4 * (views // a) and a * a >= views for a in range(1, views + 1)):
            assert gx * gy == views, views
    assert lightfield.view_grid(32) == (8, 4)


def test_disk_blur_keeps_a_constant_spreads_a_point_over_its_disk_and_leaves_sharp_pixels():
    rng = np.random.default_rng(1)
    image = np.full((40, 40, 2), 0.3, dtype=np.float32)
    radius = rng.uniform(0, 4, (40, 40)).astype(np.float32)
    np.testing.assert_allclose(lightfield.disk_blur(image, radius), 0.3, rtol=1e-5)
    point = np.zeros((41, 41, 1), dtype=np.float32)
    point[20, 20] = 1.0
    out = lightfield.disk_blur(point, np.full((41, 41), 3.0, dtype=np.float32))[..., 0]
    assert out.sum() == pytest.approx(1.0, rel=1e-5)  # a uniform radius is an area-preserving disk
    yy, xx = np.mgrid[-20:21, -20:21]
    dist = np.hypot(yy, xx)
    assert out[dist > 3.5].max() == 0 and out[dist < 2.5].min() > 0
    assert np.ptp(out[dist < 2.5]) < 1e-6  # flat inside: a disk, not a Gaussian
    assert out.sum() / (np.pi * 9) == pytest.approx(out[20, 20], rel=0.05)
    texture = rng.random((30, 30, 3)).astype(np.float32)
    np.testing.assert_allclose(lightfield.disk_blur(texture, np.zeros((30, 30))), texture, rtol=1e-6)


# -- rendered ------------------------------------------------------------------------------------------
def _render(desc, model="cycles", **settings):
    from focalstack.render.blender import BlenderRenderer
    from focalstack.render.pipeline import make_record

    options = {**LIGHT_FIELD, **settings}
    config = RenderConfig(preset="test", defocus_model=model, **options)
    desc = dataclasses.replace(desc, camera=dataclasses.replace(desc.camera, defocus_model=model))
    with BlenderRenderer(**options) as renderer:
        rendered = renderer.render(desc)
    return make_record(desc, rendered, config), rendered


@pytest.mark.blender
@pytest.mark.parametrize("model, breathing", [("cycles", False), ("thin_lens", False), ("thin_lens", True)])
def test_light_field_edge_blur_matches_stored_defocus_in_every_slice(model, breathing):
    """As tests/test_render_physics.py does for the Cycles slices (the breathing stack, whose lens changes
    per slice, is rendered slice by slice; the thin lens without breathing has per-slice apertures)."""
    desc = with_effects(edge_scene(EDGE_DEPTH, EDGE_CAMERA), EffectsConfig(focus_breathing=breathing))
    record, rendered = _render(desc, model, samples=64, denoise=False, light_field_views=32)
    centre = record.defocus[:, 32, 32]
    for k, s in enumerate(EDGE_CAMERA.focus_distances):
        c = float(centre[k])
        measured = measured_edge_width(record.stack[k], margin=14)
        assert measured == pytest.approx(disk_edge_width(c), rel=0.10), (model, s, c, measured)
    assert abs(centre[1]) < 1e-6 and centre.min() < -4 and centre.max() > 2
    assert measured_edge_width(record.aif, margin=14) == pytest.approx(disk_edge_width(0.0), abs=0.15)
    np.testing.assert_allclose(record.depth, EDGE_DEPTH, atol=1e-4)


@pytest.mark.blender
@pytest.mark.parametrize("model", ["cycles", "thin_lens"])
def test_denoised_light_field_slices_blur_as_stored_defocus_says(model):
    """The light-field path as a preset gets it: few samples, denoised with the all-in-focus albedo and
    normal blurred per slice as guides. The denoiser must keep each slice's blur, not the guide's sharpness
    or its own smoothing."""
    desc = edge_scene(EDGE_DEPTH, EDGE_CAMERA)
    record, _ = _render(desc, model, samples=16)
    assert LIGHT_FIELD["denoise"] and LIGHT_FIELD["light_field_guides"] == "aif"
    centre = record.defocus[:, 32, 32]
    for k, s in enumerate(EDGE_CAMERA.focus_distances):
        c = float(centre[k])
        measured = measured_edge_width(record.stack[k], margin=14)
        assert measured == pytest.approx(disk_edge_width(c), rel=0.10), (model, s, c, measured)


@pytest.mark.blender
def test_light_field_in_focus_slice_is_sharpest_where_depth_equals_its_focus_distance():
    depths = [0.2, 0.4, 1.0]
    cam = CameraSpec(50.0, 36.0, 1.4, depths, 48, 48)
    record, _ = _render(strips_scene(depths, cam), samples=16)
    for k, z in enumerate(depths):
        mask = np.abs(record.depth - z) < 1e-3
        mask[:, :2] = mask[:, -2:] = False
        cols = np.flatnonzero(mask.any(axis=0))
        mask[:, : cols.min() + 4] = False
        mask[:, cols.max() - 3 :] = False
        scores = [sharpness(record.stack[j], mask) for j in range(len(depths))]
        assert int(np.argmax(scores)) == k, (z, scores)
        assert max(scores) > 1.5 * sorted(scores)[-2]


def _occlusion_scene(cam: CameraSpec):
    """A textured plane at 0.3 m covering the upper-left quadrant, in front of another at 1 m: a horizontal
    and a vertical occlusion edge, seen in focus and out of focus from both sides."""
    def checker(z, grey, cells):
        scale = cam.width / (cells * frustum_half_width(z, cam))
        return MaterialSpec([0.5] * 3, 1.0, 0.0, 0.0, textures=[TextureLayer("checker", scale, [0.05] * 3, [grey] * 3)])

    far_h = 1.5 * frustum_half_width(1.0, cam)
    near_h = 1.5 * frustum_half_width(0.3, cam)
    objects = [
        fronto_plane("far", 1.0, -far_h, far_h, -far_h, far_h, checker(1.0, 0.9, 6.0)),
        fronto_plane("near", 0.3, -near_h, 0.0, 0.0, near_h, checker(0.3, 0.6, 10.0)),
    ]
    from focalstack.render.scene import SceneDescription

    return SceneDescription(5, "test-occlusion", cam, objects, [], UNIFORM_WHITE_WORLD)


@pytest.mark.blender
def test_light_field_slices_match_cycles_slices_pixel_by_pixel_across_occlusion_edges():
    """Shift-and-add reproduces Cycles' thin lens where it matters most: at occlusion edges, where a
    blurred near plane spills over the far one and the far one shows through its blurred border."""
    from focalstack.render.blender import BlenderRenderer

    cam = CameraSpec(50.0, 36.0, 1.4, [0.3, 1.0], 48, 48)
    desc = _occlusion_scene(cam)
    with BlenderRenderer(samples=256, denoise=False) as renderer:  # Cycles' own thin lens
        cycles = renderer.render(desc)
        cycles_again = renderer.render(dataclasses.replace(desc, seed=desc.seed + 1))  # its noise level
    _, lf = _render(desc, samples=16, denoise=False, light_field_views=64, light_field_samples=4)
    blur = cam.defocus_maps(cycles.depth)  # the far plane blurs by > 4 px in the near slice and vice versa
    assert np.abs(blur).max() > 4
    h, w = cam.height, cam.width
    window = np.ones(4) / 4
    for k in range(2):
        a, b = lf.slices[k].mean(axis=2), cycles.slices[k].mean(axis=2)
        # Profiles across the vertical edge (upper half: near | far) and the horizontal one (left half:
        # near over far), averaged along the edge and over 4 px across it: Monte Carlo noise averages
        # out, a misplaced or wrongly occluded blur (several pixels wide) does not.
        for prof_a, prof_b in (
            (a[3 : h // 2 - 3].mean(axis=0), b[3 : h // 2 - 3].mean(axis=0)),
            (a[:, 3 : w // 2 - 3].mean(axis=1), b[:, 3 : w // 2 - 3].mean(axis=1)),
        ):
            step = abs(prof_b[:4].mean() - prof_b[-4:].mean())
            assert step > 0.05  # there is an edge to get wrong
            smooth = np.convolve(prof_a - prof_b, window, mode="valid")
            assert np.abs(smooth).max() < 0.1 * step + 0.005, (k, np.abs(smooth).max(), step)
        # and pixel by pixel the difference is noise: of the order of Cycles' own from another seed
        diff = np.abs(srgb8(lf.slices[k]) - srgb8(cycles.slices[k])).mean()
        noise = np.abs(srgb8(cycles_again.slices[k]) - srgb8(cycles.slices[k])).mean()
        assert diff < 2.5 * noise + 0.5, (k, diff, noise)


def srgb8(linear):
    from focalstack.dataset.colour import linear_to_srgb8

    return linear_to_srgb8(linear).astype(np.float64)


@pytest.mark.blender
def test_light_field_scene_renders_the_same_pixels_twice_in_one_process():
    from focalstack.render.blender import BlenderRenderer
    from focalstack.render.config import load_preset
    from focalstack.render.sampling import sample_scene, scene_seed

    config = load_preset("fod500").with_overrides(width=32, height=32, **{**LIGHT_FIELD, "samples": 2}).validate()
    first, other = (sample_scene(config, scene_seed(5, i)) for i in range(2))
    with BlenderRenderer(**{**LIGHT_FIELD, "samples": 2}) as renderer:
        a = renderer.render(first)
        renderer.render(other)
        b = renderer.render(sample_scene(config, scene_seed(5, 0)))
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.aif, b.aif)
    np.testing.assert_array_equal(a.slices, b.slices)
    assert np.abs(a.slices[0] - a.slices[-1]).max() > 0.05
