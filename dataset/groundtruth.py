"""Ground truth derived from what the renderer produced: defocus maps and edges."""

from __future__ import annotations

import cv2
import numpy as np

from .optics import defocus_maps

# Canny hysteresis thresholds on the 8-bit grey AiF image, after a small Gaussian blur that keeps
# render noise from producing speckle edges. Both are recorded in each file's configuration.
CANNY_LOW = 50
CANNY_HIGH = 150
CANNY_BLUR_SIGMA = 1.0


def canny_edges(
    aif_srgb8: np.ndarray, low: float = CANNY_LOW, high: float = CANNY_HIGH, blur_sigma: float = CANNY_BLUR_SIGMA
) -> np.ndarray:
    """Canny edges of an 8-bit RGB image as uint8 0/1 (H, W)."""
    img = np.asarray(aif_srgb8)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"edges: expected an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if blur_sigma > 0:
        grey = cv2.GaussianBlur(grey, (0, 0), blur_sigma)
    return (cv2.Canny(grey, low, high) > 0).astype(np.uint8)


__all__ = ["canny_edges", "defocus_maps", "CANNY_LOW", "CANNY_HIGH", "CANNY_BLUR_SIGMA"]
