"""Real-capture effects: breathing, shake, sensor noise, JPEG; slice geometry against projection."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from focalstack.dataset.capture import add_sensor_noise, jpeg_roundtrip
from focalstack.dataset.optics import thin_lens_image_distance_m
from focalstack.render.config import ConfigError, load_preset
from focalstack.render.effects import EffectsConfig, with_effects
from focalstack.render.sampling import sample_scene, scene_seed

SHAKY = EffectsConfig(focus_breathing=True, shake_rotation_deg=0.5, shake_translation_mm=5.0)


def scene(width=64, effects=SHAKY, seed=0):
    config = load_preset("fod500").with_overrides(width=width, height=width, defocus_model="thin_lens")
    return with_effects(sample_scene(config, scene_seed(seed, 0)), effects)


def project(desc, k, points_ref_blender):
    """Project reference-frame points (Blender axes) into slice k, the way a Blender camera does."""
    cam = desc.camera
    pose = cam.slices[k].pose()
    local = (np.linalg.inv(pose) @ np.c_[points_ref_blender, np.ones(len(points_ref_blender))].T)[:3].T
    lens = thin_lens_image_distance_m(cam.focus_distances[k], cam.focal_length_mm) * 1e3
    f_px = lens / cam.sensor_width_mm * cam.width
    u = f_px * local[:, 0] / -local[:, 2] + (cam.width - 1) / 2
    v = -f_px * local[:, 1] / -local[:, 2] + (cam.height - 1) / 2
    return np.c_[u, v]


def test_effects_config_rejects_bad_values():
    with pytest.raises(ValueError, match="shake_rotation_deg"):
        EffectsConfig.from_dict({"shake_rotation_deg": -1})
    with pytest.raises(ValueError, match="jpeg_quality"):
        EffectsConfig.from_dict({"jpeg_quality": 101})
    with pytest.raises(ValueError, match="unknown key"):
        EffectsConfig.from_dict({"wobble": 1})
    with pytest.raises(ValueError, match="read_noise"):
        EffectsConfig.from_dict({"read_noise": float("nan")})
    with pytest.raises(ValueError, match="noise_full_well = 1e.300: expected at most 1e.12 electrons"):
        EffectsConfig.from_dict({"noise_full_well": 1e300})  # numpy's Poisson draw failed mid-render
    bad = load_preset("fod500").with_overrides(effects={"focus_breathing": True})
    with pytest.raises(ConfigError, match="thin_lens"):
        bad.validate()


def test_the_effects_tables_sensor_keys_become_the_scenes_capture():
    from focalstack.render.scene import CaptureSpec

    effects = EffectsConfig.from_dict({"read_noise": 0.01, "jpeg_quality": 80, "shake_rotation_deg": 0.1})
    assert effects.capture == CaptureSpec(noise_full_well=0.0, read_noise=0.01, jpeg_quality=80)
    assert effects.any and not EffectsConfig.from_dict({}).any
    desc = with_effects(sample_scene(load_preset("fod500"), scene_seed(0, 0)), effects)
    assert desc.capture == effects.capture and desc.capture is not effects.capture


def test_effects_are_drawn_from_the_seed_and_leave_the_scene_alone():
    plain = sample_scene(load_preset("fod500"), scene_seed(0, 0))
    a, b = scene(), scene()
    assert a.to_json() == b.to_json()
    assert a.objects == plain.objects and a.lights == plain.lights
    first, *rest = a.camera.slices
    assert first.rotation == [0.0, 0.0, 0.0] and first.translation == [0.0, 0.0, 0.0]
    assert np.abs(np.array([s.rotation for s in rest])).max() > 1e-4
    assert [s.rotation for s in scene(seed=1).camera.slices] != [s.rotation for s in a.camera.slices]
    untouched = sample_scene(load_preset("fod500"), scene_seed(0, 0))
    assert with_effects(untouched, EffectsConfig()).to_json() == plain.to_json()


def test_breathing_homography_is_the_thin_lens_magnification():
    desc = scene(effects=EffectsConfig(focus_breathing=True))
    cam = desc.camera
    for k, s in enumerate(cam.focus_distances):
        h = cam.slice_homography(k)
        m = thin_lens_image_distance_m(s, cam.focal_length_mm) / (cam.focal_length_mm * 1e-3)
        assert h[0, 0] == pytest.approx(m) and h[1, 1] == pytest.approx(m)
        centre = h @ np.array([(cam.width - 1) / 2, (cam.height - 1) / 2, 1.0])
        np.testing.assert_allclose(centre[:2] / centre[2], [(cam.width - 1) / 2, (cam.height - 1) / 2], atol=1e-9)
    # nearer focus magnifies more
    assert cam.slice_homography(0)[0, 0] > cam.slice_homography(len(cam.focus_distances) - 1)[0, 0] > 1.0


def test_homography_matches_projection_of_points_on_the_focus_plane():
    desc = scene()
    cam = desc.camera
    k_ref = cam.intrinsics()
    for k, s in enumerate(cam.focus_distances):
        # points on the plane at depth s, seen from the reference camera at pixel (u, v)
        uv = np.array([[3.0, 5.0], [60.0, 10.0], [31.5, 31.5], [8.0, 57.0]])
        rays = np.linalg.inv(k_ref) @ np.c_[uv, np.ones(4)].T  # OpenCV axes, z = 1
        points_cv = (rays * s).T
        points_blender = points_cv * np.array([1.0, -1.0, -1.0])
        expected = project(desc, k, points_blender)
        mapped = (cam.slice_homography(k) @ np.c_[uv, np.ones(4)].T).T
        np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:], expected, atol=1e-6)


def test_slice_geometry_shapes_and_identity_without_effects():
    h, pose, lens = scene(effects=EffectsConfig()).camera.slice_geometry()
    assert h.shape == (5, 3, 3) and pose.shape == (5, 4, 4) and lens.shape == (5,)
    np.testing.assert_allclose(h, np.eye(3)[None].repeat(5, 0), atol=1e-6)
    np.testing.assert_allclose(lens, 2.9)


def test_sensor_noise_is_poisson_gaussian():
    rng = np.random.default_rng(0)
    flat = np.full((200, 200, 3), 0.25, np.float32)
    noisy = add_sensor_noise(flat, full_well=400.0, read_noise=0.01, rng=rng)
    assert noisy.mean() == pytest.approx(0.25, abs=2e-3)
    assert noisy.var() == pytest.approx(0.25 / 400.0 + 0.01**2, rel=0.05)
    clean = add_sensor_noise(flat, 0.0, 0.0, rng)
    np.testing.assert_array_equal(clean, flat)


def test_jpeg_roundtrip_is_lossy_but_close():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3)).astype(np.uint8), (0, 0), 2)
    out = jpeg_roundtrip(img, 50)
    assert out.shape == img.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - img.astype(int))
    assert 0 < diff.mean() < 8


@pytest.mark.blender
def test_slices_warped_back_by_stored_geometry_match_the_unshaken_render(tmp_path):
    from focalstack.render.blender import BlenderRenderer
    from focalstack.render.config import RenderConfig, RenderSettings
    from focalstack.render.pipeline import make_record

    shaky = scene(width=64, effects=EffectsConfig(focus_breathing=True, shake_rotation_deg=1.0))
    steady = scene(width=64, effects=EffectsConfig())
    config = RenderConfig(preset="test", defocus_model="thin_lens", render=RenderSettings(samples=8, denoise=True))
    with BlenderRenderer(samples=8, denoise=True) as renderer:
        moved = make_record(shaky, renderer.render(shaky), config)
        still = make_record(steady, renderer.render(steady), config)
    np.testing.assert_array_equal(moved.depth, still.depth)  # ground truth stays in the reference view
    np.testing.assert_array_equal(moved.aif, still.aif)
    inner = (slice(8, -8), slice(8, -8))
    warped_total = unwarped_total = 0.0
    for k in range(1, 5):
        h = moved.slice_homography[k].astype(np.float64)
        back = cv2.warpPerspective(moved.stack[k], h, (64, 64), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        ref = still.stack[k].astype(float)
        err_unwarped = np.mean((moved.stack[k][inner].astype(float) - ref[inner]) ** 2)
        err_warped = np.mean((back[inner].astype(float) - ref[inner]) ** 2)
        assert err_warped < err_unwarped, (k, err_warped, err_unwarped)
        warped_total += err_warped
        unwarped_total += err_unwarped
    # Left over after the warp: interpolation and render noise, a small part of the motion's error.
    assert warped_total < 0.2 * unwarped_total
    assert not math.isclose(float(moved.slice_focal_length_mm[0]), 2.9)
