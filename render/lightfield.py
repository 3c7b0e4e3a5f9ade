"""Light-field focal stacks: every slice of a stack from one shared render of sub-aperture views.

Cycles' thin-lens camera (docs/design.md) traces, for a pixel position x and a point p on the aperture disk, the
ray from p through the point of the focal plane (planar, at distance s) that the pinhole camera sees at x.
The same ray, seen from a pinhole camera moved to p (same orientation and intrinsics), starts at p and has
the direction of that pinhole camera's pixel position x' = x - f_px p / s (image y down, p's y up):
shift-and-add of pinhole views is not an approximation of the thin lens, it is the thin lens. So one render
of views from many aperture points serves every focus distance: a sample of view position x' through p
belongs, in the slice focused at s, to the pixel containing x' + f_px p / s.

The render (``render.blender``) is one image through a custom OSL camera (``osl_source``) holding V views
interleaved: big-image pixel (X, Y) = (u * gx + tx, v * gy + ty) is view t = ty * gx + tx at view pixel
(u, v). Each big pixel is one ray, traced ``light_field_samples`` times (lighting is sampled anew each time,
the ray is the same): its aperture point and sub-pixel position are drawn per pixel and per view from a
small integer hash that the shader and ``LightFieldLayout.sample_rays`` compute identically, stratified over
the V views of each pixel (a Cranley-Patterson-rotated additive recurrence, R4_STEPS). So no two pixels share a
pattern (no ghost copies of defocused edges), and the numpy side knows every ray exactly. Views extend
``margin`` pixels beyond the frame so that the slices' borders get their rays from outside the pinhole view,
as Cycles' own depth of field does.

Slices are sums over the samples that land in each pixel divided by their count (``splat``). The denoiser
needs an albedo and a normal image per slice: either the same splat of the albedo and normal rays (noisy
where the slice is defocused: they need OIDN's prefilter), or all-in-focus images (the denoised image as
albedo, or the render's albedo; its normal) blurred as the slice blurs them, layer over layer
(``guides.layered_blur``: clean, so no prefilter; measured better, docs/benchmarks.md). Pure numpy and OpenCV: no
bpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from focalstack.dataset.optics import focal_length_px

# The version these slices are (defined once, in config): named here so that a change to the rays or guides
# below is made beside it, and bumps it.
from .config import LIGHT_FIELD_VERSION  # noqa: F401
from .scene import CameraSpec

HASH_PRIME = 65521  # all hash arithmetic stays below 2**31 in OSL's 32-bit ints


# The additive recurrence that stratifies a pixel's V views, one step per stream (aperture radius, aperture
# angle, sub-pixel x, sub-pixel y): the R4 sequence's (powers of the inverse generalised golden ratio), in
# 1/HASH_PRIME; four distinct steps, so that no stream repeats another over the views.
R4_STEPS = tuple(round(a * HASH_PRIME) for a in (0.8566748838545029, 0.733891856627126, 0.6287067210378086, 0.53859725722361))


def _hash(x, y, k: int):
    """Integer hash of a view pixel (x, y) and a stream k, in [0, HASH_PRIME): numpy twin of the shader's.
    Affine steps with xor-shifts between them: without those, streams k would be constant offsets of one
    another."""
    m = HASH_PRIME
    h = (x * 3109 + 17) % m
    h = (h * 3119 + y + 7) % m
    h = (h * 3121 + k * 977 + 3) % m
    h = h ^ (h >> 7)
    h = (h * 3137 + 5) % m
    h = h ^ (h >> 9)
    return (h * 3163 + 11) % m


def _uniform(x, y, k: int, t, step: int):
    """Stream k's value for view t at view pixel (x, y), in [0, 1): float32, exactly as the shader computes it."""
    h = _hash(x, y, k)
    return (((h + t * step) % HASH_PRIME).astype(np.float32) / np.float32(HASH_PRIME)).astype(np.float32)


def supports(cam: CameraSpec) -> bool:
    """Whether every slice is the reference camera refocused (same lens, no motion): the light field's
    shift-and-add assumes one camera centre, orientation and focal length for the whole stack."""
    return all(
        abs(s.lens_mm - cam.focal_length_mm) <= 1e-9 * cam.focal_length_mm and not any(s.rotation) and not any(s.translation)
        for s in cam.slices
    )


