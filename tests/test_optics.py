"""Thin-lens optics against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from focalstack.dataset import optics

F_MM, SENSOR_MM, WIDTH = 2.9, 3.1, 256  # the FoD500 reference camera


def test_focal_length_px_and_aperture():
    assert optics.focal_length_px(F_MM, SENSOR_MM, WIDTH) == pytest.approx(2.9 / 3.1 * 256)  # 239.48 px
    assert optics.focal_length_px(50, 36, 1920) == pytest.approx(2666.6667, rel=1e-6)
    assert optics.aperture_diameter_m(F_MM, 1.0) == pytest.approx(0.0029)
    assert optics.aperture_diameter_m(50, 2.0) == pytest.approx(0.025)


def test_cycles_blur_hand_computed():
    # f = 2.9 mm, sensor 3.1 mm, 256 px, f/1, focused at s = 0.1 m, point at z = 3 m
    want = (2.9 / 3.1 * 256) * 0.0029 * (3 - 0.1) / (3 * 0.1)
    assert want == pytest.approx(6.7135, abs=1e-4)
    got = optics.blur_diameter_px(3.0, 0.1, 1.0, F_MM, SENSOR_MM, WIDTH)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=1e-12)
    # f/2 halves the aperture and so the blur; 512 px doubles the focal length in pixels
    assert optics.blur_diameter_px(3.0, 0.1, 2.0, F_MM, SENSOR_MM, WIDTH) == pytest.approx(want / 2)
    assert optics.blur_diameter_px(3.0, 0.1, 1.0, F_MM, SENSOR_MM, 512) == pytest.approx(want * 2)


def test_cycles_blur_second_hand_value():
    # s = 0.7 m, z = 0.15 m (in front): c = 239.4839 * 0.0029 * (0.15 - 0.7) / (0.15 * 0.7)
    want = 239.48387096774192 * 0.0029 * (-0.55) / 0.105
    assert want == pytest.approx(-3.6378, abs=1e-4)
    assert optics.blur_diameter_px(0.15, 0.7, 1.0, F_MM, SENSOR_MM, WIDTH) == pytest.approx(want, rel=1e-12)


def test_sign_convention():
    s = 0.3
    behind = optics.blur_diameter_px(1.0, s, 1.0, F_MM, SENSOR_MM, WIDTH)
    front = optics.blur_diameter_px(0.2, s, 1.0, F_MM, SENSOR_MM, WIDTH)
    at = optics.blur_diameter_px(s, s, 1.0, F_MM, SENSOR_MM, WIDTH)
    assert behind > 0 > front
    assert at == 0.0
    # far behind, the blur tends to f_px * A / s; in front it grows without bound
    far = optics.blur_diameter_px(1e9, s, 1.0, F_MM, SENSOR_MM, WIDTH)
    assert far == pytest.approx(optics.focal_length_px(F_MM, SENSOR_MM, WIDTH) * 0.0029 / s, rel=1e-6)
    assert optics.blur_diameter_px(0.01, s, 1.0, F_MM, SENSOR_MM, WIDTH) < -far


@pytest.mark.parametrize("s", [0.1, 0.15, 0.3, 0.7, 1.5])
def test_thin_lens_over_cycles_is_s_over_s_minus_f(s):
    z = np.array([0.12, 0.5, 2.0, 3.0])
    cyc = optics.blur_diameter_px(z, s, 1.0, F_MM, SENSOR_MM, WIDTH, model="cycles")
    thin = optics.blur_diameter_px(z, s, 1.0, F_MM, SENSOR_MM, WIDTH, model="thin_lens")
    np.testing.assert_allclose(thin / cyc, s / (s - 0.0029), rtol=1e-12)
    if s == 0.1:
        assert s / (s - 0.0029) == pytest.approx(1.02987, abs=1e-5)  # "about 3% apart" (docs/design.md)


def test_defocus_maps_shape_dtype_and_values():
    depth = np.array([[0.1, 0.15], [0.3, 3.0]], dtype=np.float32)
    focus = [0.1, 0.3]
    maps = optics.defocus_maps(depth, focus, 1.0, F_MM, SENSOR_MM)
    assert maps.shape == (2, 2, 2) and maps.dtype == np.float32
    # in focus where depth == s (up to float32 rounding of the depth)
    assert maps[0, 0, 0] == pytest.approx(0, abs=1e-6) and maps[1, 1, 0] == pytest.approx(0, abs=1e-6)
    f_px = 2.9 / 3.1 * 2  # width 2 px
    assert maps[0, 1, 1] == pytest.approx(f_px * 0.0029 * 2.9 / 0.3, rel=1e-6)
    assert maps[1, 0, 0] == pytest.approx(f_px * 0.0029 * (0.1 - 0.3) / (0.1 * 0.3), rel=1e-6)
    with pytest.raises(ValueError, match="expected shape"):
        optics.defocus_maps(np.zeros(3), focus, 1.0, F_MM, SENSOR_MM)


def test_thin_lens_image_distance_value():
    # v = s f / (s - f) = 0.1 * 0.0029 / 0.0971 m = 2.98661 mm
    assert optics.thin_lens_image_distance_m(0.1, F_MM) == pytest.approx(2.986612e-3, abs=1e-9)


@pytest.mark.parametrize("model", optics.DEFOCUS_MODELS)
@pytest.mark.parametrize("breathing", [False, True])
def test_cycles_fstop_makes_cycles_blur_by_the_model(model, breathing):
    """Cycles blurs by its own formula with the lens and f-stop it is given (measured: docs/design.md); with
    the f-stop from cycles_aperture_fstop, at the slice's lens (the image distance v when breathing), that
    formula gives the model's blur. Cycles' blur is written out from docs/design.md, not from optics."""
    for s, n in ((0.1, 1.0), (0.15, 1.0), (0.7, 2.8)):
        lens_mm = optics.thin_lens_image_distance_m(s, F_MM) * 1e3 if breathing else F_MM
        fstop = optics.cycles_aperture_fstop(model, s, n, F_MM, lens_mm)
        z = np.array([0.12, 0.4, 2.5])
        # docs/design.md: Cycles' disk has diameter f_px * (lens / fstop) * |z - s| / (z s), f_px = lens / sensor * W
        cycles_blur = lens_mm / SENSOR_MM * WIDTH * (lens_mm * 1e-3 / fstop) * (z - s) / (z * s)
        wanted = optics.blur_diameter_px(z, s, n, F_MM, SENSOR_MM, WIDTH, model=model)
        np.testing.assert_allclose(cycles_blur, wanted, rtol=1e-12)
    # the familiar special cases
    assert optics.cycles_aperture_fstop("cycles", 0.3, 1.4, F_MM, F_MM) == 1.4
    v = optics.thin_lens_image_distance_m(0.3, F_MM) * 1e3
    assert optics.cycles_aperture_fstop("thin_lens", 0.3, 1.4, F_MM, v) == pytest.approx(1.4 * v / F_MM, rel=1e-12)
    assert optics.cycles_aperture_fstop("thin_lens", 0.3, 1.4, F_MM, F_MM) == pytest.approx(1.4 * (0.3 - 0.0029) / 0.3)


def test_non_finite_focus_is_refused():
    for s in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite distance beyond the focal length"):
            optics.check_focus_distance(s, F_MM)


@pytest.mark.parametrize("s", [0.0029, 0.001, 0.0])
def test_focus_inside_focal_length_is_refused(s):
    with pytest.raises(ValueError, match="beyond the focal length"):
        optics.blur_diameter_px(1.0, s, 1.0, F_MM, SENSOR_MM, WIDTH)
    with pytest.raises(ValueError, match="beyond the focal length"):
        optics.thin_lens_image_distance_m(s, F_MM)


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="defocus model 'pinhole'"):
        optics.blur_diameter_px(1.0, 0.3, 1.0, F_MM, SENSOR_MM, WIDTH, model="pinhole")
