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
        texture = TextureLayer(
            "checker", scale=cam.width / (8.0 * frustum_half_width(z, cam)), color_a=[0.05] * 3, color_b=[0.8] * 3
        )
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
    return [
        sys.executable,
        "-m",
        "focalstack.render",
        "--preset",
        str(preset),
        "--scenes",
        str(scenes),
        "--seed",
        "5",
        "--out",
        str(out),
        *args,
    ]


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


def textured_plane_scene(depth_m: float, cam: CameraSpec, seed: int = 1) -> SceneDescription:
    """One camera-facing plane at ``depth_m`` filling the view, with a fine noise texture (features of 1-3
    pixels at 64 px): content whose sub-pixel blur shows."""
    h = 1.5 * frustum_half_width(depth_m, cam)
    texture = TextureLayer(
        "noise",
        scale=cam.width / (6.0 * frustum_half_width(depth_m, cam)),
        color_a=[0.05] * 3,
        color_b=[0.8] * 3,
        params={"detail": 2.0},
    )
    material = MaterialSpec([0.5] * 3, 1.0, 0.0, 0.0, textures=[texture])
    return SceneDescription(
        seed, "test-textured-plane", cam, [fronto_plane("plane", depth_m, -h, h, -h, h, material)], [], UNIFORM_WHITE_WORLD
    )


def supersampled_disk(diameter_px: float, supersample: int = 16) -> np.ndarray:
    """A disk of the given diameter as pixel weights: the area of the disk in each pixel, normalised."""
    r = diameter_px / 2.0
    n = int(np.ceil(r)) + 1
    size = 2 * n + 1
    ys, xs = (np.mgrid[0 : size * supersample, 0 : size * supersample] + 0.5) / supersample - size / 2.0
    if r * supersample < 1:
        k = np.zeros((size, size))
        k[n, n] = 1.0
        return k
    k = (xs**2 + ys**2 <= r * r).astype(np.float64).reshape(size, supersample, size, supersample).sum(axis=(1, 3))
    return k / k.sum()


def fit_disk_blur(
    aif_fine_linear: np.ndarray, image_srgb8: np.ndarray, up: int, margin: int = 6, step: float = 0.01, largest: float = 2.0
) -> float:
    """The disk diameter (pixels of ``image_srgb8``) that best explains it as the all-in-focus image blurred:
    ``aif_fine_linear`` is the same view rendered ``up`` times finer (grey, linear light), blurred by the disk
    at that scale and box-averaged down, so that the model is the thin lens's box-filtered disk to 1/up pixel
    (a model made from the coarse all-in-focus image alone cannot express blur below a pixel)."""
    import cv2

    target = srgb_to_linear(image_srgb8.astype(np.float64) / 255.0).mean(axis=2)
    h, w = target.shape
    inner = (slice(margin, h - margin), slice(margin, w - margin))
    errors = []
    diameters = np.arange(0.0, largest + step / 2, step)
    for d in diameters:
        blurred = cv2.filter2D(aif_fine_linear, -1, supersampled_disk(up * d), borderType=cv2.BORDER_REFLECT)
        model = blurred.reshape(h, up, w, up).mean(axis=(1, 3))
        errors.append(float(((model - target)[inner] ** 2).mean()))
    return float(diameters[int(np.argmin(errors))])


def light_field_settings() -> dict[str, dict]:
    """The light-field render settings to hold to the physics: ``--light-field``'s (RENDER_SETTINGS_LIGHT_FIELD)
    and each distinct one a bundled preset renders with by default, named by their presets."""
    from focalstack.render.config import RENDER_SETTINGS_LIGHT_FIELD, builtin_presets, load_preset

    out = {"light field": RENDER_SETTINGS_LIGHT_FIELD.to_dict()}
    for name in builtin_presets():
        settings = load_preset(name).render.to_dict()
        if settings["slices"] == "light_field" and settings not in out.values():
            out[f"light field ({name}: {settings['light_field_views']} views)"] = settings
    return out


def failing_task(args):
    """A stand-in for a --workers task (``shards.run_workers(task=...)``): the range from 0 fails after a
    second; any other renders for 30 s, then leaves a file beside the output saying it finished."""
    import time
    from pathlib import Path

    from focalstack.render.pipeline import RenderError

    _, out, start, _, _, _ = args
    time.sleep(1)
    if start == 0:
        raise RenderError(f"scene {start}: the test's failure")
    time.sleep(30)
    Path(out).with_suffix(".finished").write_text("the other worker finished its range")
    return 0


def gpu_task(args):
    """A stand-in for a --workers task that notes which GPU its process sees, beside the output."""
    import os
    import time
    from pathlib import Path

    _, out, start, _, _, _ = args
    time.sleep(1)  # long enough that each worker takes a task
    Path(f"{out}.{start}.gpu").write_text(
        f"{os.getpid()} {os.environ.get('CUDA_VISIBLE_DEVICES')} {os.environ.get('HIP_VISIBLE_DEVICES')}"
    )
    return 0


def sleepy_task(args):
    """A stand-in for a --workers task that renders for a minute."""
    import time

    time.sleep(60)
    return 0
