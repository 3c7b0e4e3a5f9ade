"""Scenes whose answer is known, for testing the renderer against physics."""

from __future__ import annotations

import sys

import h5py
import numpy as np

from focalstack.dataset.colour import srgb_to_linear
from focalstack.render.scene import CameraSpec, MaterialSpec, ObjectSpec, SceneDescription, ShapeSpec, TextureLayer, WorldSpec

UNIFORM_WHITE_WORLD = WorldSpec("gradient", [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], 1.0)


def frustum_half_width(depth_m: float, cam: CameraSpec) -> float:
    return depth_m * cam.sensor_width_mm / (2.0 * cam.focal_length_mm)


def fronto_plane(name: str, depth_m: float, x0: float, x1: float, y0: float, y1: float, material: MaterialSpec) -> ObjectSpec:
    """A camera-facing rectangle [x0, x1] x [y0, y1] at planar depth ``depth_m`` (camera looks down -Z)."""
    return ObjectSpec(
        name=name,
        shape=ShapeSpec("plane"),
        location=[(x0 + x1) / 2.0, (y0 + y1) / 2.0, -depth_m],
        rotation=[0.0, 0.0, 0.0],
        scale=[(x1 - x0) / 2.0, (y1 - y0) / 2.0, 1.0],
        material=material,
        role="background",
        smooth=False,
    )


def matte(grey: float) -> MaterialSpec:
    return MaterialSpec(base_color=[grey] * 3, roughness=1.0, metallic=0.0, specular=0.0)


def edge_scene(depth_m: float, cam: CameraSpec, seed: int = 1) -> SceneDescription:
    """Black left half, white right half, one plane at ``depth_m`` filling the view: a vertical edge at x=0."""
    h = 1.5 * frustum_half_width(depth_m, cam)
    objects = [
        fronto_plane("black", depth_m, -h, 0.0, -h, h, matte(0.0)),
        fronto_plane("white", depth_m, 0.0, h, -h, h, matte(0.8)),
    ]
    return SceneDescription(seed, "test-edge", cam, objects, [], UNIFORM_WHITE_WORLD)


def strips_scene(depths_m: list[float], cam: CameraSpec, seed: int = 1) -> SceneDescription:
    """Vertical textured strips side by side, strip k at depth depths_m[k], covering the whole view."""
    n = len(depths_m)
    objects = []
    for k, z in enumerate(depths_m):
        h = 1.5 * frustum_half_width(z, cam)
        x0 = -frustum_half_width(z, cam) + 2 * frustum_half_width(z, cam) * k / n
        x1 = -frustum_half_width(z, cam) + 2 * frustum_half_width(z, cam) * (k + 1) / n
        x0 = -h if k == 0 else x0
        x1 = h if k == n - 1 else x1
        # About 4 px per checker cell at this depth: plenty of high frequencies to blur.
        texture = TextureLayer("checker", scale=cam.width / (8.0 * frustum_half_width(z, cam)),
                               color_a=[0.05] * 3, color_b=[0.8] * 3)
        material = MaterialSpec([0.5] * 3, 1.0, 0.0, 0.0, textures=[texture])
        objects.append(fronto_plane(f"strip{k}", z, x0, x1, -h, h, material))
    return SceneDescription(seed, "test-strips", cam, objects, [], UNIFORM_WHITE_WORLD)


def disk_edge_width(diameter_px: float, supersample: int = 64) -> float:
    """10-90 % width in pixels of an edge blurred by a uniform disk of the given diameter and then
    integrated over a 1-pixel box (Cycles' box pixel filter)."""
    r = abs(diameter_px) / 2.0
    n = int(np.ceil(r + 4)) * supersample
    x = (np.arange(-n, n) + 0.5) / supersample
    if r * supersample < 1:
        lsf = np.zeros_like(x)
        lsf[n] = 1.0
    else:
        lsf = 2.0 * np.sqrt(np.clip(r * r - x * x, 0.0, None))  # chord length: the disk's line spread
    lsf = np.convolve(lsf, np.ones(supersample), mode="same")
    esf = np.cumsum(lsf)
    esf /= esf[-1]
    return float(np.interp(0.9, esf, x) - np.interp(0.1, esf, x))


def measured_edge_width(image_srgb8: np.ndarray, margin: int) -> float:
    """10-90 % width in pixels of the vertical edge at the image centre, in linear light."""
    lin = srgb_to_linear(image_srgb8.astype(np.float64) / 255.0).mean(axis=2)
    h, w = lin.shape
    profile = lin[h // 4 : 3 * h // 4].mean(axis=0)
    lo = profile[: w // 2 - margin].mean()
    hi = profile[w // 2 + margin :].mean()
    p = (profile - lo) / (hi - lo)
    xs = np.arange(w) + 0.5
    window = slice(w // 2 - margin, w // 2 + margin)
    p, xs = np.maximum.accumulate(p[window]), xs[window]  # monotone for interpolation despite noise
    return float(np.interp(0.9, p, xs) - np.interp(0.1, p, xs))


def sharpness(image_srgb8: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared gradient inside ``mask``: higher is sharper."""
    grey = image_srgb8.astype(np.float64).mean(axis=2)
    gy, gx = np.gradient(grey)
    return float(((gx**2 + gy**2)[mask]).mean())


# A preset whose scenes use every per-scene dataset beyond the required ones: focus breathing and camera
# shake fill the slice geometry, random stack sizes fill stack_size.
EFFECTS_PRESET = """
name = "effects-test"
[camera]
resolution = 32
defocus_model = "thin_lens"
[render]
samples = 2
denoise = false
[scene]
objects = [2, 4]
stack_size = [2, 4]
[effects]
focus_breathing = true
shake_rotation_deg = 0.3
shake_translation_mm = 1.0
"""



def render_command(preset, out, scenes: int, *args: str) -> list[str]:
    """focalstack-render with EFFECTS_PRESET-style settings, seed 5."""
    return [sys.executable, "-m", "focalstack.render", "--preset", str(preset), "--scenes", str(scenes),
            "--seed", "5", "--out", str(out), *args]


def assert_files_equal(a_path, b_path):
    """Every schema dataset the files store equal; colour to one 8-bit level (Cycles differs by ~1e-6
    across processes)."""
    from focalstack.dataset import schema

    with h5py.File(a_path) as a, h5py.File(b_path) as b:
        stored = [spec.name for spec in schema.WRITTEN_ARRAYS if spec.name in a]
        assert set(stored) == {n for n in b if n in schema.SPECS} and "stack" in stored and "depth" in stored
        for name in stored:
            x, y = a[name][:], b[name][:]
            assert x.shape == y.shape, name
            if name == "edges":  # Canny on colours one level apart may move an edge pixel
                assert np.mean(x != y) < 0.02, name
            elif name in ("stack", "aif"):
                assert np.abs(x.astype(int) - y.astype(int)).max() <= 1, name
            else:
                np.testing.assert_array_equal(x, y, err_msg=name)
