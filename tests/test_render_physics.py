"""The renderer against physics: scenes whose depth and blur are known in advance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from render_fixtures import (
    disk_edge_width,
    edge_scene,
    fit_disk_blur,
    fronto_plane,
    light_field_settings,
    matte,
    measured_edge_width,
    sharpness,
    strips_scene,
    textured_plane_scene,
)

from focalstack.dataset.optics import blur_diameter_px
from focalstack.render.config import RenderConfig, RenderSettings
from focalstack.render.scene import CameraSpec

pytestmark = pytest.mark.blender


def _render(desc, samples=16, denoise=True, model="cycles"):
    from focalstack.render.blender import BlenderRenderer
    from focalstack.render.pipeline import make_record

    config = RenderConfig(preset="test", defocus_model=model, render=RenderSettings(samples=samples, denoise=denoise))
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


# Small blur: FoD500's blur in pixels at 64 px (f/0.25), a textured plane at 1 m, slices focused so that the
# blur diameters step by 0.2 px from 1.1 px down to 0.3 px, and one in focus. The fit models the box-filtered
# disk from an all-in-focus render eight times finer (render_fixtures.fit_disk_blur; four times finer leaves
# the model's own 1/4 px box in it, measured 0.12 px low at 0.7 px).
SMALL_BLUR_DEPTH = 1.0
SMALL_BLUR_CAMERA = CameraSpec(2.9, 3.1, 0.25, [0.3869, 0.4355, 0.4980, 0.5812, 0.6982, 1.0], 64, 64)


def _render_with(desc, **settings):
    from focalstack.render.blender import BlenderRenderer
    from focalstack.render.pipeline import make_record

    config = RenderConfig(
        preset="test",
        focus_distances=list(desc.camera.focus_distances),
        render=RenderSettings(samples=settings["samples"], denoise=settings["denoise"]),
    )
    with BlenderRenderer(**settings) as renderer:
        return make_record(desc, renderer.render(desc), config)


@pytest.fixture(scope="module")
def small_blur_reference():
    from focalstack.dataset.colour import srgb_to_linear

    desc = textured_plane_scene(SMALL_BLUR_DEPTH, SMALL_BLUR_CAMERA)
    fine = dataclasses.replace(desc, camera=dataclasses.replace(desc.camera, width=512, height=512, slices=[1.0]))
    aif = _render_with(fine, samples=16, denoise=False).aif
    return desc, srgb_to_linear(aif.astype(np.float64) / 255.0).mean(axis=2)


SMALL_BLUR_SETTINGS = {
    "raw 64 samples": dict(samples=64, denoise=False),
    "16 samples + OIDN high (RENDER_SETTINGS_V0)": dict(samples=16, denoise=True, denoise_quality="high"),
    "16 samples + OIDN balanced (the default)": dict(samples=16, denoise=True),
    **{name: {**settings, "samples": 16} for name, settings in light_field_settings().items()},
}
# Measured (docs/rendering.md, "Small blur"): OIDN adds about 0.8 px of blur to fine texture at 16 samples
# (the in-focus slice fits 0.83 px) and compresses the slices' differences. Strict: a fix makes these pass,
# and then the marks must go (as the light field's did).
KNOWN_SMALL_BLUR_FAILURES = {
    "16 samples + OIDN high (RENDER_SETTINGS_V0)": "OIDN blurs fine texture by ~0.8 px at 16 samples",
    "16 samples + OIDN balanced (the default)": "OIDN blurs fine texture at 16 samples",
}


@pytest.mark.parametrize("name", list(SMALL_BLUR_SETTINGS))
def test_sub_pixel_blur_keeps_the_optics_order_and_size_on_a_textured_plane(small_blur_reference, name, request):
    if name in KNOWN_SMALL_BLUR_FAILURES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=KNOWN_SMALL_BLUR_FAILURES[name]))
    desc, aif_fine = small_blur_reference
    record = _render_with(desc, **SMALL_BLUR_SETTINGS[name])
    expected = [abs(blur_diameter_px(SMALL_BLUR_DEPTH, s, 0.25, 2.9, 3.1, 64)) for s in SMALL_BLUR_CAMERA.focus_distances]
    np.testing.assert_allclose(expected, [1.1, 0.9, 0.7, 0.5, 0.3, 0.0], atol=0.002)
    inner = np.zeros((64, 64), bool)
    inner[6:-6, 6:-6] = True
    scores = [sharpness(record.stack[k], inner) for k in range(len(expected))]
    assert all(a < b for a, b in zip(scores, scores[1:])), (name, scores)  # 0.2 px less blur: sharper
    fitted = [fit_disk_blur(aif_fine, record.stack[k], up=8) for k in range(len(expected))]
    # each slice's fitted blur is nearer its own diameter than any other slice's: 0.2 px steps are resolved
    nearest = [int(np.argmin(np.abs(np.subtract(expected, f)))) for f in fitted]
    assert nearest == list(range(len(expected))), (name, fitted, expected)


# A sharp high-contrast checker (0.05 / 0.9 albedo, uniform light, cells 3.3 px, not on the pixel grid): its
# only noise is where a pixel straddles a cell edge. OIDN's high-quality network misrenders it: the stored
# all-in-focus image errs 2.0x the raw 16-sample noise (measured at 48 and 96 px), balanced 1.2-1.4x.
CHECKER_CAMERA = CameraSpec(2.9, 3.1, 1.0, [0.3, 1.0], 48, 48)


def _checker_scene():
    from render_fixtures import UNIFORM_WHITE_WORLD, frustum_half_width

    from focalstack.render.scene import MaterialSpec, SceneDescription, TextureLayer

    z = 1.0
    h = 1.5 * frustum_half_width(z, CHECKER_CAMERA)
    cells = CHECKER_CAMERA.width / (6.6 * frustum_half_width(z, CHECKER_CAMERA))
    texture = TextureLayer("checker", scale=cells, color_a=[0.05] * 3, color_b=[0.9] * 3)
    plane = fronto_plane("checker", z, -h, h, -h, h, MaterialSpec([0.5] * 3, 1.0, 0.0, 0.0, textures=[texture]))
    return SceneDescription(1, "test-checker", CHECKER_CAMERA, [plane], [], UNIFORM_WHITE_WORLD)


@pytest.fixture(scope="module")
def checker_reference():
    desc = _checker_scene()
    reference = _linear_images(_render_with(desc, samples=512, denoise=False))
    return desc, reference, _linear_images(_render_with(desc, samples=16, denoise=False))


def _linear_images(record) -> list[np.ndarray]:
    from focalstack.dataset.colour import srgb_to_linear

    return [srgb_to_linear(img.astype(np.float64) / 255.0) for img in (record.aif, *record.stack)]


def _preset_settings() -> dict[str, dict]:
    """The distinct render settings of the bundled presets (each tested once), named by their presets."""
    from focalstack.render.config import builtin_presets, load_preset

    distinct: dict[str, dict] = {}
    for name in builtin_presets():
        settings = load_preset(name).render.to_dict()
        key = next((k for k, v in distinct.items() if v == settings), None)
        if key is None:
            distinct[name] = settings
        else:
            distinct[f"{key},{name}"] = distinct.pop(key)
    return distinct


@pytest.mark.parametrize("presets, settings", list(_preset_settings().items()))
def test_stored_images_carry_no_denoiser_artefacts_on_a_sharp_checker(checker_reference, presets, settings):
    """Ground truth shows the scene, not a denoiser's guess: the stored AiF image and every slice of each preset's
    default settings are within twice the raw 16-sample error of a 512-sample render."""
    desc, reference, raw = checker_reference
    stored = _linear_images(_render_with(desc, **settings))
    for k, (image, ref, noisy) in enumerate(zip(stored, reference, raw)):
        error, noise = np.abs(image - ref).mean(), np.abs(noisy - ref).mean()
        what = "all-in-focus" if k == 0 else f"slice {k - 1}"
        assert error <= 2 * noise, f"{presets}: {what} errs {error:.4f}, raw noise {noise:.4f}"


def test_the_checker_finds_oidn_high_quality_artefacts(checker_reference):
    """The test above can fail: OIDN's high quality (today's default before) errs more than twice the raw noise."""
    desc, reference, raw = checker_reference
    high = _linear_images(_render_with(desc, samples=16, denoise=True, denoise_quality="high"))
    ratio = np.abs(high[0] - reference[0]).mean() / np.abs(raw[0] - reference[0]).mean()
    assert ratio > 1.8, ratio
