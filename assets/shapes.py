"""Procedural mesh families: pure-numpy generators of closed, outward-wound triangle meshes.

``build_mesh(ShapeSpec) -> (vertices, faces)`` turns a family name and its parameters into geometry:
``vertices`` float32 (V, 3), ``faces`` int32 (F, 3) triangles, counter-clockwise seen from outside
(right-hand normals point outwards). Every mesh is centred and scaled so that its bounding box fits
[-1, 1]^3 with its largest half-extent exactly 1; an object's ``scale`` then gives its half-sizes in metres.
The geometry depends on the parameters alone (blob noise and lathe profiles take a seed *parameter*),
so a stored scene description rebuilds the same mesh anywhere.

The catalogue ``SHAPE_FAMILIES`` tags each family with a ``group`` ('primitive', 'procedural',
'surface', or 'test' for families held out of training) and gives each parameter a default, the range that scene
sampling draws from, and hard limits.
Presets may narrow or move the drawn ranges (``shape_params``) so that training and held-out test sets
use disjoint families or parameter ranges by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

MAX_TRIANGLES = 20_000


# --------------------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeParam:
    """One parameter of a family.

    kind: 'float', 'int' or 'choice'. ``sample`` is the default drawn range (lo, hi) for numbers, the
    tuple of choices for 'choice', or None for a fixed (resolution) parameter that stays at ``default``.
    ``limits`` are the hard bounds (inclusive) a value, or a drawn range given by a preset, must respect.
    """

    kind: str
    default: object
    sample: tuple | None = None
    limits: tuple | None = None
    doc: str = ""

    def check(self, family: str, name: str, value) -> object:
        """Return ``value`` coerced to the parameter's type; ValueError naming it if it is not valid."""
        where = f"shape {family!r} parameter {name!r}"
        if self.kind == "choice":
            if value not in self.limits:
                raise ValueError(f"{where} = {value!r}: expected one of {', '.join(map(repr, self.limits))}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{where} = {value!r}: expected a number")
        if self.kind == "int":
            if int(value) != value:
                raise ValueError(f"{where} = {value!r}: expected an integer")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{where} = {value!r}: expected a finite number")
        lo, hi = self.limits
        if not lo <= value <= hi:
            raise ValueError(f"{where} = {value!r}: expected a value in [{lo}, {hi}]")
        return value


@dataclass(frozen=True)
class ShapeFamily:
    name: str
    group: str  # 'primitive', 'procedural', 'surface' or 'test' (held out from training presets)
    closed: bool  # watertight: every edge shared by exactly two faces
    smooth: bool  # shade smooth (with sharp edges above ~35 degrees kept sharp) rather than flat
    params: Mapping[str, ShapeParam]
    builder: Callable[..., tuple[np.ndarray, np.ndarray]] = field(repr=False)
    doc: str = ""


# 'test' families are held out: only presets with split = "test" may draw them (render/sampling.py), so a
# test-shape set sees shapes no training preset can produce.
SHAPE_GROUPS = ("primitive", "procedural", "surface", "test")


def _float(default, sample, limits, doc=""):
    return ShapeParam("float", float(default), tuple(sample) if sample else None, tuple(limits), doc)


def _int(default, sample, limits, doc=""):
    return ShapeParam("int", int(default), tuple(sample) if sample else None, tuple(limits), doc)


def _choice(default, choices, sample=None, doc=""):
    return ShapeParam("choice", default, tuple(sample) if sample else None, tuple(choices), doc)


_SEED = _int(0, (0, 2**31 - 1), (0, 2**31 - 1), "seed of the family's own deterministic pattern")


# --------------------------------------------------------------------------------------------------
# Mesh building blocks
# --------------------------------------------------------------------------------------------------