def view_grid(views: int) -> tuple[int, int]:
    """(columns, rows) of the views in the render: the most nearly square grid with no empty cell, unless
    that grid is more than four times as wide as it is tall (then the square one with a few empty cells;
    an empty cell still costs its pixels' camera rays and film)."""
    square = math.ceil(math.sqrt(views))
    for gx in range(square, views + 1):
        if views % gx == 0 and gx <= 4 * (views // gx):
            return gx, views // gx
    return square, math.ceil(views / square)


@dataclass(frozen=True)
class LightFieldLayout:
    """Geometry of one light-field render: the frame, the views, the aperture and where samples land."""

    width: int
    height: int
    margin: int  # view pixels beyond the frame on each side
    views: int
    grid_x: int
    grid_y: int
    radius_m: float  # aperture radius the views sample (the largest of the slices')
    f_px: float
    tan_x2: float  # view width at 1 m (2 tan of the half angle)
    tan_y2: float
    focus_distances: tuple[float, ...]
    slice_radii_m: tuple[float, ...]  # each slice's own aperture radius (its f-stop): rays beyond are left out

    @classmethod
    def for_camera(cls, cam: CameraSpec, views: int) -> "LightFieldLayout":
        if not supports(cam):
            raise ValueError("light field: every slice must use the camera's own lens and pose")
        f_px = focal_length_px(cam.focal_length_mm, cam.sensor_width_mm, cam.width)
        radii = tuple(cam.focal_length_mm * 1e-3 / (2.0 * cam.aperture_fstop(k)) for k in range(len(cam.slices)))
        shift = max(f_px * r / s for r, s in zip(radii, cam.focus_distances))
        grid_x, grid_y = view_grid(views)
        tan_x2 = cam.sensor_width_mm / cam.focal_length_mm
        return cls(
            cam.width,
            cam.height,
            math.ceil(shift) + 1,
            views,
            grid_x,
            grid_y,
            max(radii),
            f_px,
            tan_x2,
            tan_x2 * cam.height / cam.width,
            tuple(float(s) for s in cam.focus_distances),
            radii,
        )

    @property
    def view_size(self) -> tuple[int, int]:
        return self.width + 2 * self.margin, self.height + 2 * self.margin

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the render holding all views."""
        tw, th = self.view_size
        return tw * self.grid_x, th * self.grid_y

    def osl_source(self) -> str:
        """The custom camera: big-image pixel -> (view, view pixel) -> ray from its aperture point."""
        tw, th = self.view_size
        gw, gh = self.image_size
        values = {
            "W": self.width,
            "H": self.height,
            "MARGIN": self.margin,
            "GX": self.grid_x,
            "GY": self.grid_y,
            "V": self.views,
            "GW": gw,
            "GH": gh,
            "TW": tw,
            "TH": th,
            "P": HASH_PRIME,
            "S1": R4_STEPS[0],
            "S2": R4_STEPS[1],
            "S3": R4_STEPS[2],
            "S4": R4_STEPS[3],
            "RADIUS": repr(float(self.radius_m)),
            "TX2": repr(float(self.tan_x2)),
            "TY2": repr(float(self.tan_y2)),
        }
        text = _OSL_TEMPLATE
        for key, value in values.items():
            text = text.replace(f"@{key}@", str(value))
        return text

    def sample_rays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(px, py, x, y) of every ray, each (V, TH, TW): its aperture point in metres (x right, y up) and its
        position in frame pixels (origin at the frame's top-left corner, y down), as the shader draws them."""
        tw, th = self.view_size
        v, u = np.mgrid[0:th, 0:tw].astype(np.int64)
        t = np.arange(self.views, dtype=np.int64)[:, None, None]
        s1, s2, s3, s4 = R4_STEPS
        u1 = _uniform(u, v, 3, t, s1)
        u2 = _uniform(u, v, 4, t, s2)
        c1 = _uniform(u, v, 5, t, s3)
        c2 = _uniform(u, v, 6, t, s4)
        rad = np.float32(self.radius_m) * np.sqrt(u1)
        ang = np.float32(2.0 * math.pi) * u2
        px = (rad * np.cos(ang)).astype(np.float64)
        py = (rad * np.sin(ang)).astype(np.float64)
        x = (u - self.margin).astype(np.float64) + c1
        y = (v - self.margin).astype(np.float64) + c2
        return px, py, x, y

    def split_views(self, image: np.ndarray) -> np.ndarray:
        """The render (GH, GW, C), top row first -> its rays (V * TH * TW, C), in ``sample_rays`` order."""
        tw, th = self.view_size
        c = image.shape[-1] if image.ndim == 3 else 1
        a = image.reshape(th, self.grid_y, tw, self.grid_x, c).transpose(1, 3, 0, 2, 4)
        return a.reshape(self.grid_y * self.grid_x, th, tw, c)[: self.views].reshape(-1, c)


class SlicePlan:
    """Where each ray of a layout lands in each slice (built once per layout): per slice, the rays that land
    in the frame within the slice's aperture (None: all of them), their pixels and the count per pixel.
    Sums run in ray order with ``np.bincount``, which reads the rays where they lie (no sorting gather)."""

    def __init__(self, layout: LightFieldLayout):
        self.layout = layout
        px, py, x, y = layout.sample_rays()
        w, h = layout.width, layout.height
        self.plans = []
        for s, radius in zip(layout.focus_distances, layout.slice_radii_m):
            col = np.floor(x + layout.f_px * px / s).astype(np.int64)
            row = np.floor(y - layout.f_px * py / s).astype(np.int64)
            ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
            if radius < layout.radius_m:
                ok &= px * px + py * py <= radius * radius
            ok = ok.ravel()
            pixel = (row * w + col).ravel()[ok].astype(np.intp)
            rays = np.flatnonzero(ok).astype(np.int32)
            if rays.size == ok.size:
                rays = None  # every ray lands: no selection needed
            self.plans.append((rays, pixel, np.bincount(pixel, minlength=w * h)))

    def counts(self, k: int) -> np.ndarray:
        """How many rays land in each pixel of slice k, (H * W,)."""
        return self.plans[k][2]

    def splat(self, k: int, rays: np.ndarray) -> np.ndarray:
        """Slice k of per-ray values (N, C): the mean of the rays landing in each pixel, (H, W, C) float32.
        A pixel no ray reached (possible with very few views) takes the mean of its 3 x 3 neighbourhood."""
        selected, pixel, counts = self.plans[k]
        w, h = self.layout.width, self.layout.height
        c = rays.shape[-1]
        values = rays if selected is None else rays[selected]
        sums = np.stack([np.bincount(pixel, weights=values[:, j], minlength=w * h) for j in range(c)], axis=-1)
        hit = counts > 0
        out = np.zeros_like(sums)
        out[hit] = sums[hit] / counts[hit, None]
        if not hit.all():
            import cv2

            box_sum = cv2.blur(sums.reshape(h, w, c), (3, 3), borderType=cv2.BORDER_REFLECT).reshape(-1, c)
            box_cnt = cv2.blur(counts.reshape(h, w).astype(np.float64), (3, 3), borderType=cv2.BORDER_REFLECT).ravel()
            fill = ~hit & (box_cnt > 0)
            out[fill] = box_sum[fill] / box_cnt[fill, None]
        return out.reshape(h, w, c).astype(np.float32)


_OSL_TEMPLATE = """
/* focalstack light-field camera: @V@ pinhole views from points of a disk aperture, interleaved.
 * Generated by focalstack.render.lightfield; the numpy side draws the same rays. */
int fs_hash(int x, int y, int k)
{
  int m = @P@;
  int h = (x * 3109 + 17) % m;
  h = (h * 3119 + y + 7) % m;
  h = (h * 3121 + k * 977 + 3) % m;
  h = h ^ (h >> 7);
  h = (h * 3137 + 5) % m;
  h = h ^ (h >> 9);
  return (h * 3163 + 11) % m;
}

float fs_uniform(int x, int y, int k, int t, int step)
{
  return (float)((fs_hash(x, y, k) + t * step) % @P@) / (float)@P@;
}

shader focalstack_light_field(output point position = 0.0,
                              output vector direction = 0.0,
                              output color throughput = 1.0,
                              output vector dPdx = 0.0,
                              output vector dPdy = 0.0,
                              output vector dDdx = 0.0,
                              output vector dDdy = 0.0)
{
  point r = camera_shader_raster_position();
  int X = (int)floor(r[0] * @GW@);
  int Y = @GH@ - 1 - (int)floor(r[1] * @GH@);  /* rows from the top */
  int tx = X % @GX@, ty = Y % @GY@;
  int col = X / @GX@, row = Y / @GY@;  /* view pixel (u and v are OSL globals) */
  int t = ty * @GX@ + tx;
  if (t >= @V@ || col >= @TW@ || row >= @TH@) {
    throughput = color(0.0);
    return;
  }
  float u1 = fs_uniform(col, row, 3, t, @S1@);
  float u2 = fs_uniform(col, row, 4, t, @S2@);
  float c1 = fs_uniform(col, row, 5, t, @S3@);
  float c2 = fs_uniform(col, row, 6, t, @S4@);
  float rad = @RADIUS@ * sqrt(u1);
  float ang = 6.283185307179586 * u2;
  position = point(rad * cos(ang), rad * sin(ang), 0.0);
  float x = (float)(col - @MARGIN@) + c1;
  float y = (float)(row - @MARGIN@) + c2;
  vector ray = vector((x / @W@ - 0.5) * @TX2@, (0.5 - y / @H@) * @TY2@, 1.0);
  float len = length(ray);
  direction = ray / len;
  /* Ray differentials for one frame pixel (texture filtering and bump need them). */
  vector step_x = vector(@TX2@ / @W@, 0.0, 0.0);
  vector step_y = vector(0.0, -@TY2@ / @H@, 0.0);
  dDdx = (step_x - direction * dot(direction, step_x)) / len;
  dDdy = (step_y - direction * dot(direction, step_y)) / len;
  dPdx = vector(0.0);
  dPdy = vector(0.0);
}
"""
