"""Backgrounds. Each returns (objects, far_depth) where far_depth(xn, yn) is the planar depth at which
the ray through image-plane point (xn, yn) = (x / depth, y / depth) meets the background."""

from __future__ import annotations

import math

import numpy as np

from ..geometry import axis_rotation, matrix_to_euler_xyz, rotation_with_z
from ..scene import MaterialSpec, ObjectSpec, ShapeSpec
from .assets import AssetDraws
from .draws import vec
from .materials import sample_material


def background_plane(index: int, centre, rot: np.ndarray, half, material: MaterialSpec) -> ObjectSpec:
    """One flat background plane (wall, floor, backdrop) of half-extents ``half`` at ``centre``."""
    return ObjectSpec(
        name=f"background_{index}",
        shape=ShapeSpec("plane", {"subdivisions": 0}),
        location=vec(centre),
        rotation=matrix_to_euler_xyz(rot),
        scale=[float(half[0]), float(half[1]), 1.0],
        material=material,
        role="background",
        smooth=False,
    )


def sample_backdrop(rng: np.random.Generator, mat_rng: np.random.Generator, p: dict, assets: AssetDraws, tx: float, ty: float):
    """One large plane across the far end of the view, tilted by up to background_tilt_deg."""
    zmin, zmax = p["depth_range"]
    corners = np.array([[sx * tx, sy * ty, -1.0] for sx in (-1, 1) for sy in (-1, 1)])
    corner_radius = math.hypot(tx, ty)
    # Keep every corner ray well away from grazing the plane: n . ray >= 0.4 * cos(tilt) at the corners.
    max_tilt = math.atan(0.6 / corner_radius)
    tilt = min(math.radians(rng.uniform(*p["background_tilt_deg"])), max_tilt)
    azimuth = rng.uniform(0.0, 2 * math.pi)
    spin = rng.uniform(0.0, 2 * math.pi)
    far = rng.uniform(*p["background_depth"]) * zmax
    while True:
        normal = np.array([math.sin(tilt) * math.cos(azimuth), math.sin(tilt) * math.sin(azimuth), math.cos(tilt)])
        # Plane: normal . X = -dist, facing the camera (+Z side); along the ray (xn, yn, -1) it lies at
        # planar depth t = dist / (n . (-ray)), largest at a corner of the view, smallest at the opposite one.
        facing = -(corners @ normal)  # n . (-ray) > 0 for every corner ray
        dist = far * facing.min()  # the farthest corner lies at depth `far`
        if dist / facing.max() >= 1.05 * zmin or tilt < 1e-3:  # the nearest corner stays in the depth range
            break
        tilt *= 0.8
    rot = rotation_with_z(normal, spin)
    centre = np.array([0.0, 0.0, -dist / normal[2]])  # where the optical axis meets the plane
    hits = corners * (dist / facing)[:, None]
    local = (hits - centre) @ rot  # plane coordinates of the corner hits (third ~ 0)
    half = 1.15 * np.abs(local[:, :2]).max(axis=0)  # cover the view with a margin
    width = 2 * tx * far  # the view's width at the backdrop's farthest point, for texture frequency
    size = 2 * float(half.max())
    material = sample_material(mat_rng, p, assets, width, size, p["background_texture_frequency"], "background_0_material")
    obj = background_plane(0, centre, rot, half, material)

    def far_depth(xn: float, yn: float) -> float:
        return float(dist / (normal[2] - normal[0] * xn - normal[1] * yn))

    return [obj], far_depth


# Rooms, corners and floors are sets of planes around the camera: planes n_i . X = c_i (camera
# coordinates, unit normals pointing away from the camera, c_i > 0) that enclose it on every side the
# view can see. The ray through image-plane point x = (xn, yn) meets plane i at planar depth
# 1 / f_i(x) with f_i(x) = (n_i . (xn, yn, -1)) / c_i, where f_i > 0; the nearest plane is the one with the
# largest f_i, so the inverse depth of the room, F(x) = max_i f_i(x), is a convex piecewise-linear function
# of x. Its minimum over the view rectangle (the farthest point in view) is at a vertex of the pieces
# (a corner of the view, where two pieces meet on its border, or where three meet inside), which makes the
# guarantee exact: every ray hits a surface at depth <= 1 / min F. Its maximum (the nearest point) is at
# a corner of the view. Each plane becomes a finite quad covering the part of it that is in view.


class NoFit(ValueError):
    """No wall layout fits the preset's depth range."""


