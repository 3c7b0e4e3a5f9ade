"""Ground truth derived from what the renderer produced: defocus maps and edges.

``stored_defocus_maps`` is the one function that computes a file's defocus maps from what the file
stores (float32 depth, focus distances and camera): the renderer uses it to make them, the writer to
check them, and readers to recompute maps the file does not store (``provenance``), so all three
agree bit for bit.
"""

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


def stored_defocus_maps(
    depth, focus_distance, f_number, focal_length_mm, sensor_width_mm, model: str, no_data: float | None = None
) -> np.ndarray:
    """``optics.defocus_maps`` on the values as a file stores them: every input cast to float32 first
    (so maps made before writing equal maps recomputed after reading, bit for bit). Pixels whose depth
    is ``no_data`` (no ground truth) get NaN.
    """
    depth = np.asarray(depth, dtype=np.float32)
    focus = [float(s) for s in np.asarray(focus_distance, dtype=np.float32)]
    n, f, w = (float(np.float32(x)) for x in (f_number, focal_length_mm, sensor_width_mm))
    if no_data is None:
        return defocus_maps(depth, focus, n, f, w, model)
    hole = depth == np.float32(no_data)
    with np.errstate(divide="ignore", invalid="ignore"):
        maps = defocus_maps(np.where(hole, np.float32(1), depth), focus, n, f, w, model)
    maps[:, hole] = np.nan
    return maps


def recompute(name: str, rec, declared) -> np.ndarray:
    """The values readers give for ground truth ``name`` of a record (``SceneRecord``) that its file
    (whose declaration, ``provenance``, is ``declared``) recomputes instead of storing."""
    if name != "defocus":
        raise ValueError(f"{name!r} cannot be recomputed; only defocus maps can")
    return stored_defocus_maps(
        rec.depth,
        rec.focus_distance,
        rec.f_number,
        rec.focal_length_mm,
        rec.sensor_width_mm,
        declared["defocus"].method,
        declared["depth"].no_data,
    )


__all__ = ["canny_edges", "defocus_maps", "recompute", "stored_defocus_maps", "CANNY_LOW", "CANNY_HIGH", "CANNY_BLUR_SIGMA"]
