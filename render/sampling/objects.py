"""Objects: shapes scattered in the view, each fitted between the near limit and the background."""

from __future__ import annotations

import math

import numpy as np

from focalstack.assets import MESH_FILE_FAMILY, SHAPE_FAMILIES, sample_shape_params

from ..geometry import matrix_to_euler_xyz, random_rotation, rotation_with_z
from ..scene import ObjectSpec, ShapeSpec
from .assets import AssetDraws
from .draws import Streams, depth_at, int_in, log_uniform, vec
from .materials import sample_material, sample_mirror_material


def fit_in_depth(p: dict, tx: float, far: float, rot: np.ndarray, stretch: np.ndarray, size: float, depth_u: float):
    """(depth, scale) of an object centred on a ray whose background lies at ``far``.

    The mesh lies in its box [-s, s]^3; rotated, its depth extent is +- sum_j |R[2, j]| s_j. With
    s = size * tx * depth * stretch, that is +- c * depth: keep depth - c * depth >= zmin, and the centre
    plus half that extent in front of the background; shrink the object where it cannot fit.
    """
    zmin = p["depth_range"][0]
    for _ in range(60):
        c = float(np.abs(rot[2]) @ stretch) * size * tx
        lo = zmin / (1.0 - c) if c < 1 else math.inf
        hi = far / (1.0 + 0.5 * c)
        if lo <= hi:
            break
        size *= 0.8  # too large to fit between the near limit and the background: shrink
    else:
        raise ValueError(f"cannot fit an object between depth {zmin} m and the background at {far:.3g} m")
    z = depth_at(depth_u, lo, hi, p["depth_distribution"])
    return z, stretch * size * tx * z


def sample_objects(streams: Streams, p: dict, assets: AssetDraws, tx: float, ty: float, far_depth) -> list[ObjectSpec]:
    """The scene's objects: shapes (procedural or catalogue meshes), poses, sizes and materials."""
    rng, mat_rng = streams.objects, streams.object_materials
    families = list(p["shape_families"])
    n = int_in(rng, p["objects"])
    log_stretch = math.log(p["object_stretch"])
    out = []
    for i in range(n):
        name = f"object_{i:03d}"
        if p["mesh_file_probability"] > 0 and streams.meshes.random() < p["mesh_file_probability"]:
            asset = assets.pick(streams.meshes, "mesh", used_by=name)
            fam, params, smooth = MESH_FILE_FAMILY, {"path": asset.path, "sha256": asset.sha256}, True
        else:
            fam = families[int(rng.integers(len(families)))]
            params = sample_shape_params(fam, rng, p["shape_params"].get(fam))
            smooth = SHAPE_FAMILIES[fam].smooth
        rot = random_rotation(rng)
        stretch = np.exp(rng.uniform(-log_stretch, log_stretch, 3))
        stretch /= stretch.max()  # the largest axis keeps the drawn size
        size = log_uniform(rng, *p["object_size"])  # largest dimension / frustum width
        xn, yn = rng.uniform(-tx, tx), rng.uniform(-ty, ty)  # centre on the ray through (xn, yn) in view
        depth_u = rng.random()
        z, scale = fit_in_depth(p, tx, far_depth(xn, yn), rot, stretch, size, depth_u)
        if p["mirror_probability"] > 0 and streams.mirrors.random() < p["mirror_probability"]:
            material = sample_mirror_material(mat_rng, f"{name}_material")
        else:
            material = sample_material(
                mat_rng, p, assets, 2 * tx * z, 2 * float(scale.max()), p["texture_frequency"], f"{name}_material"
            )
        out.append(
            ObjectSpec(
                name=name,
                shape=ShapeSpec(fam, params),
                location=[float(xn * z), float(yn * z), float(-z)],
                rotation=matrix_to_euler_xyz(rot),
                scale=vec(scale),
                material=material,
                role="object",
                smooth=smooth,
            )
        )
    return out


def sample_mirror_panels(rng, p: dict, tx: float, ty: float, far_depth) -> list[ObjectSpec]:
    """Thin flat mirrors (a flattened cube), turned 20-55 degrees away from facing the camera so that
    they show the scene rather than the space behind the camera."""
    out = []
    for i in range(int_in(rng, p["mirror_panels"])):
        tilt, azimuth = math.radians(rng.uniform(20.0, 55.0)), rng.uniform(0.0, 2 * math.pi)
        normal = [math.sin(tilt) * math.cos(azimuth), math.sin(tilt) * math.sin(azimuth), math.cos(tilt)]
        rot = rotation_with_z(normal, rng.uniform(0.0, 2 * math.pi))
        stretch = np.array([1.0, rng.uniform(0.5, 1.0), 0.03])
        size = rng.uniform(0.25, 0.6)
        xn, yn = rng.uniform(-0.8 * tx, 0.8 * tx), rng.uniform(-0.8 * ty, 0.8 * ty)
        z, scale = fit_in_depth(p, tx, far_depth(xn, yn), rot, stretch, size, rng.random())
        name = f"mirror_{i:02d}"
        out.append(
            ObjectSpec(
                name=name,
                shape=ShapeSpec("cube"),
                location=[float(xn * z), float(yn * z), float(-z)],
                rotation=matrix_to_euler_xyz(rot),
                scale=vec(scale),
                material=sample_mirror_material(rng, f"{name}_material"),
                role="object",
                smooth=False,
            )
        )
    return out