def _inverse_depth_coefficients(normals: np.ndarray, dists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A (K, 2), b (K,)) with f_i(x) = A_i . x + b_i."""
    return normals[:, :2] / dists[:, None], -normals[:, 2] / dists


def _view_corners(tx: float, ty: float) -> np.ndarray:
    return np.array([[-tx, -ty], [tx, -ty], [tx, ty], [-tx, ty]])


def _min_inverse_depth(a: np.ndarray, b: np.ndarray, tx: float, ty: float) -> float:
    """min over the view rectangle of max_i (a_i . x + b_i): exact, by enumerating candidate vertices."""
    eps = 1e-12
    cands = [c for c in _view_corners(tx, ty)]
    k = len(b)
    for i in range(k):
        for j in range(i + 1, k):
            da, db = a[i] - a[j], b[i] - b[j]  # the line da . x + db = 0 where f_i = f_j
            for axis, bound, other in ((0, tx, ty), (1, ty, tx)):
                for v in (-bound, bound):  # its crossings of the view's four edges
                    if abs(da[1 - axis]) > eps:
                        w = -(db + da[axis] * v) / da[1 - axis]
                        if abs(w) <= other * (1 + 1e-9):
                            pt = [0.0, 0.0]
                            pt[axis], pt[1 - axis] = v, w
                            cands.append(np.array(pt))
            for m in range(j + 1, k):  # where three pieces meet
                mat = np.array([a[i] - a[j], a[i] - a[m]])
                if abs(np.linalg.det(mat)) > eps:
                    pt = np.linalg.solve(mat, -np.array([b[i] - b[j], b[i] - b[m]]))
                    if abs(pt[0]) <= tx * (1 + 1e-9) and abs(pt[1]) <= ty * (1 + 1e-9):
                        cands.append(pt)
    pts = np.array(cands)
    return float((pts @ a.T + b).max(axis=1).min())


def _clip_polygon(poly: np.ndarray, a: np.ndarray, b: float) -> np.ndarray:
    """The part of a convex polygon (K, 2) where a . x + b >= 0 (Sutherland-Hodgman, one half-plane)."""
    if len(poly) == 0:
        return poly
    out = []
    vals = poly @ a + b
    for k in range(len(poly)):
        p0, p1, v0, v1 = poly[k], poly[(k + 1) % len(poly)], vals[k], vals[(k + 1) % len(poly)]
        if v0 >= 0:
            out.append(p0)
        if (v0 >= 0) != (v1 >= 0):
            out.append(p0 + (p1 - p0) * (v0 / (v0 - v1)))
    return np.array(out).reshape(-1, 2)


def _polygon_area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _camera_in_room(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation from camera to room coordinates (room: +Y up, the camera at the origin): yaw about Y,
    then pitch about the camera's X (negative looks down), then roll about its view axis."""
    return axis_rotation("y", yaw) @ axis_rotation("x", pitch) @ axis_rotation("z", roll)


def _room_layout(rng: np.random.Generator, p: dict, kind: str, squeeze: float = 1.0):
    """Plane names, unit normals in camera coordinates and distances around the camera.

    ``squeeze`` < 1 (later attempts) flattens the view (smaller yaw and pitch, a nearer back wall behind a
    floor) so that a shallow depth range can still hold the layout."""
    yaw = math.radians(rng.uniform(*p["room_yaw_deg"])) * (1 if rng.random() < 0.5 else -1) * squeeze
    pitch = math.radians(rng.uniform(*p["room_pitch_deg"])) * squeeze
    roll = math.radians(rng.uniform(-3.0, 3.0))
    if kind == "room":  # a box room; unit: its height
        h = rng.uniform(0.35, 0.65)
        width, depth = rng.uniform(1.5, 3.0), rng.uniform(1.5, 3.5)
        left = rng.uniform(0.2, 0.8) * width
        back = rng.uniform(0.55, 0.9) * depth
        dists = {"floor": h, "ceiling": 1 - h, "left": left, "right": width - left, "back": back, "front": depth - back}
    elif kind == "corner":  # two walls meeting at a vertical edge in view, and the floor
        h = rng.uniform(0.3, 0.7)
        side = 1 if rng.random() < 0.5 else -1  # the corner wall on the right (+1) or the left (-1)
        back, near_side = rng.uniform(0.8, 2.0), rng.uniform(0.8, 2.0)
        far_side = rng.uniform(1.5, 3.0)
        dists = {"floor": h, "ceiling": 1.5 - h, "back": back, "front": 1.0,
                 "right": near_side if side > 0 else far_side, "left": far_side if side > 0 else near_side}  # fmt: skip
        # aim at the corner (+-side wall, back wall), give or take the drawn yaw's spread around it
        to_corner = math.atan2(-side * near_side, back)
        spread = math.radians(p["room_yaw_deg"][1] - p["room_yaw_deg"][0]) / 4
        yaw = to_corner + float(rng.uniform(-spread, spread)) * squeeze
    else:  # 'floor': a floor receding far away, cut by a distant back wall; unit: the camera's height
        back = 1.5 + (rng.uniform(5.0, 14.0) - 1.5) * squeeze**2
        dists = {"floor": 1.0, "ceiling": 3 * back, "back": back, "front": back,
                 "left": rng.uniform(0.5, 1.5) * back, "right": rng.uniform(0.5, 1.5) * back}  # fmt: skip
    normals = {
        "floor": (0, -1, 0),
        "ceiling": (0, 1, 0),
        "left": (-1, 0, 0),
        "right": (1, 0, 0),
        "back": (0, 0, -1),
        "front": (0, 0, 1),
    }
    names = list(normals)
    rot = _camera_in_room(yaw, pitch, roll)
    n_cam = np.array([normals[k] for k in names], float) @ rot  # n_cam = rot^T n_room, row-wise
    return names, n_cam, np.array([dists[k] for k in names], float)


