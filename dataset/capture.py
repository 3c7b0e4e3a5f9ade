"""A camera's capture on an image: Poisson-Gaussian sensor noise on linear light, then 8-bit sRGB, then
JPEG. The renderer applies it to its linear slices (``focalstack.render.effects``); the trainer applies it
to stored 8-bit slices as an augmentation (``focalstack.train.augment``), so both mean the same numbers."""

from __future__ import annotations

import cv2
import numpy as np

from .colour import linear_to_srgb8, srgb_to_linear

# The largest full well (electrons at white) a capture takes: numpy's Poisson draw fails beyond about 9e18,
# and a camera's is about 1e3 to 1e5 (the trainer draws up to ten times the value it is given).
MAX_FULL_WELL = 1e12


def add_sensor_noise(linear: np.ndarray, full_well: float, read_noise: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson-Gaussian noise on linear values in [0, 1]: shot noise with ``full_well`` electrons at 1.0,
    plus Gaussian read noise; clipped to [0, 1]."""
    x = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    if full_well > 0:
        x = rng.poisson(x * full_well) / full_well
    if read_noise > 0:
        x = x + rng.normal(0.0, read_noise, size=x.shape)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def jpeg_roundtrip(srgb8: np.ndarray, quality: int) -> np.ndarray:
    """Compress an RGB uint8 image as JPEG at ``quality`` and decode it again."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(srgb8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def recapture_srgb8(
    srgb8: np.ndarray, full_well: float, read_noise: float, jpeg_quality: int, rng: np.random.Generator
) -> np.ndarray:
    """An 8-bit sRGB image (H, W, 3) as a camera with this sensor and JPEG would have stored it: decoded
    to linear light, noised (``add_sensor_noise``; 0 turns a term off), encoded again, and JPEG-compressed
    at ``jpeg_quality`` (0: none)."""
    out = np.asarray(srgb8)
    if full_well > 0 or read_noise > 0:
        linear = srgb_to_linear(out.astype(np.float64) / 255.0)
        out = linear_to_srgb8(add_sensor_noise(linear, full_well, read_noise, rng))
    if jpeg_quality:
        out = jpeg_roundtrip(np.ascontiguousarray(out), jpeg_quality)
    return out
