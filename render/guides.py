"""The light-field slices' guides: the all-in-focus render blurred as each slice is, layer over layer.

A light-field slice is denoised with an albedo and a normal image (``lightfield``'s rays give only its colour
cleanly enough): the all-in-focus render's, blurred per pixel by the slice's blur circle with occlusion
(``layered_blur``), by a disk kernel that is right below a pixel too (``subpixel_disk_kernel``). Where a slice
is in focus, the blurred all-in-focus image is the slice itself (``in_focus_weight``). Pure numpy and OpenCV.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .scene import CameraSpec

# Below this radius a disk is blurred by its frequency response (``subpixel_disk_kernel``): an antialiased
# disk drawn on the pixel grid is no blur at all below half a pixel and errs by up to 0.27 in its frequency
# response below two pixels (the pixel's own box counted twice); above, the drawn disk errs less than 0.04.
DRAWN_DISK_MIN_RADIUS_PX = 3.0


def disk_kernel(radius_px: float) -> np.ndarray:
    """The blur of a disk of ``radius_px`` pixels on an image already sampled by square pixels, normalised to
    sum 1: below DRAWN_DISK_MIN_RADIUS_PX the kernel with the disk's own frequency response
    (``subpixel_disk_kernel``), above it the disk drawn with an antialiased edge (coverage
    min(1, max(0, r + 1/2 - distance)))."""
    r = float(radius_px)
    if r < DRAWN_DISK_MIN_RADIUS_PX:
        return subpixel_disk_kernel(round(r, 3)).copy()
    reach = math.ceil(r + 0.5)
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    k = np.clip(r + 0.5 - np.hypot(xx, yy), 0, 1).astype(np.float32)
    return k / k.sum()


def disk_transfer(radius_px: float, size: int) -> np.ndarray:
    """The frequency response of a uniform disk of ``radius_px`` pixels on the ``size`` x ``size`` DFT grid
    (``np.fft.fftfreq`` order): 2 J1(x) / x at x = 2 pi r |f|, J1 by Bessel's integral (midpoint rule)."""
    f = np.fft.fftfreq(size)
    x = 2 * np.pi * radius_px * np.hypot(*np.meshgrid(f, f))
    points = max(64, int(8 * x.max()))  # several points per oscillation of the integrand
    tau = (np.arange(points) + 0.5) * np.pi / points
    j1 = np.cos(tau - x[..., None] * np.sin(tau)).mean(axis=-1)
    safe = np.where(x > 1e-9, x, 1.0)
    return np.where(x > 1e-9, 2 * j1 / safe, 1.0)


@functools.lru_cache(maxsize=512)
def subpixel_disk_kernel(radius_px: float) -> np.ndarray:
    """A kernel whose frequency response is the disk's (``disk_transfer``) up to the pixel grid's Nyquist
    frequency, cut to the disk's reach plus two pixels and normalised to sum 1: on an image sampled by square
    pixels it blurs as the disk blurs the scene before sampling, also below a pixel (0.2 px steps of blur
    diameter stay apart). Lobes below zero are small (down to -8 % of the peak, at two pixels) and kept: cutting them off
    doubles the error. float32, read-only (cached)."""
    if radius_px <= 0:
        k = np.ones((1, 1), dtype=np.float32)
    else:
        reach = math.ceil(radius_px) + 2
        size = 4 * reach + 4
        k = np.fft.fftshift(np.real(np.fft.ifft2(disk_transfer(radius_px, size))))
        c = size // 2
        k = k[c - reach : c + reach + 1, c - reach : c + reach + 1]
        k = (k / k.sum()).astype(np.float32)
    k.flags.writeable = False
    return k