def _tube_faces(n_rings: int, n_seg: int, bottom_pole: bool, top_pole: bool, wrap_rings: bool = False) -> np.ndarray:
    """Triangles of a grid of rings (ring k, segment j -> vertex k * n_seg + j), closed around j.

    Rings run upwards and segments counter-clockwise seen from above, so (k, j), (k, j+1), (k+1, j+1)
    is counter-clockwise seen from outside. Pole vertices, when present, follow the rings: the bottom pole
    at index n_rings * n_seg, then the top pole. ``wrap_rings`` also joins the last ring to the first (torus).
    """
    k = np.arange(n_rings if wrap_rings else n_rings - 1)
    j = np.arange(n_seg)
    kk, jj = np.meshgrid(k, j, indexing="ij")
    k1 = (kk + 1) % n_rings
    j1 = (jj + 1) % n_seg
    a, b = kk * n_seg + jj, kk * n_seg + j1
    c, d = k1 * n_seg + j1, k1 * n_seg + jj
    tris = [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    pole = n_rings * n_seg
    if bottom_pole:
        tris.append(np.stack([np.full(n_seg, pole), (j + 1) % n_seg, j], -1))
        pole += 1
    if top_pole:
        top = (n_rings - 1) * n_seg
        tris.append(np.stack([np.full(n_seg, pole), top + j, top + (j + 1) % n_seg], -1))
    return np.concatenate(tris).astype(np.int64)


def _tube(rings: np.ndarray, bottom: np.ndarray | None, top: np.ndarray | None):
    """Mesh from rings (R, S, 3) and optional pole points closing each end."""
    n_rings, n_seg, _ = rings.shape
    verts = [rings.reshape(-1, 3)]
    if bottom is not None:
        verts.append(np.asarray(bottom, float)[None])
    if top is not None:
        verts.append(np.asarray(top, float)[None])
    return np.concatenate(verts), _tube_faces(n_rings, n_seg, bottom is not None, top is not None)


def _lathe(radius: np.ndarray, z: np.ndarray, segments: int):
    """Surface of revolution about +Z of the profile (radius[i], z[i]) from bottom to top.

    Profile ends with radius 0 become poles; other ends are closed by a flat cap with a centre pole.
    """
    radius, z = np.asarray(radius, float), np.asarray(z, float)
    bottom = np.array([0.0, 0.0, z[0]])
    top = np.array([0.0, 0.0, z[-1]])
    if radius[0] <= 1e-9:
        radius, z = radius[1:], z[1:]
    if radius[-1] <= 1e-9:
        radius, z = radius[:-1], z[:-1]
    phi = 2 * np.pi * np.arange(segments) / segments
    rings = np.stack(
        [radius[:, None] * np.cos(phi), radius[:, None] * np.sin(phi), np.broadcast_to(z[:, None], (len(z), segments))],
        -1,
    )
    return _tube(rings, bottom, top)


def _lat_lon(n_rings: int, segments: int, fn):
    """Closed sphere-like grid: ``fn(lat, lon) -> (..., 3)`` on interior latitudes, plus the two poles."""
    lat = -np.pi / 2 + np.pi * np.arange(1, n_rings) / n_rings  # n_rings - 1 interior rings
    lon = -np.pi + 2 * np.pi * np.arange(segments) / segments
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    rings = fn(la, lo)
    bottom = fn(np.array(-np.pi / 2), np.array(0.0))
    top = fn(np.array(np.pi / 2), np.array(0.0))
    return _tube(rings, bottom, top)


def _icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere, 20 * 4**subdivisions faces, wound outwards."""
    t = (1 + 5**0.5) / 2
    v = np.array(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
         [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]],
        float,
    )  # fmt: skip
    f = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
         [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]],
        np.int64,
    )  # fmt: skip
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(subdivisions):
        edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        uniq, inverse = np.unique(np.sort(edges, axis=1), axis=0, return_inverse=True)
        mid = v[uniq[:, 0]] + v[uniq[:, 1]]
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        m = (inverse.reshape(3, -1) + len(v)).T  # midpoints of edges 01, 12, 20 of each face
        v = np.concatenate([v, mid])
        a, b, c = f.T
        f = np.concatenate(
            [np.stack([a, m[:, 0], m[:, 2]], 1), np.stack([b, m[:, 1], m[:, 0]], 1),
             np.stack([c, m[:, 2], m[:, 1]], 1), m]
        )  # fmt: skip
    return v, f


def _fit_unit_cube(v: np.ndarray) -> np.ndarray:
    lo, hi = v.min(axis=0), v.max(axis=0)
    half = (hi - lo).max() / 2
    return (v - (hi + lo) / 2) / half


# --------------------------------------------------------------------------------------------------
# Deterministic 3-D gradient noise (integer hashed lattice, no random state)
# --------------------------------------------------------------------------------------------------

_GRADIENTS = np.array(
    [[1, 1, 0], [-1, 1, 0], [1, -1, 0], [-1, -1, 0], [1, 0, 1], [-1, 0, 1],
     [1, 0, -1], [-1, 0, -1], [0, 1, 1], [0, -1, 1], [0, 1, -1], [0, -1, -1]],
    float,
)  # fmt: skip
_M32 = np.uint64(0xFFFFFFFF)


def _hash(ix, iy, iz, seed: int) -> np.ndarray:
    """A well-mixed uint32 hash of integer lattice coordinates and a seed (lowbias32-style finaliser)."""
    h = (ix.astype(np.int64).astype(np.uint64) * np.uint64(0x8DA6B343)) & _M32
    h ^= (iy.astype(np.int64).astype(np.uint64) * np.uint64(0xD8163841)) & _M32
    h ^= (iz.astype(np.int64).astype(np.uint64) * np.uint64(0xCB1AB31F)) & _M32
    h ^= np.uint64((seed * 0x9E3779B9) & 0xFFFFFFFF)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x7FEB352D)) & _M32
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x846CA68B)) & _M32
    h ^= h >> np.uint64(16)
    return h


def gradient_noise(p: np.ndarray, seed: int) -> np.ndarray:
    """Perlin-style gradient noise at points p (..., 3); roughly in [-1, 1], 0 at lattice points."""
    p = np.asarray(p, float)
    i0 = np.floor(p)
    f = p - i0
    i0 = i0.astype(np.int64)
    u = f * f * f * (f * (f * 6 - 15) + 10)  # quintic fade
    out = 0.0
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                g = _GRADIENTS[_hash(i0[..., 0] + dx, i0[..., 1] + dy, i0[..., 2] + dz, seed) % np.uint64(12)]
                d = f - np.array([dx, dy, dz], float)
                w = (u[..., 0] if dx else 1 - u[..., 0]) * (u[..., 1] if dy else 1 - u[..., 1])
                w = w * (u[..., 2] if dz else 1 - u[..., 2])
                out = out + w * np.sum(g * d, axis=-1)
    return out


def fbm_noise(p: np.ndarray, seed: int, octaves: int, gain: float = 0.5) -> np.ndarray:
    """Fractal sum of ``octaves`` noise layers (frequency x2, amplitude x gain each), normalised to ~[-1, 1]."""
    total, norm, amp = 0.0, 0.0, 1.0
    for o in range(octaves):
        total = total + amp * gradient_noise(p * (2.0**o) + 17.31 * o, seed + 7919 * o)
        norm += amp
        amp *= gain
    return total / norm


# --------------------------------------------------------------------------------------------------
# Family builders. Each returns (vertices float64 (V, 3), faces int64 (F, 3)) before fitting.
# --------------------------------------------------------------------------------------------------


def _build_cube():
    v = np.array([[x, y, z] for z in (-1, 1) for y in (-1, 1) for x in (-1, 1)], float)
    # vertex index = 4*z + 2*y + x (0/1 per axis); quads counter-clockwise seen from outside
    quads = [[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]]
    f = [[q[0], q[1], q[2]] for q in quads] + [[q[0], q[2], q[3]] for q in quads]
    return v, np.array(f, np.int64)


def _build_sphere(kind: str, subdivisions: int, segments: int, rings: int):
    if kind == "ico":
        return _icosphere(subdivisions)
    return _lat_lon(rings, segments, lambda la, lo: np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], -1))


def _build_cylinder(segments: int, height_segments: int):
    z = np.linspace(-1, 1, height_segments + 1)
    return _lathe(np.r_[0.0, np.ones_like(z), 0.0], np.r_[-1.0, z, 1.0], segments)


def _build_cone(top_ratio: float, segments: int, height_segments: int):
    z = np.linspace(-1, 1, height_segments + 1)
    r = 1 + (top_ratio - 1) * (z + 1) / 2
    if top_ratio <= 0:
        return _lathe(np.r_[0.0, r], np.r_[-1.0, z], segments)  # apex is the top pole
    return _lathe(np.r_[0.0, r, 0.0], np.r_[-1.0, z, 1.0], segments)


def _build_torus(minor_ratio: float, major_segments: int, minor_segments: int):
    major, minor = 1.0, minor_ratio
    u = 2 * np.pi * np.arange(major_segments) / major_segments
    w = 2 * np.pi * np.arange(minor_segments) / minor_segments
    ww, uu = np.meshgrid(w, u, indexing="ij")  # rings run around the tube (w), segments around Z (u)
    rr = major + minor * np.cos(ww)
    v = np.stack([rr * np.cos(uu), rr * np.sin(uu), minor * np.sin(ww)], -1).reshape(-1, 3)
    return v, _tube_faces(minor_segments, major_segments, False, False, wrap_rings=True)


def _build_plane(subdivisions: int):
    n = subdivisions + 1
    s = np.linspace(-1, 1, n + 1)
    yy, xx = np.meshgrid(s, s, indexing="ij")
    v = np.stack([xx, yy, np.zeros_like(xx)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")  # row i (y), column j (x)
    a = i * (n + 1) + j
    b, c, d = a + 1, a + n + 2, a + n + 1
    f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return v, f


def _build_blob(frequency: float, amplitude: float, octaves: int, noise_seed: int, subdivisions: int):
    v, f = _icosphere(subdivisions)
    n = fbm_noise(v * frequency, noise_seed, octaves)
    radius = np.maximum(1.0 + amplitude * n / 0.5, 0.2)  # single-octave noise spans about +-0.5
    return v * radius[:, None], f  # radial displacement keeps the surface star-shaped: no self-intersection


def _spow(x, e):
    return np.sign(x) * np.abs(x) ** e


def _build_superquadric(e1: float, e2: float, segments: int, rings: int):
    def fn(la, lo):
        c = _spow(np.cos(la), e1)
        return np.stack([c * _spow(np.cos(lo), e2), c * _spow(np.sin(lo), e2), _spow(np.sin(la), e1)], -1)

    return _lat_lon(rings, segments, fn)


def _build_rounded_box(radius: float, segments: int, rings: int):
    def fn(la, lo):
        d = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], -1)
        p = d / np.abs(d).max(axis=-1, keepdims=True)  # central projection onto the cube
        core = np.clip(p, -(1 - radius), 1 - radius)
        off = p - core
        return core + radius * off / np.linalg.norm(off, axis=-1, keepdims=True)

    return _lat_lon(rings, segments, fn)


def _build_capsule(length_ratio: float, segments: int, rings: int):
    # hemispheres of radius 1 joined by a cylinder of length 2 * length_ratio (before fitting)
    a = np.linspace(-np.pi / 2, 0, rings + 1)
    half = length_ratio
    r = np.r_[np.cos(a), np.cos(a[::-1])]
    z = np.r_[np.sin(a) - half, -np.sin(a[::-1]) + half]
    return _lathe(r, z, segments)


def _build_prism(sides: int, star_ratio: float, twist: float, taper: float, bend: float, levels: int):
    n = 2 * sides
    ang = 2 * np.pi * np.arange(n) / n
    rad = np.where(np.arange(n) % 2 == 0, 1.0, star_ratio * np.cos(np.pi / sides))
    z = np.linspace(-1, 1, levels + 1)
    t = (z + 1) / 2
    scale = 1 + (taper - 1) * t
    a = ang[None, :] + twist * t[:, None]
    rings = np.stack(
        [scale[:, None] * rad * np.cos(a), scale[:, None] * rad * np.sin(a), np.broadcast_to(z[:, None], a.shape)], -1
    )
    v, f = _tube(rings, np.array([0, 0, -1.0]), np.array([0, 0, 1.0]))
    if abs(bend) > 1e-9:  # bend the Z axis into an arc of angle `bend` in the XZ plane, towards +X
        rb = 2.0 / bend
        x, zz = v[:, 0], v[:, 2]
        th = zz / rb
        v = np.stack([rb * (1 - np.cos(th)) + x * np.cos(th), v[:, 1], rb * np.sin(th) - x * np.sin(th)], -1)
    return v, f


def _build_lathe(profile_seed: int, waviness: float, segments: int, rings: int):
    # a vase-like surface of revolution: radius profile from a few seeded sinusoids, flat caps
    g = np.random.default_rng([profile_seed, 0x1A7E])  # a local generator seeded by the parameter alone
    z = np.linspace(-1, 1, rings + 1)
    t = (z + 1) / 2
    r = 0.6 + 0.25 * g.uniform(-1, 1) * (t - 0.5)
    for k in range(1, 4):
        r = r + waviness / k * g.uniform(-1, 1) * np.sin(np.pi * k * t + g.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.1, None)
    return _lathe(np.r_[0.0, r, 0.0], np.r_[-1.0, z, 1.0], segments)


def _curve_tube(curve: np.ndarray, tangent: np.ndarray, radius: float, segments: int, closed: bool):
    """A tube of ``radius`` around the polyline ``curve`` (K, 3) with tangents (K, 3).

    The cross-section frame is (N, B) with N = T x Z normalised and B = T x N (N x B = T), so segments run
    counter-clockwise about the tangent and faces wind outwards; the tangent must never be parallel to Z.
    A closed curve joins its last ring to its first; an open one gets flat caps with a centre pole.
    """
    t = tangent / np.linalg.norm(tangent, axis=1, keepdims=True)
    n = np.cross(t, [0.0, 0.0, 1.0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    b = np.cross(t, n)
    phi = 2 * np.pi * np.arange(segments) / segments
    rings = curve[:, None, :] + radius * (np.cos(phi)[None, :, None] * n[:, None, :] + np.sin(phi)[None, :, None] * b[:, None, :])
    if closed:
        return rings.reshape(-1, 3), _tube_faces(len(curve), segments, False, False, wrap_rings=True)
    return _tube(rings, curve[0], curve[-1])


_KNOTS = {"2,3": (2, 3), "2,5": (2, 5), "3,4": (3, 4), "3,5": (3, 5), "2,7": (2, 7)}


def _build_torus_knot(knot: str, thickness: float, segments: int, tube_segments: int):
    p, q = _KNOTS[knot]
    s = 2 * np.pi * np.arange(segments) / segments
    r = 2.0 + np.cos(q * s)
    curve = np.stack([r * np.cos(p * s), r * np.sin(p * s), -np.sin(q * s)], -1)
    dr = -q * np.sin(q * s)
    tangent = np.stack(
        [dr * np.cos(p * s) - p * r * np.sin(p * s), dr * np.sin(p * s) + p * r * np.cos(p * s), -q * np.cos(q * s)], -1
    )
    return _curve_tube(curve, tangent, thickness, tube_segments, closed=True)


def _build_spring(turns: float, pitch: float, thickness: float, segments: int, tube_segments: int):
    # a helix of radius 1 rising `pitch` per turn, as a tube with flat end caps; the tube stays
    # thinner than half the pitch so that neighbouring turns never touch
    radius = min(thickness, 0.45 * pitch)
    n = max(8, int(round(segments * turns)))
    a = 2 * np.pi * turns * np.linspace(0.0, 1.0, n)
    c = pitch / (2 * np.pi)
    curve = np.stack([np.cos(a), np.sin(a), c * a], -1)
    tangent = np.stack([-np.sin(a), np.cos(a), np.full_like(a, c)], -1)
    return _curve_tube(curve, tangent, radius, tube_segments, closed=False)


def _build_gear(teeth: int, tooth_depth: float, thickness: float):
    # a spur-gear outline (trapezoidal teeth) extruded along Z; flat faces, star-shaped about the axis
    frac = np.array([0.0, 0.4, 0.55, 0.85])
    rad = np.array([1.0 - tooth_depth, 1.0 - tooth_depth, 1.0, 1.0])
    ang = (2 * np.pi / teeth) * (np.arange(teeth)[:, None] + frac[None, :]).reshape(-1)
    r = np.tile(rad, teeth)
    z = np.array([-thickness, thickness])
    rings = np.stack([np.broadcast_to(r * np.cos(ang), (2, len(ang))), np.broadcast_to(r * np.sin(ang), (2, len(ang))),
                      np.broadcast_to(z[:, None], (2, len(ang)))], -1)  # fmt: skip
    return _tube(rings, np.array([0.0, 0.0, -thickness]), np.array([0.0, 0.0, thickness]))


def _build_stellated(spike: float, subdivisions: int):
    # an icosphere whose every face is raised into a three-sided pyramid of height `spike`
    v, f = _icosphere(subdivisions)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    centre = (a + b + c) / 3
    apex = centre / np.linalg.norm(centre, axis=1, keepdims=True) * (np.linalg.norm(centre, axis=1, keepdims=True) + spike)
    k = len(v) + np.arange(len(f))
    faces = np.concatenate(
        [np.stack([f[:, 0], f[:, 1], k], 1), np.stack([f[:, 1], f[:, 2], k], 1), np.stack([f[:, 2], f[:, 0], k], 1)]
    )
    return np.concatenate([v, apex]), faces


_SEGMENTS = _int(32, None, (3, 128), "vertices around the axis")

SHAPE_FAMILIES: dict[str, ShapeFamily] = {
    f.name: f
    for f in [
        ShapeFamily("cube", "primitive", True, False, {}, _build_cube, "axis-aligned cube, 12 triangles"),
        ShapeFamily(
            "sphere", "primitive", True, True,
            {
                "kind": _choice("ico", ("ico", "uv"), ("ico", "uv"), "icosphere or latitude/longitude sphere"),
                "subdivisions": _int(3, None, (0, 5), "icosphere subdivisions (20 * 4**n faces)"),
                "segments": _SEGMENTS,
                "rings": _int(16, None, (2, 64), "latitude bands of the UV sphere"),
            },
            _build_sphere, "unit sphere",
        ),
        ShapeFamily(
            "cylinder", "primitive", True, True,
            {"segments": _SEGMENTS, "height_segments": _int(1, None, (1, 64))},
            _build_cylinder, "capped cylinder, axis Z, as tall as wide before the object's scale",
        ),
        ShapeFamily(
            "cone", "primitive", True, True,
            {
                "top_ratio": _float(0.0, (0.0, 0.5), (0.0, 1.0), "top radius / base radius (0 = pointed cone)"),
                "segments": _SEGMENTS,
                "height_segments": _int(1, None, (1, 64)),
            },
            _build_cone, "capped cone or frustum, axis Z",
        ),
        ShapeFamily(
            "torus", "primitive", True, True,
            {
                "minor_ratio": _float(0.3, (0.15, 0.5), (0.02, 0.95), "tube radius / ring radius"),
                "major_segments": _int(48, None, (3, 128)),
                "minor_segments": _int(20, None, (3, 64)),
            },
            _build_torus, "torus around Z",
        ),
        ShapeFamily(
            "plane", "surface", False, False,
            {"subdivisions": _int(0, None, (0, 63), "cuts per side (0 = one quad, two triangles)")},
            _build_plane, "square [-1, 1]^2 at z = 0, facing +Z (open surface)",
        ),
        ShapeFamily(
            "blob", "procedural", True, True,
            {
                "frequency": _float(1.5, (0.8, 3.0), (0.05, 8.0), "noise frequency on the unit sphere"),
                "amplitude": _float(0.25, (0.1, 0.45), (0.0, 0.8), "radial displacement (relative radius)"),
                "octaves": _int(2, (1, 3), (1, 6), "fractal noise octaves"),
                "noise_seed": _SEED,
                "subdivisions": _int(4, None, (0, 5), "icosphere subdivisions"),
            },
            _build_blob, "icosphere displaced along its radius by fractal gradient noise",
        ),
        ShapeFamily(
            "superquadric", "procedural", True, True,
            {
                "e1": _float(1.0, (0.2, 2.0), (0.1, 4.0), "north-south exponent (<1 boxy, 1 round, >1 pinched)"),
                "e2": _float(1.0, (0.2, 2.0), (0.1, 4.0), "east-west exponent"),
                "segments": _int(40, None, (3, 128)),
                "rings": _int(24, None, (2, 64)),
            },
            _build_superquadric, "superellipsoid",
        ),
        ShapeFamily(
            "rounded_box", "procedural", True, True,
            {
                "radius": _float(0.2, (0.05, 0.5), (0.01, 1.0), "corner radius / half-size"),
                "segments": _int(40, None, (4, 128)),
                "rings": _int(24, None, (2, 64)),
            },
            _build_rounded_box, "cube with rounded edges and corners",
        ),
        ShapeFamily(
            "capsule", "procedural", True, True,
            {
                "length_ratio": _float(1.0, (0.2, 2.0), (0.05, 10.0), "straight length / diameter"),
                "segments": _SEGMENTS,
                "rings": _int(8, None, (2, 32), "latitude bands per hemisphere"),
            },
            _build_capsule, "cylinder with hemispherical ends, axis Z",
        ),
        ShapeFamily(
            "prism", "procedural", True, True,
            {
                "sides": _int(5, (3, 8), (3, 32), "polygon sides (star points when star_ratio < 1)"),
                "star_ratio": _float(1.0, (0.4, 1.0), (0.05, 1.0), "inner vertex radius / regular polygon's"),
                "twist": _float(0.0, (-1.6, 1.6), (-6.3, 6.3), "rotation of the top relative to the bottom, radians"),
                "taper": _float(1.0, (0.3, 1.0), (0.0, 2.0), "top size / bottom size"),
                "bend": _float(0.0, (-1.0, 1.0), (-1.5, 1.5), "bend of the axis, radians over the length"),
                "levels": _int(16, None, (1, 64), "slices along the axis"),
            },
            _build_prism, "polygon or star prism, optionally twisted, tapered and bent",
        ),
        ShapeFamily(
            "lathe", "procedural", True, True,
            {
                "profile_seed": _SEED,
                "waviness": _float(0.2, (0.05, 0.35), (0.0, 0.5), "amplitude of the radius profile's undulation"),
                "segments": _SEGMENTS,
                "rings": _int(24, None, (1, 64), "profile samples"),
            },
            _build_lathe, "vase-like surface of revolution with flat caps, axis Z",
        ),
        # -- held out: only test presets (split = "test") may draw these ------------------------------------
        ShapeFamily(
            "torus_knot", "test", True, True,
            {
                "knot": _choice("2,3", tuple(_KNOTS), tuple(_KNOTS),
                                "(p, q) torus knot: winds p times around Z, q times through the hole"),
                "thickness": _float(0.25, (0.15, 0.3), (0.05, 0.4), "tube radius / ring radius of the core curve (about 2)"),
                "segments": _int(160, None, (16, 512), "rings along the curve"),
                "tube_segments": _int(12, None, (3, 32), "vertices around the tube"),
            },
            _build_torus_knot, "tube along a (p, q) torus knot",
        ),
        ShapeFamily(
            "spring", "test", True, True,
            {
                "turns": _float(3.0, (1.5, 5.0), (0.5, 10.0), "turns of the helix"),
                "pitch": _float(0.8, (0.5, 1.5), (0.1, 4.0), "rise per turn / helix radius"),
                "thickness": _float(0.15, (0.08, 0.22), (0.02, 0.5), "tube radius / helix radius (at most 0.45 pitch)"),
                "segments": _int(32, None, (8, 128), "rings per turn"),
                "tube_segments": _int(10, None, (3, 32), "vertices around the tube"),
            },
            _build_spring, "coil spring: a helical tube with flat end caps, axis Z",
        ),
        ShapeFamily(
            "gear", "test", True, False,
            {
                "teeth": _int(10, (6, 18), (3, 64), "number of teeth"),
                "tooth_depth": _float(0.2, (0.1, 0.3), (0.02, 0.6), "tooth height / outer radius"),
                "thickness": _float(0.3, (0.1, 0.6), (0.02, 2.0), "half-thickness / outer radius"),
            },
            _build_gear, "spur gear with trapezoidal teeth, axis Z, flat shaded",
        ),
        ShapeFamily(
            "stellated", "test", True, False,
            {
                "spike": _float(0.6, (0.3, 1.2), (0.05, 3.0), "pyramid height on each face / sphere radius"),
                "subdivisions": _int(0, (0, 1), (0, 3), "icosphere subdivisions (20 * 4**n spikes)"),
            },
            _build_stellated, "icosahedron (or subdivided icosphere) with a pyramid raised on every face, flat shaded",
        ),
    ]
}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------------


def family(name: str) -> ShapeFamily:
    try:
        return SHAPE_FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown shape family {name!r}: expected one of {', '.join(SHAPE_FAMILIES)}") from None


def families_in_group(*groups: str) -> list[str]:
    return [n for n, f in SHAPE_FAMILIES.items() if f.group in groups]


def resolve_params(family_name: str, params: Mapping | None = None) -> dict:
    """All parameters of a family, defaults filled in, each validated; ValueError names a bad one."""
    fam = family(family_name)
    params = dict(params or {})
    unknown = set(params) - set(fam.params)
    if unknown:
        known = ", ".join(fam.params) or "none"
        raise ValueError(f"shape {family_name!r}: unknown parameter(s) {', '.join(sorted(unknown))} (known: {known})")
    return {name: p.check(family_name, name, params.get(name, p.default)) for name, p in fam.params.items()}


def check_sample_range(family_name: str, param: str, value) -> tuple:
    """Validate a preset's replacement for a parameter's drawn range; return it as a tuple.

    Numbers take [lo, hi] inside the hard limits; 'choice' parameters take a non-empty list of choices.
    """
    fam = family(family_name)
    if param not in fam.params:
        raise ValueError(f"shape {family_name!r} has no parameter {param!r} (known: {', '.join(fam.params) or 'none'})")
    p = fam.params[param]
    if p.kind == "choice":
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"shape {family_name!r} parameter {param!r}: expected a non-empty list of choices")
        return tuple(p.check(family_name, param, c) for c in value)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"shape {family_name!r} parameter {param!r}: expected a range [low, high], got {value!r}")
    lo, hi = (p.check(family_name, param, x) for x in value)
    if lo > hi:
        raise ValueError(f"shape {family_name!r} parameter {param!r}: range [{lo}, {hi}] has low > high")
    return (lo, hi)


def sample_shape_params(family_name: str, rng: np.random.Generator, ranges: Mapping | None = None) -> dict:
    """Draw a family's parameters: numbers uniform in their range (ints inclusive), choices uniformly.

    ``ranges`` replaces drawn ranges per parameter (validated by ``check_sample_range``); a parameter
    without a drawn range that a preset gives one becomes drawn too. Every parameter appears in the result.
    """
    fam = family(family_name)
    ranges = {k: check_sample_range(family_name, k, v) for k, v in (ranges or {}).items()}
    out = {}
    for name, p in fam.params.items():  # a fixed order of draws: the catalogue's order
        rng_ = ranges.get(name, p.sample)
        if rng_ is None:
            out[name] = p.default
        elif p.kind == "choice":
            out[name] = rng_[int(rng.integers(len(rng_)))]
        elif p.kind == "int":
            out[name] = int(rng.integers(rng_[0], rng_[1], endpoint=True))
        else:
            out[name] = float(rng.uniform(rng_[0], rng_[1]))
    return out


def build_mesh(shape) -> tuple[np.ndarray, np.ndarray]:
    """(vertices float32 (V, 3), faces int32 (F, 3)) of a ShapeSpec (or any object with family/params).

    The mesh fits [-1, 1]^3, centred on its bounding box, with its largest half-extent exactly 1;
    triangles are counter-clockwise seen from outside (for 'plane': seen from +Z). The family
    'mesh_file' (params {'path', 'sha256'}) loads a catalogue file instead (``catalogue.load_mesh_arrays``),
    normalised the same way, keeping the file's own winding.
    """
    if shape.family == "mesh_file":  # a catalogue file (assets/catalogue.py): params {'path', 'sha256'}
        from .catalogue import load_mesh_arrays

        params = dict(shape.params or {})
        if "path" not in params:
            raise ValueError("shape 'mesh_file' needs params['path'] (and 'sha256' to check the content)")
        return load_mesh_arrays(params["path"], params.get("sha256"))
    fam = family(shape.family)
    params = resolve_params(shape.family, shape.params)
    v, f = fam.builder(**params)
    if len(f) > MAX_TRIANGLES:
        raise ValueError(f"shape {shape.family!r} with {params}: {len(f)} triangles, more than {MAX_TRIANGLES}")
    return _fit_unit_cube(np.asarray(v, float)).astype(np.float32), np.ascontiguousarray(f, dtype=np.int32)
