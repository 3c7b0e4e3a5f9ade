"""Colour encoding: scene-linear floats to display-referred 8-bit sRGB (Blender's 'Standard' view)."""

from __future__ import annotations

import numpy as np


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1) on linear values clipped to [0, 1]; float out."""
    x = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """Inverse of ``linear_to_srgb`` for values in [0, 1]."""
    x = np.clip(np.asarray(srgb, dtype=np.float64), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Linear RGB(A) float image -> uint8 sRGB RGB, rounded to nearest; alpha is dropped."""
    rgb = np.asarray(linear)[..., :3]
    return np.round(linear_to_srgb(rgb) * 255.0).astype(np.uint8)
