"""Real-capture effects: focus breathing, camera shake between slices, sensor noise and JPEG.

Phones capture "dynamic" focal stacks: the image magnifies slightly as focus changes (breathing), the
hand moves between frames (shake), and the sensor adds noise. Each effect is optional, drawn per scene
from the scene's seed (its own random stream, so switching effects on never changes the scene itself),
and recorded in the scene description (``extras["effects"]``) so the scene renders again identically.

Ground truth (AiF, depth, defocus, edges) stays in the reference view: the nominal camera with focal
length f, unshaken. Each slice's geometry relative to it is stored as a pose, a lens and a homography.

Pixel coordinates here follow OpenCV: (0, 0) is the centre of the top-left pixel, u right, v down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from focalstack.dataset.optics import thin_lens_image_distance_m

from .scene import SceneDescription

EFFECTS_STREAM = 0x5EFFEC7  # mixed into the scene seed: effects draw from their own stream
NOISE_STREAM = 0x2015E


@dataclass(frozen=True)
class EffectsConfig:
    """The preset's ``[effects]`` table. All off by default."""

    focus_breathing: bool = False
    shake_rotation_deg: float = 0.0  # standard deviation per axis, degrees
    shake_translation_mm: float = 0.0  # standard deviation per axis, millimetres
    noise_full_well: float = 0.0  # photo-electrons at linear value 1.0 (Poisson); 0 = no shot noise
    read_noise: float = 0.0  # Gaussian read noise, standard deviation in linear units
    jpeg_quality: int = 0  # 1..100 compresses each slice; 0 = off

    @classmethod
    def from_dict(cls, table: dict) -> "EffectsConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(table) - known
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}; expected some of {', '.join(sorted(known))}")
        cfg = cls(**table)
        if not isinstance(cfg.focus_breathing, bool):
            raise ValueError(f"focus_breathing = {cfg.focus_breathing!r}: expected true or false")
        for name in ("shake_rotation_deg", "shake_translation_mm", "noise_full_well", "read_noise"):
            value = getattr(cfg, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                raise ValueError(f"{name} = {value!r}: expected a number >= 0")
        q = cfg.jpeg_quality
        if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q <= 100:
            raise ValueError(f"jpeg_quality = {q!r}: expected an integer from 1 to 100, or 0 for off")
        return cfg

    @property
    def any(self) -> bool:
        return self != EffectsConfig()


def draw_effects(desc: SceneDescription, effects: EffectsConfig) -> dict:
    """Per-scene effect parameters, drawn from the scene seed's effects stream (JSON-able)."""
    rng = np.random.default_rng(np.random.SeedSequence([desc.seed, EFFECTS_STREAM]))
    n = len(desc.camera.focus_distances)
    rotation = np.radians(rng.normal(0.0, effects.shake_rotation_deg, size=(n, 3)))
    translation = rng.normal(0.0, effects.shake_translation_mm * 1e-3, size=(n, 3))
    # The first slice defines the reference pose: shake is motion between frames.
    rotation[0] = 0.0
    translation[0] = 0.0
    return {
        "focus_breathing": effects.focus_breathing,
        "slice_rotation": rotation.tolist(),
        "slice_translation": translation.tolist(),
        "noise_full_well": float(effects.noise_full_well),
        "read_noise": float(effects.read_noise),
        "jpeg_quality": int(effects.jpeg_quality),
    }


def with_effects(desc: SceneDescription, effects: EffectsConfig) -> SceneDescription:
    """``desc`` with ``extras['effects']`` filled in (unchanged when every effect is off)."""
    if effects.any:
        desc.extras["effects"] = draw_effects(desc, effects)
    return desc


def scene_effects(desc: SceneDescription) -> dict | None:
    return desc.extras.get("effects")


# -- slice geometry --------------------------------------------------------------------------------
def slice_lens_mm(desc: SceneDescription, k: int) -> float:
    """Focal length Blender uses for slice k: the image distance v(s_k) when the lens breathes."""
    cam = desc.camera
    effects = scene_effects(desc) or {}
    if effects.get("focus_breathing"):
        return thin_lens_image_distance_m(float(cam.focus_distances[k]), cam.focal_length_mm) * 1e3
    return cam.focal_length_mm


def euler_xyz_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    """Blender's XYZ Euler rotation matrix (R = Rz @ Ry @ Rx)."""
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


def slice_pose(desc: SceneDescription, k: int) -> np.ndarray:
    """4x4 pose of slice k's camera in the reference camera's frame (Blender axes: -Z forward, +Y up)."""
    pose = np.eye(4)
    effects = scene_effects(desc)
    if effects:
        pose[:3, :3] = euler_xyz_matrix(*effects["slice_rotation"][k])
        pose[:3, 3] = effects["slice_translation"][k]
    return pose


def intrinsics(focal_length_mm: float, sensor_width_mm: float, width: int, height: int) -> np.ndarray:
    f_px = focal_length_mm / sensor_width_mm * width
    return np.array([[f_px, 0.0, (width - 1) / 2.0], [0.0, f_px, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


# Blender camera axes (x right, y up, z backward) -> OpenCV camera axes (x right, y down, z forward).
_BLENDER_TO_CV = np.diag([1.0, -1.0, -1.0])


def slice_homography(desc: SceneDescription, k: int) -> np.ndarray:
    """3x3 map from reference pixel coordinates to slice k's pixel coordinates.

    Exact for breathing and rotation; for translation it is the homography of the plane at the slice's
    focus distance (parallax off that plane is not captured; the pose is stored for exact warps).
    """
    cam = desc.camera
    k_ref = intrinsics(cam.focal_length_mm, cam.sensor_width_mm, cam.width, cam.height)
    k_slice = intrinsics(slice_lens_mm(desc, k), cam.sensor_width_mm, cam.width, cam.height)
    pose = slice_pose(desc, k)
    # A reference-frame point X (CV axes) in the slice camera: X_k = R' X + t'.
    r_cv = _BLENDER_TO_CV @ pose[:3, :3].T @ _BLENDER_TO_CV
    t_cv = -r_cv @ (_BLENDER_TO_CV @ pose[:3, 3])
    normal = np.array([0.0, 0.0, 1.0])  # the plane z = d in front of the reference camera
    d = float(cam.focus_distances[k])
    h = k_slice @ (r_cv + np.outer(t_cv, normal) / d) @ np.linalg.inv(k_ref)
    return h / h[2, 2]


def slice_geometry(desc: SceneDescription) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(homographies (S,3,3), poses (S,4,4), lenses mm (S,)) as float32, for storage."""
    n = len(desc.camera.focus_distances)
    return (
        np.stack([slice_homography(desc, k) for k in range(n)]).astype(np.float32),
        np.stack([slice_pose(desc, k) for k in range(n)]).astype(np.float32),
        np.array([slice_lens_mm(desc, k) for k in range(n)], dtype=np.float32),
    )


# -- sensor ---------------------------------------------------------------------------------------
def add_sensor_noise(linear: np.ndarray, full_well: float, read_noise: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson-Gaussian noise on linear values in [0, 1]: shot noise with ``full_well`` electrons at 1.0,
    plus Gaussian read noise; clipped to [0, 1]."""
    x = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    if full_well > 0:
        x = rng.poisson(x * full_well) / full_well
    if read_noise > 0:
        x = x + rng.normal(0.0, read_noise, size=x.shape)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def noise_rng(desc: SceneDescription, k: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([desc.seed, NOISE_STREAM, k]))


def jpeg_roundtrip(srgb8: np.ndarray, quality: int) -> np.ndarray:
    """Compress an RGB uint8 image as JPEG at ``quality`` and decode it again."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(srgb8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
