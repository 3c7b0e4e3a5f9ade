"""Real-capture effects: focus breathing, camera shake between slices, sensor noise and JPEG.

Phones capture "dynamic" focal stacks: the image magnifies slightly as focus changes (breathing), the
hand moves between frames (shake), and the sensor adds noise. Each effect is optional, drawn per scene
from the scene's seed (its own random stream, so switching effects on never changes the scene itself),
and written into the scene description: each slice's lens and pose (``SliceSpec``) and the sensor's noise
and JPEG (``CaptureSpec``), so the scene renders again identically from its description alone.

Ground truth (AiF, depth, defocus, edges) stays in the reference view: the nominal camera with focal
length f, unshaken. Each slice's geometry relative to it is stored as a pose, a lens and a homography
(``CameraSpec.slice_geometry``).

Pixel coordinates here follow OpenCV: (0, 0) is the centre of the top-left pixel, u right, v down.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields

import numpy as np

from focalstack.dataset.capture import MAX_FULL_WELL, add_sensor_noise, jpeg_roundtrip
from focalstack.dataset.colour import linear_to_srgb8
from focalstack.dataset.numbers import is_finite_number
from focalstack.dataset.optics import thin_lens_image_distance_m

from .scene import CaptureSpec, SceneDescription

EFFECTS_STREAM = 0x5EFFEC7  # mixed into the scene seed: effects draw from their own stream
NOISE_STREAM = 0x2015E


@dataclass(frozen=True)
class EffectsConfig:
    """The preset's ``[effects]`` table (flat: the sensor's keys are CaptureSpec's). All off by default."""

    focus_breathing: bool = False
    shake_rotation_deg: float = 0.0  # standard deviation per axis, degrees
    shake_translation_mm: float = 0.0  # standard deviation per axis, millimetres
    capture: CaptureSpec = field(default_factory=CaptureSpec)  # sensor noise and JPEG, as each scene stores them

    @classmethod
    def from_dict(cls, table: dict) -> "EffectsConfig":
        sensor_keys = {f.name for f in fields(CaptureSpec)}
        known = (set(cls.__dataclass_fields__) - {"capture"}) | sensor_keys
        unknown = set(table) - known
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}; expected some of {', '.join(sorted(known))}")
        sensor = CaptureSpec(**{k: v for k, v in table.items() if k in sensor_keys})
        cfg = cls(**{k: v for k, v in table.items() if k not in sensor_keys}, capture=sensor)
        if not isinstance(cfg.focus_breathing, bool):
            raise ValueError(f"focus_breathing = {cfg.focus_breathing!r}: expected true or false")
        for name, value in (
            ("shake_rotation_deg", cfg.shake_rotation_deg),
            ("shake_translation_mm", cfg.shake_translation_mm),
            ("noise_full_well", sensor.noise_full_well),
            ("read_noise", sensor.read_noise),
        ):
            if not is_finite_number(value) or value < 0:
                raise ValueError(f"{name} = {value!r}: expected a number >= 0")
        if sensor.noise_full_well > MAX_FULL_WELL:
            raise ValueError(
                f"noise_full_well = {sensor.noise_full_well:g}: expected at most {MAX_FULL_WELL:g} electrons "
                "(a camera's is about 1e3 to 1e5)"
            )
        q = sensor.jpeg_quality
        if isinstance(q, bool) or not isinstance(q, int) or not 0 <= q <= 100:
            raise ValueError(f"jpeg_quality = {q!r}: expected an integer from 1 to 100, or 0 for off")
        return cfg

    @property
    def any(self) -> bool:
        return self != EffectsConfig()


def with_effects(desc: SceneDescription, effects: EffectsConfig) -> SceneDescription:
    """A copy of ``desc`` with the effects drawn for it: each slice's lens (breathing) and pose (shake),
    and the sensor's noise and JPEG. Drawn from the scene seed's own effects stream; ``desc`` itself is
    left alone, and returned as it is when every effect is off."""
    if not effects.any:
        return desc
    desc = copy.deepcopy(desc)
    cam = desc.camera
    rng = np.random.default_rng(np.random.SeedSequence([desc.seed, EFFECTS_STREAM]))
    n = len(cam.slices)
    rotation = np.radians(rng.normal(0.0, effects.shake_rotation_deg, size=(n, 3)))
    translation = rng.normal(0.0, effects.shake_translation_mm * 1e-3, size=(n, 3))
    # The first slice defines the reference pose: shake is motion between frames.
    rotation[0] = 0.0
    translation[0] = 0.0
    for k, sl in enumerate(cam.slices):
        if effects.focus_breathing:  # a real lens moves to its image distance v(s) to focus at s
            sl.lens_mm = thin_lens_image_distance_m(sl.focus_distance, cam.focal_length_mm) * 1e3
        sl.rotation = [float(x) for x in rotation[k]]
        sl.translation = [float(x) for x in translation[k]]
    sensor = effects.capture
    desc.capture = CaptureSpec(float(sensor.noise_full_well), float(sensor.read_noise), int(sensor.jpeg_quality))
    return desc


# -- sensor ---------------------------------------------------------------------------------------
def noise_rng(desc: SceneDescription, k: int) -> np.random.Generator:
    """Slice k's own noise stream, from the scene seed: the same scene gets the same noise."""
    return np.random.default_rng(np.random.SeedSequence([desc.seed, NOISE_STREAM, k]))


def capture_slices(desc: SceneDescription, slices_linear: np.ndarray) -> np.ndarray:
    """Linear renders -> stored 8-bit sRGB slices, through the scene's sensor noise and JPEG, if any."""
    cap = desc.capture
    out = []
    for k, linear in enumerate(slices_linear):
        if cap.noise_full_well or cap.read_noise:
            linear = add_sensor_noise(linear, cap.noise_full_well, cap.read_noise, noise_rng(desc, k))
        srgb8 = linear_to_srgb8(linear)
        if cap.jpeg_quality:
            srgb8 = jpeg_roundtrip(srgb8, cap.jpeg_quality)
        out.append(srgb8)
    return np.stack(out)
