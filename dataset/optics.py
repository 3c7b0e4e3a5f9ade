"""Thin-lens optics: blur-circle diameters in pixels, and lens settings that emulate a true thin lens.

All lengths in metres except the focal length and sensor width, which are in millimetres as Blender
takes them (horizontal sensor fit). Pure functions; numpy arrays or floats in, same out.

Two defocus models:

- ``cycles``: Cycles' camera shoots rays from a disk aperture of diameter A = f/N through a planar focal
  surface at distance s. A point at planar depth z blurs to  c = f_px * A * (z - s) / (z * s).
- ``thin_lens``: the textbook lens focused at s, c = f_px * A * (z - s) / (z * (s - f)). Cycles renders it
  with the lens at f and ``aperture_fstop = N (s - f) / s``, or, breathing as a real lens does, with
  ``lens = v = s f / (s - f)`` and ``aperture_fstop = N v / f`` (``cycles_aperture_fstop``).

Both are signed: positive behind the focal plane (z > s), negative in front.
"""

from __future__ import annotations

import numpy as np

DEFOCUS_MODELS = ("cycles", "thin_lens")


def focal_length_px(focal_length_mm: float, sensor_width_mm: float, width_px: int) -> float:
    """Focal length in pixels for a horizontal sensor fit."""
    return float(focal_length_mm) / float(sensor_width_mm) * float(width_px)


def frustum_tangents(focal_length_mm: float, sensor_width_mm: float, width_px: int, height_px: int) -> tuple[float, float]:
    """(tx, ty): half-width and half-height of the view at planar depth 1 m (horizontal sensor fit)."""
    tx = float(sensor_width_mm) / (2.0 * float(focal_length_mm))
    return tx, tx * float(height_px) / float(width_px)


def intrinsics(focal_length_mm: float, sensor_width_mm: float, width_px: int, height_px: int) -> np.ndarray:
    """3x3 pinhole camera matrix in OpenCV's pixel convention ((0, 0) is the centre of the top-left pixel)."""
    f_px = focal_length_px(focal_length_mm, sensor_width_mm, width_px)
    return np.array([[f_px, 0.0, (width_px - 1) / 2.0], [0.0, f_px, (height_px - 1) / 2.0], [0.0, 0.0, 1.0]])


def beyond_focal_length(focus_distance_m, focal_length_mm):
    """True where a lens of focal length f can focus at distance s: s finite and beyond f (arrays
    broadcast; a lens cannot focus nearer than f: the image distance would be infinite or negative)."""
    s = np.asarray(focus_distance_m, dtype=np.float64)
    ok = np.isfinite(s) & (s > np.asarray(focal_length_mm, dtype=np.float64) * 1e-3)
    return ok if ok.ndim else bool(ok)


def check_focus_distance(focus_distance_m: float, focal_length_mm: float) -> float:
    """``focus_distance_m`` as a float; ValueError unless it is finite and beyond the focal length
    (a lens cannot focus nearer than f: the image distance would be infinite or negative)."""
    f_m = float(focal_length_mm) * 1e-3
    s = float(focus_distance_m)
    if not beyond_focal_length(s, focal_length_mm):
        raise ValueError(
            f"focus distance {focus_distance_m!r} m: must be a finite distance beyond the focal length "
            f"({f_m:g} m = {focal_length_mm:g} mm)"
        )
    return s


def aperture_diameter_m(focal_length_mm: float, f_number: float) -> float:
    """Entrance-pupil diameter A = f / N, in metres."""
    return float(focal_length_mm) * 1e-3 / float(f_number)