def sample_room(
    rng: np.random.Generator, mat_rng: np.random.Generator, p: dict, assets: AssetDraws, tx: float, ty: float, kind: str
):
    """Large planar surfaces around the camera at oblique angles: a room, a corner, or a floor receding
    towards a far back wall. Every ray in view meets one of them inside the depth range (see above)."""
    zmin, zmax = p["depth_range"]
    for attempt in range(100):
        names, normals, dists = _room_layout(rng, p, kind, 0.96 ** max(0, attempt - 10))
        a, b = _inverse_depth_coefficients(normals, dists)
        f_min = _min_inverse_depth(a, b, tx, ty)
        if not f_min > 0:
            continue  # some ray in view escapes (cannot happen for a closed box; kept as a guard)
        far = rng.uniform(*p["background_depth"]) * zmax
        dists = dists * far * f_min  # scaled so that the farthest point in view lies at depth `far`
        a, b = _inverse_depth_coefficients(normals, dists)
        nearest = 1.0 / float((_view_corners(tx, ty) @ a.T + b).max())
        if nearest >= 1.05 * zmin:
            break
    else:  # a depth range too shallow for oblique walls: sample_scene falls back to the backdrop
        raise NoFit(f"background {kind!r}: no layout fits between depth {zmin} and {zmax} m")
    objects = []
    rect = _view_corners(tx, ty)
    for i, name in enumerate(names):
        poly = rect
        for j in range(len(names)):
            if j != i:
                poly = _clip_polygon(poly, a[i] - a[j], float(b[i] - b[j]))
        if _polygon_area(poly) < 1e-6 * 4 * tx * ty:
            continue  # not in view
        depth = 1.0 / (poly @ a[i] + b[i])
        hits = np.c_[poly, -np.ones(len(poly))] * depth[:, None]  # the visible part's corners, in 3-D
        rot = rotation_with_z(-normals[i])  # local +Z faces the camera
        foot = normals[i] * dists[i]  # the plane's point nearest the camera
        local = (hits - foot) @ rot[:, :2]
        lo, hi = local.min(axis=0), local.max(axis=0)
        margin = 0.05 * float((hi - lo).max()) + 0.01 * zmax  # overlap at the room's edges: no cracks
        centre, half = (lo + hi) / 2, (hi - lo) / 2 + margin
        index = len(objects)
        size = 2 * float(half.max())
        material = sample_material(
            mat_rng,
            p,
            assets,
            2 * tx * float(depth.max()),
            size,
            p["background_texture_frequency"],
            f"background_{index}_material",
        )
        objects.append(background_plane(index, foot + rot[:, :2] @ centre, rot, half, material))

    def far_depth(xn: float, yn: float) -> float:
        return float(1.0 / (a @ np.array([xn, yn]) + b).max())

    return objects, far_depth


BACKGROUNDS = {
    "backdrop": sample_backdrop,
    "room": lambda *args: sample_room(*args, "room"),
    "corner": lambda *args: sample_room(*args, "corner"),
    "floor": lambda *args: sample_room(*args, "floor"),
}