def layered_blur(image: np.ndarray, signed_radius_px: np.ndarray, depth_m: np.ndarray, step_px: float = 0.25) -> np.ndarray:
    """Depth of field with occlusion, for a guide: the pixels of ``image`` (H, W, C) grouped into layers of
    nearly equal signed blur radius ``signed_radius_px`` (H, W: half the signed blur diameter, so that the
    two sides of the focal plane never share a layer; bins ``step_px`` wide, each blurred by its mean
    radius), each layer blurred with its coverage and laid over the ones behind it, farthest first
    (``depth_m`` orders them), and divided by the total coverage. Unlike a plain scatter, a blurred near
    layer covers a sharp far one by its true fraction of the aperture, and a blurred far layer does not
    shine through a sharp near one. What the all-in-focus view does not see (behind a near layer) is filled
    from its visible neighbours in that layer, or else from the layer in front. float32 (H, W, C)."""
    import cv2

    image = np.asarray(image, dtype=np.float32)
    h, w, c = image.shape
    r = np.asarray(signed_radius_px, dtype=np.float32)
    if r.shape != (h, w) or np.shape(depth_m) != (h, w):
        raise ValueError(f"radius {r.shape} and depth {np.shape(depth_m)} maps: expected {(h, w)}")
    keys, layer_of = np.unique(np.floor(r / step_px).astype(np.int64), return_inverse=True)
    layer_of = layer_of.reshape(h, w)
    count = np.bincount(layer_of.ravel(), minlength=len(keys))
    mean_depth = np.bincount(layer_of.ravel(), weights=np.asarray(depth_m, dtype=np.float64).ravel()) / count
    mean_radius = np.bincount(layer_of.ravel(), weights=np.abs(r).ravel().astype(np.float64)) / count
    out = np.zeros((h, w, c), dtype=np.float32)
    alpha = np.zeros((h, w), dtype=np.float32)
    for i in np.argsort(-mean_depth, kind="stable"):  # farthest first
        mask = layer_of == i
        kernel = disk_kernel(mean_radius[i])
        # The layer only reaches its kernel's radius beyond its pixels: work in that window (with a margin
        # of empty pixels, so the window's replicated border is the image's wherever it matters).
        reach = kernel.shape[0] // 2
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        win = (
            slice(max(rows[0] - reach, 0), min(rows[-1] + reach + 1, h)),
            slice(max(cols[0] - reach, 0), min(cols[-1] + reach + 1, w)),
        )
        o, a = out[win], alpha[win]  # views: updated in place
        # What lies behind, normalised by its own coverage: where a nearer layer hid part of it, its
        # neighbours fill in (the far side of an edge shows the near layer by exactly its coverage).
        behind = a > 1e-4
        np.divide(o, a[..., None], out=o, where=behind[..., None])
        o[~behind] = 0
        m = mask[win].astype(np.float32)
        blurred = cv2.filter2D(
            np.concatenate([image[win] * m[..., None], m[..., None]], axis=-1), -1, kernel, borderType=cv2.BORDER_REPLICATE
        )
        # The kernel's small lobes below zero (and the overshoot beside them) put coverage a little outside
        # [0, 1]: clipped, with the colour scaled alike, so that a constant stays that constant.
        raw = blurred[..., c]
        cover = np.clip(raw, 0.0, 1.0)
        scale = np.divide(cover, raw, out=np.zeros_like(raw), where=np.abs(raw) > 1e-12)
        o *= (1 - cover)[..., None]
        o += blurred[..., :c] * scale[..., None]
        a[...] = cover + (1 - cover) * behind
    return out / np.maximum(alpha, 1e-6)[..., None]


# In focus (blur radius up to IN_FOCUS_RADIUS_PX) a light-field slice is the all-in-focus image blurred as the
# slice is; from there to FROM_RAYS_RADIUS_PX it passes, linearly, to the denoised rays.
IN_FOCUS_RADIUS_PX = 0.05
FROM_RAYS_RADIUS_PX = 0.15


def in_focus_weight(radius_px: np.ndarray) -> np.ndarray:
    """The weight of the blurred all-in-focus image in a light-field slice, per pixel of its blur radius map:
    1 in focus, 0 from FROM_RAYS_RADIUS_PX. Where a slice is in focus it shows what the all-in-focus view
    shows, blurred by less than a pixel (``subpixel_disk_kernel``, exact there: no occlusion to guess at
    that blur), and the all-in-focus render is the cleaner estimate: its 16 samples per pixel are stratified
    where the slice's rays land unevenly, and OIDN, given the noisier rays, misrenders sharp high-contrast
    texture there (measured on a checker: 2.2-2.4 times the raw 16-sample error of Cycles; the all-in-focus
    image, 1.4 times). Float32 (H, W)."""
    r = np.asarray(radius_px, dtype=np.float32)
    span = FROM_RAYS_RADIUS_PX - IN_FOCUS_RADIUS_PX
    return np.clip((FROM_RAYS_RADIUS_PX - r) / span, 0.0, 1.0).astype(np.float32)


def slice_guides(sharp: np.ndarray, depth_m: np.ndarray, cam: CameraSpec) -> list[np.ndarray]:
    """Denoising guides of every slice: all-in-focus images ``sharp`` (H, W, C) blurred per pixel by the
    slice's blur circle at ``depth_m`` (radius = half the camera's signed blur diameter, ``defocus_maps``),
    layer over layer (``layered_blur``: occlusion edges as the thin lens shows them)."""
    return [layered_blur(sharp, d / 2, depth_m) for d in cam.defocus_maps(depth_m)]