def blur_diameter_px(
    depth_m,
    focus_distance_m: float,
    f_number: float,
    focal_length_mm: float,
    sensor_width_mm: float,
    width_px: int,
    model: str = "cycles",
):
    """Signed blur-circle diameter in pixels of points at planar depth ``depth_m``.

    Positive behind the focal plane, negative in front; 0 at ``depth_m == focus_distance_m``.
    """
    if model not in DEFOCUS_MODELS:
        raise ValueError(f"defocus model {model!r}: expected one of {', '.join(DEFOCUS_MODELS)}")
    check_focus_distance(focus_distance_m, focal_length_mm)
    f_m = focal_length_mm * 1e-3
    z = np.asarray(depth_m, dtype=np.float64)
    f_px = focal_length_px(focal_length_mm, sensor_width_mm, width_px)
    a = aperture_diameter_m(focal_length_mm, f_number)
    denom_s = focus_distance_m if model == "cycles" else focus_distance_m - f_m
    c = f_px * a * (z - focus_distance_m) / (z * denom_s)
    return c if c.ndim else float(c)


def defocus_maps(
    depth_m: np.ndarray,
    focus_distances_m,
    f_number: float,
    focal_length_mm: float,
    sensor_width_mm: float,
    model: str = "cycles",
) -> np.ndarray:
    """Per-slice signed defocus maps, float32 (S, H, W), for a depth map (H, W) in metres.

    Each slice is ``blur_diameter_px`` of the depth map, computed with the same operations in the same
    order (so bit for bit the same values), into reused buffers: readers recompute stored files' maps
    with it, and it must be as fast as reading them.
    """
    if model not in DEFOCUS_MODELS:
        raise ValueError(f"defocus model {model!r}: expected one of {', '.join(DEFOCUS_MODELS)}")
    z = np.asarray(depth_m, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"depth map: expected shape (H, W), got {z.shape}")
    focus = [check_focus_distance(s, focal_length_mm) for s in focus_distances_m]
    f_m = focal_length_mm * 1e-3
    scale = focal_length_px(focal_length_mm, sensor_width_mm, z.shape[1]) * aperture_diameter_m(focal_length_mm, f_number)
    out = np.empty((len(focus), *z.shape), dtype=np.float32)
    num, den = np.empty_like(z), np.empty_like(z)
    for k, s in enumerate(focus):
        denom_s = s if model == "cycles" else s - f_m
        # c = f_px * a * (z - s) / (z * denom_s), evaluated as in blur_diameter_px
        np.subtract(z, s, out=num)
        np.multiply(scale, num, out=num)
        np.multiply(z, denom_s, out=den)
        np.divide(num, den, out=num)
        out[k] = num
    return out


def thin_lens_image_distance_m(focus_distance_m: float, focal_length_mm: float) -> float:
    """Image distance v = s f / (s - f) of the textbook thin lens focused at s."""
    check_focus_distance(focus_distance_m, focal_length_mm)
    f_m = focal_length_mm * 1e-3
    return focus_distance_m * f_m / (focus_distance_m - f_m)


def cycles_aperture_fstop(model: str, focus_distance_m: float, f_number: float, focal_length_mm: float, lens_mm: float) -> float:
    """The ``aperture_fstop`` that makes Cycles blur by ``model`` when it renders with lens ``lens_mm``.

    Cycles blurs by f_px(lens) * (lens / fstop) * (z - s) / (z s) on a sensor of fixed pixel pitch; the
    model says f_px(f) * (f / N) * (z - s) / (z d) with d = s (``cycles``) or s - f (``thin_lens``). Equal
    when fstop = N (lens / f)^2 (d / s): N for Cycles' own model, N (s - f) / s for the thin lens with the
    lens kept at f, and N v / f for the thin lens rendered with its image distance v (focus breathing).
    """
    if model not in DEFOCUS_MODELS:
        raise ValueError(f"defocus model {model!r}: expected one of {', '.join(DEFOCUS_MODELS)}")
    s = check_focus_distance(focus_distance_m, focal_length_mm)
    d = s if model == "cycles" else s - float(focal_length_mm) * 1e-3
    return float(f_number) * (float(lens_mm) / float(focal_length_mm)) ** 2 * (d / s)
