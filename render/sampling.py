"""Scene sampling: a seed and a render configuration -> a plain-data ``SceneDescription``.

Pure Python and numpy, no Blender. Every random draw comes from the ``numpy.random.Generator`` that
``sample_scene`` creates from its seed (split into independent streams for objects, background,
materials and lighting), so the same seed and configuration give the same description, byte for byte.

Geometry conventions (``scene.py``): the camera sits at the origin looking down -Z, +Y up, horizontal
sensor fit. A point at planar depth z is in view when |x| <= z * tx and |y| <= z * ty, with
tx = sensor_width / (2 * focal_length) and ty = tx * height / width.

The distribution is set by the preset's ``[scene]`` table; ``SCENE_DEFAULTS`` lists every key with its
default (so ``{}`` is valid) and ``validate_scene_params`` rejects unknown keys and bad values.

Backgrounds: a tilted 'backdrop' plane, or planes around the camera seen obliquely ('room', 'corner',
'floor' cut by a far back wall); for each, every ray in view meets a surface inside the depth range.
Held-out test sets are disjoint from training by construction: shape families of the assets' 'test'
group and the lighting in ``TEST_ONLY`` are refused to presets with ``split = "train"``, and asset files
(meshes, texture images, environment maps from ``focalstack.assets.catalogue``) are drawn only from the
preset's own split, assigned by content hash; ``preset_signature`` lists what a preset can draw, by axis.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Mapping

import numpy as np

from focalstack.assets import (
    MESH_FILE_FAMILY,
    SHAPE_FAMILIES,
    AssetCatalogue,
    AssetFile,
    cached_catalogue,
    check_sample_range,
    families_in_group,
    sample_shape_params,
)
from focalstack.dataset.colour import srgb_to_linear

from .scene import CameraSpec, LightSpec, MaterialSpec, ObjectSpec, SceneDescription, ShapeSpec, TextureLayer, WorldSpec

SAMPLER_VERSION = 1

TEXTURE_KINDS = ("noise", "noise_ridged", "voronoi", "wave", "checker", "brick", "magic", "gradient")
LIGHT_KINDS = ("area", "point", "sun", "spot")
LIGHT_COLOURS = ("blackbody", "hue")  # colour temperature on the Planckian locus, or any hue
WORLD_KINDS = ("gradient", "sky", "hosek_sky")  # 'sky' is Preetham's model, 'hosek_sky' Hosek-Wilkie's
BACKGROUND_KINDS = ("backdrop", "room", "corner", "floor")
DEPTH_DISTRIBUTIONS = ("uniform", "log_uniform", "inverse")
SPLITS = ("train", "test")
FOCUS_SAMPLING = ("fixed", "random")
FOCUS_ORDERS = ("sorted", "random")

# Held out of training by construction: a preset with split = "train" may not use these (validation
# rejects it), so the test presets that do see lighting and shapes no training preset can produce. Asset
# files are split by content hash (focalstack.assets.catalogue): each split draws only its own files.
TEST_ONLY = {
    "shape_families": tuple(families_in_group("test")),
    "light_kinds": ("spot",),
    "light_colour": ("hue",),
    "world_kinds": ("hosek_sky",),
}
# Material keys a preset may set differently for backgrounds (walls, floors, backdrops) in its
# background_material table; what it leaves out comes from the objects' values.
BACKGROUND_MATERIAL_KEYS = (
    "texture_kinds", "texture_layers", "texture_contrast", "texture_colours", "roughness", "metallic_probability",
    "metallic_roughness", "specular", "bump_probability", "saturation", "value", "image_texture_probability",
)  # fmt: skip

# Pattern periods per unit of a texture node's input vector at Scale = 1 (Blender's own constants):
# noise and voronoi have about one feature per unit, the checker one cell, the wave multiplies by 20 before
# its sine (period 2 pi / 20), bricks are 0.5 wide, magic takes sin(5 * (x + y + z)). TextureLayer.scale is
# the factor the renderer applies to metric object coordinates, so scale = periods per metre / this.
TEXTURE_BASE_FREQUENCY = {
    "noise": 1.0,
    "noise_ridged": 1.0,
    "voronoi": 1.0,
    "wave": 3.0,
    "checker": 1.0,
    "brick": 2.0,
    "magic": 1.4,
    "gradient": 1.0,
}

# Where each texture's factor output mostly lies (about its 3rd to 97th percentile over the parameters
# drawn here, measured with Cycles 5.0 on fronto-parallel planes); TextureLayer.factor_range stretches
# this to [0, 1]. Voronoi depends on its feature and distance metric.
TEXTURE_FACTOR_RANGE = {
    "noise": (0.35, 0.65),
    "noise_ridged": (0.0, 0.28),
    "wave": (0.0, 1.0),
    "checker": (0.0, 1.0),
    "brick": (0.0, 1.0),
    "magic": (0.2, 0.85),
    "gradient": (0.0, 1.0),
    ("voronoi", "F1", "EUCLIDEAN"): (0.16, 0.48),
    ("voronoi", "F1", "MANHATTAN"): (0.15, 0.43),
    ("voronoi", "F1", "CHEBYCHEV"): (0.25, 0.67),
    ("voronoi", "SMOOTH_F1", "EUCLIDEAN"): (0.15, 0.40),
    ("voronoi", "SMOOTH_F1", "MANHATTAN"): (0.14, 0.37),
    ("voronoi", "SMOOTH_F1", "CHEBYCHEV"): (0.20, 0.48),
    ("voronoi", "F2", "EUCLIDEAN"): (0.16, 0.29),
    ("voronoi", "F2", "MANHATTAN"): (0.14, 0.26),
    ("voronoi", "F2", "CHEBYCHEV"): (0.20, 0.42),
    ("voronoi", "DISTANCE_TO_EDGE", "EUCLIDEAN"): (0.0, 0.35),
    ("voronoi", "DISTANCE_TO_EDGE", "MANHATTAN"): (0.0, 0.32),
    ("voronoi", "DISTANCE_TO_EDGE", "CHEBYCHEV"): (0.0, 0.35),
}


def texture_factor_range(kind: str, params: Mapping) -> list[float]:
    key = (kind, params.get("feature"), params.get("distance")) if kind == "voronoi" else kind
    return [float(x) for x in TEXTURE_FACTOR_RANGE[key]]


SCENE_DEFAULTS: dict = {
    # geometry
    "depth_range": [0.1, 3.0],  # metres: every visible surface lies inside
    "depth_distribution": "log_uniform",  # of object centres between their nearest and farthest allowed depth
    "objects": [20, 30],  # object count, inclusive
    "object_size": [0.1, 0.5],  # largest dimension / frustum width at the object's depth (log-uniform)
    "object_stretch": 1.5,  # each axis scaled by a factor drawn log-uniform in [1/s, s]
    "shape_families": families_in_group("primitive", "procedural"),
    "shape_params": {},  # {family: {param: [low, high] or [choices...]}}: replaces the catalogue's ranges
    "background": "backdrop",  # a kind, or a list of kinds to draw one from per scene (BACKGROUND_KINDS)
    "background_tilt_deg": [0.0, 20.0],  # angle between the backdrop's normal and the optical axis
    "background_depth": [0.85, 1.0],  # farthest background point in view / depth_range max
    "room_yaw_deg": [10.0, 50.0],  # room/corner/floor: angle between the view and the back wall's normal
    "room_pitch_deg": [-30.0, 10.0],  # room/corner/floor: camera pitch (negative looks down)
    "mirror_panels": [0, 0],  # thin flat mirrors among the objects, inclusive
    # materials
    "texture_kinds": list(TEXTURE_KINDS),
    "texture_layers": [1, 3],  # per material, inclusive
    "texture_frequency": [2.0, 100.0],  # pattern periods per view width at the object's depth (log-uniform)
    "background_texture_frequency": [2.0, 100.0],  # the same for backgrounds, at their farthest depth
    "texture_contrast": [0.3, 0.8],  # difference in HSV value (sRGB) between a layer's two colours
    "texture_colours": "independent",  # a layer's two colours: 'independent' hues, or 'tone' (one hue)
    "roughness": [0.05, 1.0],
    "metallic_probability": 0.15,
    "metallic_roughness": [0.05, 1.0],  # roughness of metallic materials
    "mirror_probability": 0.0,  # per object: a mirror (metallic 1, roughness <= 0.02, untextured)
    "specular": [0.2, 0.8],  # Principled 'Specular IOR Level'
    "bump_probability": 0.3,
    "saturation": [0.0, 1.0],  # of base and texture colours (HSV, in sRGB)
    "value": [0.15, 0.95],  # brightness of base and texture colours (HSV value, in sRGB)
    "background_material": {},  # replacements of the keys above for backgrounds (BACKGROUND_MATERIAL_KEYS)
    # lighting
    "lights": [1, 4],  # inclusive
    "light_kinds": ["area", "point", "sun"],
    "light_colour": "blackbody",
    "light_temperature_k": [2500.0, 9000.0],
    "light_distance": [1.0, 2.0],  # point/area light distance from the camera / depth_range max
    "irradiance": [3.0, 8.0],  # W/m^2 all lights deliver together at the reference point (log-uniform)
    "world_kinds": ["gradient", "sky"],
    "world_strength": [0.15, 0.5],  # radiance of the environment (gradient colours have max channel 1)
    "exposure": 0.0,  # stops: every light and the world are multiplied by 2 ** exposure
    # camera focus
    "focus_sampling": "fixed",  # 'fixed': the camera's focus_distances; 'random': drawn per scene
    "focus_range": [0.1, 1.5],  # metres, for 'random' (as many distances as the camera's list holds)
    "focus_distribution": "inverse",  # for 'random': uniform, log_uniform or inverse (uniform in dioptres)
    "focus_order": "sorted",  # for 'random': 'sorted' (near to far) or 'random'
    # 'all', or [low, high]: slices per scene drawn from that range (at most the camera's count); the file
    # keeps the camera's count per scene, repeating a shorter stack's last slice (dataset 'stack_size')
    "stack_size": "all",
    # held-out splits and asset files
    "split": "train",  # which asset files (by content hash) and whether TEST_ONLY items are allowed
    "seed_salt": 0,  # mixed into every scene's seed: presets with different salts never share a scene
    "asset_dirs": [],  # user folders of meshes, textures and environment maps (the CLI's --assets)
    "bundled_assets": True,  # include the package's own asset files (assets/data)
    "mesh_file_probability": 0.0,  # per object: a catalogue mesh instead of a procedural family
    "image_texture_probability": 0.0,  # per texture layer: a catalogue image instead of a procedural kind
    "envmap_probability": 0.0,  # per scene: a catalogue environment map as the world
}


# --------------------------------------------------------------------------------------------------
# Validation of the [scene] table
# --------------------------------------------------------------------------------------------------


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _range(lo: float, hi: float, *, integer: bool = False, positive_low: bool = False) -> Callable:
    kind = "integers" if integer else "numbers"

    def check(key, value):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(f"{key} = {value!r}: expected [low, high], two {kind}")
        for x in value:
            if not _is_number(x) or (integer and int(x) != x):
                raise ValueError(f"{key} = {value!r}: expected two {kind}")
        a, b = value
        if not lo <= a <= b <= hi:
            raise ValueError(f"{key} = {value!r}: expected {lo} <= low <= high <= {hi}")
        if positive_low and not a > 0:
            raise ValueError(f"{key} = {value!r}: expected low > 0")

    return check


def _number(lo: float, hi: float) -> Callable:
    def check(key, value):
        if not _is_number(value) or not lo <= value <= hi:
            raise ValueError(f"{key} = {value!r}: expected a number in [{lo}, {hi}]")

    return check


def _names(allowed) -> Callable:
    def check(key, value):
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"{key} = {value!r}: expected a non-empty list from {', '.join(allowed)}")
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(f"{key}: unknown {', '.join(map(repr, bad))}; expected names from {', '.join(allowed)}")
        if len(set(value)) != len(value):
            raise ValueError(f"{key} = {value!r}: names repeat")

    return check


def _choice(allowed) -> Callable:
    def check(key, value):
        if value not in allowed:
            raise ValueError(f"{key} = {value!r}: expected one of {', '.join(map(repr, allowed))}")

    return check


def _kinds(allowed) -> Callable:
    """One name, or a non-empty list of names to draw from."""
    names = _names(allowed)

    def check(key, value):
        if isinstance(value, str):
            _choice(allowed)(key, value)
        else:
            names(key, value)

    return check


def _integer(lo: int, hi: int) -> Callable:
    def check(key, value):
        if not _is_number(value) or int(value) != value or not lo <= value <= hi:
            raise ValueError(f"{key} = {value!r}: expected an integer in [{lo}, {hi}]")

    return check


def _boolean(key, value):
    if not isinstance(value, bool):
        raise ValueError(f"{key} = {value!r}: expected true or false")


def _folders(key, value):
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key} = {value!r}: expected a list of folder paths")


def _background_material(key, value):
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} = {value!r}: expected a table of material keys")
    for k, v in value.items():
        if k not in BACKGROUND_MATERIAL_KEYS:
            raise ValueError(f"{key}: unknown key {k!r}; expected some of {', '.join(BACKGROUND_MATERIAL_KEYS)}")
        _CHECKS[k](f"{key}.{k}", v)


def _shape_params(key, value):
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} = {value!r}: expected a table {{family = {{param = [low, high]}}}}")
    for fam, ranges in value.items():
        if fam not in SHAPE_FAMILIES:
            raise ValueError(f"{key}: unknown shape family {fam!r}; expected one of {', '.join(SHAPE_FAMILIES)}")
        if not isinstance(ranges, Mapping):
            raise ValueError(f"{key}.{fam} = {ranges!r}: expected a table {{param = [low, high]}}")
        for param, r in ranges.items():
            try:
                check_sample_range(fam, param, r)
            except ValueError as exc:
                raise ValueError(f"{key}.{fam}: {exc}") from None


_CHECKS: dict[str, Callable] = {
    "depth_range": _range(0.0, 1e6, positive_low=True),
    "depth_distribution": _choice(DEPTH_DISTRIBUTIONS),
    "objects": _range(0, 1000, integer=True),
    "object_size": _range(0.0, 1.0, positive_low=True),
    "object_stretch": _number(1.0, 10.0),
    "shape_families": _names(tuple(SHAPE_FAMILIES)),
    "shape_params": _shape_params,
    "background": _kinds(BACKGROUND_KINDS),
    "background_tilt_deg": _range(0.0, 60.0),
    "background_depth": _range(0.0, 1.0, positive_low=True),
    "room_yaw_deg": _range(0.0, 60.0),
    "room_pitch_deg": _range(-45.0, 45.0),
    "mirror_panels": _range(0, 16, integer=True),
    "texture_kinds": _names(TEXTURE_KINDS),
    "texture_layers": _range(0, 8, integer=True),
    "texture_frequency": _range(0.0, 1e4, positive_low=True),
    "background_texture_frequency": _range(0.0, 1e4, positive_low=True),
    "roughness": _range(0.0, 1.0),
    "metallic_probability": _number(0.0, 1.0),
    "metallic_roughness": _range(0.0, 1.0),
    "mirror_probability": _number(0.0, 1.0),
    "background_material": _background_material,
    "specular": _range(0.0, 1.0),
    "bump_probability": _number(0.0, 1.0),
    "texture_contrast": _range(0.0, 1.0),
    "texture_colours": _choice(("independent", "tone")),
    "saturation": _range(0.0, 1.0),
    "value": _range(0.0, 1.0),
    "lights": _range(0, 16, integer=True),
    "light_kinds": _names(LIGHT_KINDS),
    "light_colour": _choice(LIGHT_COLOURS),
    "light_temperature_k": _range(1667.0, 25000.0),
    "light_distance": _range(0.0, 100.0, positive_low=True),
    "irradiance": _range(0.0, 1e6, positive_low=True),
    "world_kinds": _names(WORLD_KINDS),
    "world_strength": _range(0.0, 1e3),
    "exposure": _number(-20.0, 20.0),
    "focus_sampling": _choice(FOCUS_SAMPLING),
    "focus_range": _range(0.0, 1e6, positive_low=True),
    "focus_distribution": _choice(DEPTH_DISTRIBUTIONS),
    "focus_order": _choice(FOCUS_ORDERS),
    "stack_size": lambda key, value: None if value == "all" else _range(1, 1000, integer=True)(key, value),
    "split": _choice(SPLITS),
    "seed_salt": _integer(0, 2**63 - 1),
    "asset_dirs": _folders,
    "bundled_assets": _boolean,
    "mesh_file_probability": _number(0.0, 1.0),
    "image_texture_probability": _number(0.0, 1.0),
    "envmap_probability": _number(0.0, 1.0),
}
assert set(_CHECKS) == set(SCENE_DEFAULTS)


def validate_scene_params(params: Mapping) -> None:
    """Raise ValueError naming the first unknown key or bad value of a preset's [scene] table."""
    if not isinstance(params, Mapping):
        raise ValueError(f"[scene] = {params!r}: expected a table")
    unknown = sorted(set(params) - set(SCENE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(SCENE_DEFAULTS)}")
    for key, value in params.items():
        _CHECKS[key](key, value)
    p = {**SCENE_DEFAULTS, **params}
    zmin, zmax = p["depth_range"]
    if not zmax > zmin:
        raise ValueError(f"depth_range = {p['depth_range']!r}: expected low < high")
    unused = sorted(set(p["shape_params"]) - set(p["shape_families"]))
    if unused:
        raise ValueError(f"shape_params names family(ies) {', '.join(unused)} that shape_families does not use")
    if p["background_depth"][0] * zmax <= zmin:
        raise ValueError(
            f"background_depth = {p['background_depth']!r}: the backdrop would come nearer than depth_range's low end"
        )
    if p["split"] == "train":
        for key, reserved in TEST_ONLY.items():
            used = [p[key]] if isinstance(p[key], str) else list(p[key])
            held = [v for v in used if v in reserved]
            if held:
                raise ValueError(
                    f"{key}: {', '.join(map(repr, held))} is reserved for held-out test presets; "
                    'a preset with split = "train" may not use it (set split = "test")'
                )
    _check_assets(p)


def asset_catalogue(p: Mapping) -> AssetCatalogue | None:
    """The catalogue a completed [scene] table draws from, or None when it uses no asset file."""
    uses = p["mesh_file_probability"] > 0 or p["envmap_probability"] > 0 or _image_probability(p) > 0
    if not uses and not p["asset_dirs"]:
        return None
    return cached_catalogue(tuple(str(d) for d in p["asset_dirs"]), bool(p["bundled_assets"]))


def _image_probability(p: Mapping) -> float:
    return max(p["image_texture_probability"], p["background_material"].get("image_texture_probability", 0.0))


def _check_assets(p: Mapping) -> None:
    """Folders must hold usable files, and every kind drawn must have files in the preset's split."""
    try:
        catalogue = asset_catalogue(p)
    except ValueError as exc:
        raise ValueError(f"asset_dirs: {exc}") from None
    if catalogue is None:
        return
    for key, kind, prob in (
        ("mesh_file_probability", "mesh", p["mesh_file_probability"]),
        ("image_texture_probability", "texture", _image_probability(p)),
        ("envmap_probability", "envmap", p["envmap_probability"]),
    ):
        if prob > 0 and not catalogue.select(kind, p["split"]):
            where = ", ".join(catalogue.folders + (["the bundled files"] if catalogue.bundled else [])) or "no folder"
            raise ValueError(f"{key} = {prob}: no {p['split']}-split {kind} file among the assets ({where})")


def add_asset_dirs(scene: Mapping, dirs) -> dict:
    """A copy of a [scene] table with user asset folders (the CLI's --assets) added, as absolute paths."""
    from pathlib import Path

    table = dict(scene)
    table["asset_dirs"] = [*table.get("asset_dirs", []), *(str(Path(d).expanduser().resolve()) for d in dirs)]
    return table


def scene_params(params: Mapping) -> dict:
    """The [scene] table validated and completed with the defaults of every key it leaves out."""
    validate_scene_params(params)
    return {**SCENE_DEFAULTS, **params}


def shape_ranges(params: Mapping) -> dict[str, dict[str, tuple]]:
    """The shape distribution a [scene] table draws from: {family: {parameter: drawn range or choices}}.

    Covers every family in ``shape_families`` and every parameter that is drawn (the catalogue's range,
    or the preset's ``shape_params`` replacement); fixed resolution parameters are left out. Two presets
    whose families never overlap, or whose ranges for a shared family are disjoint, draw disjoint shapes.
    """
    p = scene_params(params)
    out = {}
    for fam in p["shape_families"]:
        overrides = p["shape_params"].get(fam, {})
        ranges = {}
        for name, spec in SHAPE_FAMILIES[fam].params.items():
            if name in overrides:
                ranges[name] = check_sample_range(fam, name, overrides[name])
            elif spec.sample is not None:
                ranges[name] = tuple(spec.sample)
        out[fam] = ranges
    return out


# --------------------------------------------------------------------------------------------------
# Small pure helpers: seeds, rotations, colours
# --------------------------------------------------------------------------------------------------


def scene_seed(base_seed: int, index: int) -> int:
    """The seed of scene ``index`` of a dataset with ``base_seed``: a hash into [0, 2**63).

    Hashing (not base_seed + index) keeps datasets with neighbouring base seeds from sharing scenes.
    """
    if base_seed < 0 or index < 0:
        raise ValueError(f"scene_seed({base_seed}, {index}): expected non-negative integers")
    state = np.random.SeedSequence([int(base_seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def euler_xyz_to_matrix(euler) -> np.ndarray:
    """Blender's XYZ Euler (radians) as a 3x3 matrix: rotate about X, then Y, then Z (R = Rz Ry Rx)."""
    a, b, c = euler
    ca, sa, cb, sb, cc, sc = math.cos(a), math.sin(a), math.cos(b), math.sin(b), math.cos(c), math.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


def matrix_to_euler_xyz(m: np.ndarray) -> list[float]:
    """Inverse of ``euler_xyz_to_matrix`` for a rotation matrix (Y angle in [-pi/2, pi/2])."""
    m = np.asarray(m, float)
    b = math.atan2(-m[2, 0], math.hypot(m[0, 0], m[1, 0]))
    if math.hypot(m[0, 0], m[1, 0]) > 1e-9:
        a = math.atan2(m[2, 1], m[2, 2])
        c = math.atan2(m[1, 0], m[0, 0])
    else:  # gimbal lock: Z folded into X
        a = math.atan2(-m[1, 2], m[1, 1])
        c = 0.0
    return [a, b, c]


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix uniform on SO(3) (Shoemake's uniform unit quaternion)."""
    u1, u2, u3 = rng.random(3)
    q = np.array(
        [math.sqrt(1 - u1) * math.sin(2 * math.pi * u2), math.sqrt(1 - u1) * math.cos(2 * math.pi * u2),
         math.sqrt(u1) * math.sin(2 * math.pi * u3), math.sqrt(u1) * math.cos(2 * math.pi * u3)]
    )  # fmt: skip
    x, y, z, w = q
    return np.array(
        [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    )  # fmt: skip


def _rotation_with_z(axis, spin: float = 0.0) -> np.ndarray:
    """A rotation matrix whose third column (local +Z in world) is ``axis``, turned by ``spin`` about it."""
    z = np.asarray(axis, float)
    z = z / np.linalg.norm(z)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = math.cos(spin), math.sin(spin)
    return np.stack([c * x + s * y, -s * x + c * y, z], axis=1)


def kelvin_to_rgb(temperature_k: float) -> list[float]:
    """Linear Rec.709/sRGB colour of a black body at ``temperature_k`` (1667-25000 K), max channel 1.

    Chromaticity from Kang et al. (2002)'s cubic fit of the Planckian locus, converted from CIE XYZ.
    6500 K comes out near white; lower temperatures are redder, higher ones bluer.
    """
    t = float(temperature_k)
    if not 1667.0 <= t <= 25000.0:
        raise ValueError(f"colour temperature {t} K: expected 1667 to 25000 K")
    if t <= 4000:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    xyz = np.array([x / y, 1.0, (1 - x - y) / y])
    m = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560], [0.0556434, -0.2040259, 1.0572252]])
    rgb = np.clip(m @ xyz, 0.0, None)
    return [float(c) for c in rgb / rgb.max()]


def luminance(rgb) -> float:
    r, g, b = rgb
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


def _int_in(rng: np.random.Generator, pair) -> int:
    return int(rng.integers(int(pair[0]), int(pair[1]), endpoint=True))


def _hsv_linear(h: float, s: float, v: float) -> list[float]:
    return [float(c) for c in srgb_to_linear(np.array(colorsys.hsv_to_rgb(h, s, v)))]


def _colour(rng: np.random.Generator, p: dict) -> list[float]:
    """A random scene-linear colour: HSV drawn in sRGB (hue uniform), then decoded to linear."""
    return _hsv_linear(rng.random(), rng.uniform(*p["saturation"]), rng.uniform(*p["value"]))


def _colour_pair(rng: np.random.Generator, p: dict) -> tuple[list[float], list[float]]:
    """Two random colours whose HSV values differ by a drawn texture_contrast (within the value range
    where it allows), so that every texture layer shows its pattern."""
    lo, hi = p["value"]
    va = rng.uniform(lo, hi)
    delta = rng.uniform(*p["texture_contrast"])
    vb = va + delta if rng.random() < 0.5 else va - delta
    if not lo <= vb <= hi:  # flip to the side with room, else as far as the range allows
        vb = va - (vb - va)
        vb = min(max(vb, lo), hi)
    hue, sat = rng.random(), rng.uniform(*p["saturation"])
    if p["texture_colours"] == "tone":  # tone on tone: the second colour differs in value alone
        return _hsv_linear(hue, sat, va), _hsv_linear(hue, sat, vb)
    return _hsv_linear(hue, sat, va), _hsv_linear(rng.random(), rng.uniform(*p["saturation"]), vb)


def _vec(a) -> list[float]:
    return [float(x) for x in a]


# --------------------------------------------------------------------------------------------------
# Materials
# --------------------------------------------------------------------------------------------------


def _texture_params(rng: np.random.Generator, kind: str, periods_per_view: float = 10.0) -> dict:
    """Kind-specific parameters, named after the Blender texture node's inputs (lower case, '_' for ' ')
    or its properties, as ``blender.py`` sets them.

    Fractal detail (octaves, each doubling the frequency) stops where the finest octave would repeat
    more than 128 times per view width (2 px at 256 px), finer than the image can show: it only costs time.
    """
    octaves = max(0.0, math.log2(128.0 / periods_per_view))
    if kind in ("noise", "noise_ridged"):
        out = {
            "detail": float(rng.uniform(0.0, min(6.0, octaves))),
            "roughness": float(rng.uniform(0.35, 0.75)),
            "lacunarity": float(rng.uniform(1.8, 2.6)),
            "distortion": float(rng.uniform(0.0, 2.0)) if rng.random() < 0.4 else 0.0,
        }
        if kind == "noise":
            out["noise_type"] = "FBM"
        return out
    if kind == "voronoi":
        return {
            "feature": str(rng.choice(["F1", "F2", "SMOOTH_F1", "DISTANCE_TO_EDGE"])),
            "distance": str(rng.choice(["EUCLIDEAN", "MANHATTAN", "CHEBYCHEV"])),
            "randomness": float(rng.uniform(0.5, 1.0)),
            "detail": float(rng.uniform(0.0, min(2.0, octaves))),
            "normalize": True,  # keeps fractal (detail > 0) distances in [0, 1]
        }
    if kind == "wave":
        wave_type = str(rng.choice(["BANDS", "RINGS"]))
        out = {
            "wave_type": wave_type,
            "wave_profile": str(rng.choice(["SIN", "SAW", "TRI"])),
            "distortion": float(rng.uniform(0.0, 8.0)) if rng.random() < 0.5 else 0.0,
            "detail": float(rng.uniform(0.0, min(3.0, octaves))),
            "detail_scale": float(rng.uniform(0.5, 3.0)),
            "phase_offset": float(rng.uniform(0.0, 2 * math.pi)),
        }
        if wave_type == "BANDS":
            out["bands_direction"] = str(rng.choice(["X", "Y", "Z", "DIAGONAL"]))
        else:
            out["rings_direction"] = str(rng.choice(["X", "Y", "Z", "SPHERICAL"]))
        return out
    if kind == "checker":
        return {}
    if kind == "brick":
        return {
            "mortar_size": float(rng.uniform(0.01, 0.05)),
            "mortar_smooth": float(rng.uniform(0.0, 0.3)),
            "bias": float(rng.uniform(-0.5, 0.5)),
            "brick_width": float(rng.uniform(0.3, 0.8)),
            "row_height": float(rng.uniform(0.15, 0.4)),
        }
    if kind == "magic":
        return {"turbulence_depth": int(rng.integers(1, 5, endpoint=True)), "distortion": float(rng.uniform(0.5, 3.0))}
    if kind == "gradient":
        return {"gradient_type": str(rng.choice(["LINEAR", "QUADRATIC", "EASING", "DIAGONAL", "SPHERICAL", "QUADRATIC_SPHERE", "RADIAL"]))}
    raise ValueError(f"texture kind {kind!r}: expected one of {', '.join(TEXTURE_KINDS)}")


def _image_layer(rng: np.random.Generator, p: dict, view_width_m: float, frequency, first: bool) -> TextureLayer:
    """A layer from a catalogue texture image: its luminance, stretched to full contrast, mixes two colours.
    The image tiles ``frequency`` (drawn) times per view width at the surface's depth, box-projected."""
    asset = p["_assets"].pick(rng, "texture")
    periods = _log_uniform(rng, *frequency)
    color_a, color_b = _colour_pair(rng, p)
    mix = float(rng.uniform(0.8, 1.0) if first else rng.uniform(0.3, 1.0))
    params = {
        "path": asset.path,
        "offset": _vec(rng.uniform(0.0, 1.0, 3)),
        "rotation": _vec(rng.uniform(0.0, 2 * math.pi, 3)),
        "projection": "BOX",
        "projection_blend": float(rng.uniform(0.1, 0.4)),
    }
    affects = float(rng.uniform(0.2, 0.8)) if rng.random() < 0.3 else 0.0
    lo, hi = asset.info.get("luminance_range", [0.0, 1.0])
    return TextureLayer("image", float(periods / view_width_m), color_a, color_b, mix, params, affects, [float(lo), float(hi)])


def _texture_layer(rng: np.random.Generator, p: dict, view_width_m: float, size_m: float, frequency, first: bool) -> TextureLayer:
    """One layer. Periodic kinds repeat ``frequency`` (drawn) times per view width at the surface's depth,
    whatever the surface's size; gradients ramp once over a fraction to a few times the surface's size."""
    if p["image_texture_probability"] > 0 and rng.random() < p["image_texture_probability"]:
        return _image_layer(rng, p, view_width_m, frequency, first)
    kind = str(rng.choice(p["texture_kinds"]))
    if kind == "gradient":
        periods = _log_uniform(rng, 0.5, 3.0)  # per surface size
        scale = periods / size_m
        periods = periods * view_width_m / size_m  # per view width
    else:
        periods = _log_uniform(rng, *frequency)
        scale = periods / view_width_m / TEXTURE_BASE_FREQUENCY[kind]
    color_a, color_b = _colour_pair(rng, p)
    if rng.random() < 0.5:
        color_a, color_b = color_b, color_a
    mix = float(rng.uniform(0.8, 1.0) if first else rng.uniform(0.3, 1.0))
    rotation = _vec(rng.uniform(0.0, 2 * math.pi, 3))
    kind_params = _texture_params(rng, kind, periods)
    # The Mapping node adds its location after scale and rotation, in pattern units: a random phase per
    # surface. Gradients are not periodic: they are centred on the surface instead (LINEAR, DIAGONAL,
    # EASING and QUADRATIC ramp from 0 to 1 over coordinates 0..1; the spherical ones fall off from 0).
    if kind == "gradient":
        centre = 0.0 if kind_params["gradient_type"] in ("SPHERICAL", "QUADRATIC_SPHERE", "RADIAL") else 0.5
        offset = _vec(centre + rng.uniform(-0.2, 0.2, 3))
    else:
        offset = _vec(rng.uniform(-100.0, 100.0, 3))
    params = {"offset": offset, "rotation": rotation, **kind_params}
    affects = float(rng.uniform(0.2, 0.8)) if rng.random() < 0.3 else 0.0
    factor_range = texture_factor_range(kind, kind_params)
    return TextureLayer(kind, float(scale), color_a, color_b, mix, params, affects, factor_range)


def _material(rng: np.random.Generator, p: dict, view_width_m: float, size_m: float, frequency, name: str) -> MaterialSpec:
    base = _colour(rng, p)
    u = rng.random()  # the roughness quantile: drawn first, its range depends on metallic
    metallic = float(rng.uniform(0.7, 1.0)) if rng.random() < p["metallic_probability"] else 0.0
    lo, hi = p["metallic_roughness"] if metallic else p["roughness"]
    roughness = float(lo + (hi - lo) * u)
    specular = float(rng.uniform(*p["specular"]))
    n_layers = _int_in(rng, p["texture_layers"])
    layers = [_texture_layer(rng, p, view_width_m, size_m, frequency, i == 0) for i in range(n_layers)]
    bump = float(rng.uniform(0.05, 0.4)) if layers and rng.random() < p["bump_probability"] else 0.0
    for layer in layers:
        if layer.kind == "image":
            p["_assets"].record(layer.params["path"], name)
    return MaterialSpec(base, roughness, metallic, specular, layers, bump, name)


def _mirror_material(rng: np.random.Generator, name: str) -> MaterialSpec:
    """A mirror: metallic, nearly perfectly smooth, untextured, a neutral or faintly tinted silver."""
    base = _hsv_linear(rng.random(), rng.uniform(0.0, 0.08), rng.uniform(0.8, 0.97))
    return MaterialSpec(base, float(rng.uniform(0.0, 0.02)), 1.0, 0.5, [], 0.0, name)


# --------------------------------------------------------------------------------------------------
# Backgrounds. Each returns (objects, far_depth) where far_depth(xn, yn) is the planar depth at which
# the ray through image-plane point (xn, yn) = (x / depth, y / depth) meets the background.
# --------------------------------------------------------------------------------------------------


def _background_plane(index: int, centre, rot: np.ndarray, half, material: MaterialSpec) -> ObjectSpec:
    """One flat background plane (wall, floor, backdrop) of half-extents ``half`` at ``centre``."""
    return ObjectSpec(
        name=f"background_{index}",
        shape=ShapeSpec("plane", {"subdivisions": 0}),
        location=_vec(centre),
        rotation=matrix_to_euler_xyz(rot),
        scale=[float(half[0]), float(half[1]), 1.0],
        material=material,
        role="background",
        smooth=False,
    )


def _backdrop(rng: np.random.Generator, mat_rng: np.random.Generator, p: dict, tx: float, ty: float):
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
    rot = _rotation_with_z(normal, spin)
    centre = np.array([0.0, 0.0, -dist / normal[2]])  # where the optical axis meets the plane
    hits = corners * (dist / facing)[:, None]
    local = (hits - centre) @ rot  # plane coordinates of the corner hits (third ~ 0)
    half = 1.15 * np.abs(local[:, :2]).max(axis=0)  # cover the view with a margin
    width = 2 * tx * far  # the view's width at the backdrop's farthest point, for texture frequency
    size = 2 * float(half.max())
    material = _material(mat_rng, p, width, size, p["background_texture_frequency"], "background_0_material")
    obj = _background_plane(0, centre, rot, half, material)

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


class _NoFit(ValueError):
    pass


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
    cy, sy, cp, sp, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


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
    normals = {"floor": (0, -1, 0), "ceiling": (0, 1, 0), "left": (-1, 0, 0), "right": (1, 0, 0), "back": (0, 0, -1), "front": (0, 0, 1)}
    names = list(normals)
    rot = _camera_in_room(yaw, pitch, roll)
    n_cam = np.array([normals[k] for k in names], float) @ rot  # n_cam = rot^T n_room, row-wise
    return names, n_cam, np.array([dists[k] for k in names], float)


def _room(rng: np.random.Generator, mat_rng: np.random.Generator, p: dict, tx: float, ty: float, kind: str):
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
        raise _NoFit(f"background {kind!r}: no layout fits between depth {zmin} and {zmax} m")
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
        rot = _rotation_with_z(-normals[i])  # local +Z faces the camera
        foot = normals[i] * dists[i]  # the plane's point nearest the camera
        local = (hits - foot) @ rot[:, :2]
        lo, hi = local.min(axis=0), local.max(axis=0)
        margin = 0.05 * float((hi - lo).max()) + 0.01 * zmax  # overlap at the room's edges: no cracks
        centre, half = (lo + hi) / 2, (hi - lo) / 2 + margin
        index = len(objects)
        size = 2 * float(half.max())
        material = _material(mat_rng, p, 2 * tx * float(depth.max()), size, p["background_texture_frequency"],
                             f"background_{index}_material")  # fmt: skip
        objects.append(
            _background_plane(index, foot + rot[:, :2] @ centre, rot, half, material)
        )

    def far_depth(xn: float, yn: float) -> float:
        return float(1.0 / (a @ np.array([xn, yn]) + b).max())

    return objects, far_depth


_BACKGROUNDS = {
    "backdrop": _backdrop,
    "room": lambda *args: _room(*args, "room"),
    "corner": lambda *args: _room(*args, "corner"),
    "floor": lambda *args: _room(*args, "floor"),
}
assert set(_BACKGROUNDS) == set(BACKGROUND_KINDS)


# --------------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------------


def _depth_at(u: float, lo: float, hi: float, distribution: str) -> float:
    """The depth at quantile ``u`` in [0, 1) of the distribution on [lo, hi]."""
    if hi <= lo:
        return float(hi)
    if distribution == "uniform":
        return float(lo + u * (hi - lo))
    if distribution == "log_uniform":
        return float(lo * (hi / lo) ** u)
    return float(1.0 / (1.0 / lo + u * (1.0 / hi - 1.0 / lo)))  # uniform in inverse depth


def _fit_in_depth(p: dict, tx: float, far: float, rot: np.ndarray, stretch: np.ndarray, size: float, depth_u: float):
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
    z = _depth_at(depth_u, lo, hi, p["depth_distribution"])
    return z, stretch * size * tx * z


def _objects(rng, mat_rng, p: dict, tx: float, ty: float, far_depth, asset_rng) -> list[ObjectSpec]:
    families = list(p["shape_families"])
    n = _int_in(rng, p["objects"])
    log_stretch = math.log(p["object_stretch"])
    out = []
    for i in range(n):
        name = f"object_{i:03d}"
        if p["mesh_file_probability"] > 0 and asset_rng.random() < p["mesh_file_probability"]:
            asset = p["_assets"].pick(asset_rng, "mesh", used_by=name)
            fam, params, smooth = MESH_FILE_FAMILY, {"path": asset.path, "sha256": asset.sha256}, True
        else:
            fam = families[int(rng.integers(len(families)))]
            params = sample_shape_params(fam, rng, p["shape_params"].get(fam))
            smooth = SHAPE_FAMILIES[fam].smooth
        rot = _random_rotation(rng)
        stretch = np.exp(rng.uniform(-log_stretch, log_stretch, 3))
        stretch /= stretch.max()  # the largest axis keeps the drawn size
        size = _log_uniform(rng, *p["object_size"])  # largest dimension / frustum width
        xn, yn = rng.uniform(-tx, tx), rng.uniform(-ty, ty)  # centre on the ray through (xn, yn) in view
        depth_u = rng.random()
        z, scale = _fit_in_depth(p, tx, far_depth(xn, yn), rot, stretch, size, depth_u)
        if p["mirror_probability"] > 0 and asset_rng.random() < p["mirror_probability"]:
            material = _mirror_material(mat_rng, f"{name}_material")
        else:
            material = _material(mat_rng, p, 2 * tx * z, 2 * float(scale.max()), p["texture_frequency"], f"{name}_material")
        out.append(
            ObjectSpec(
                name=name,
                shape=ShapeSpec(fam, params),
                location=[float(xn * z), float(yn * z), float(-z)],
                rotation=matrix_to_euler_xyz(rot),
                scale=_vec(scale),
                material=material,
                role="object",
                smooth=smooth,
            )
        )
    return out


def _mirror_panels(rng, p: dict, tx: float, ty: float, far_depth) -> list[ObjectSpec]:
    """Thin flat mirrors (a flattened cube), turned 20-55 degrees away from facing the camera so that
    they show the scene rather than the space behind the camera."""
    out = []
    for i in range(_int_in(rng, p["mirror_panels"])):
        tilt, azimuth = math.radians(rng.uniform(20.0, 55.0)), rng.uniform(0.0, 2 * math.pi)
        normal = [math.sin(tilt) * math.cos(azimuth), math.sin(tilt) * math.sin(azimuth), math.cos(tilt)]
        rot = _rotation_with_z(normal, rng.uniform(0.0, 2 * math.pi))
        stretch = np.array([1.0, rng.uniform(0.5, 1.0), 0.03])
        size = rng.uniform(0.25, 0.6)
        xn, yn = rng.uniform(-0.8 * tx, 0.8 * tx), rng.uniform(-0.8 * ty, 0.8 * ty)
        z, scale = _fit_in_depth(p, tx, far_depth(xn, yn), rot, stretch, size, rng.random())
        name = f"mirror_{i:02d}"
        out.append(
            ObjectSpec(
                name=name,
                shape=ShapeSpec("cube"),
                location=[float(xn * z), float(yn * z), float(-z)],
                rotation=matrix_to_euler_xyz(rot),
                scale=_vec(scale),
                material=_mirror_material(rng, f"{name}_material"),
                role="object",
                smooth=False,
            )
        )
    return out


# --------------------------------------------------------------------------------------------------
# Lighting
# --------------------------------------------------------------------------------------------------


def _light_direction(rng: np.random.Generator) -> np.ndarray:
    """A unit vector from the scene towards a light: within 75 degrees of +Z (behind the camera),
    above the optical axis (+Y) seven times out of ten."""
    cos_a = rng.uniform(math.cos(math.radians(75.0)), 1.0)
    sin_a = math.sqrt(1.0 - cos_a * cos_a)
    phi = rng.uniform(0.0, 2 * math.pi)
    u = np.array([sin_a * math.cos(phi), sin_a * math.sin(phi), cos_a])
    if rng.random() < 0.7:
        u[1] = abs(u[1])
    return u


def _lights(rng: np.random.Generator, p: dict) -> list[LightSpec]:
    """1-4 lights behind and around the camera. Their energies are set so that together they deliver
    the drawn irradiance at the reference point (on the axis, halfway to depth_range max) to a surface
    facing each light. Radiometric conventions assumed for Cycles: a sun of strength S gives S W/m^2; a
    point light of power P gives P / (4 pi d^2); a small area light of power P gives P / (pi d^2) on its axis.
    """
    zmax = p["depth_range"][1]
    ref = np.array([0.0, 0.0, -0.5 * zmax])
    n = _int_in(rng, p["lights"])
    if n == 0:
        return []
    total = _log_uniform(rng, *p["irradiance"]) * 2.0 ** p["exposure"]
    weights = rng.dirichlet(np.ones(n))
    out = []
    for i in range(n):
        kind = str(rng.choice(p["light_kinds"]))
        temperature = float(rng.uniform(*p["light_temperature_k"]))
        color = kelvin_to_rgb(temperature)
        if p["light_colour"] == "hue":  # any hue, not only the black body's: no temperature
            rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.3, 0.8), 1.0)
            color, temperature = [float(c) / max(rgb) for c in rgb], 0.0
        irradiance = float(weights[i]) * total / luminance(color)  # same luminous effect whatever the tint
        u = _light_direction(rng)
        if kind == "sun":
            rot = _rotation_with_z(u)  # the sun shines along its local -Z, i.e. along -u
            location, energy, size = ref + u * zmax, irradiance, float(rng.uniform(0.01, 0.2))
        else:
            rho = float(rng.uniform(*p["light_distance"])) * zmax
            location = u * rho
            to_light = location - ref
            d = float(np.linalg.norm(to_light))
            rot = _rotation_with_z(to_light)  # local -Z faces the reference point
            if kind in ("point", "spot"):  # a spot is a point light masked to a cone (45 degrees by default)
                energy, size = irradiance * 4 * math.pi * d * d, float(rng.uniform(0.02, 0.1)) * rho
            else:
                energy, size = irradiance * math.pi * d * d, float(rng.uniform(0.1, 0.5)) * rho
        out.append(
            LightSpec(
                kind=kind.upper(),
                location=_vec(location),
                rotation=matrix_to_euler_xyz(rot),
                energy=float(energy),
                color=color,
                temperature_k=temperature,
                size=size,
            )
        )
    return out


# A Preetham sky at strength 1 lights a surface facing the zenith about 0.7 times as much as a unit
# gradient world does (measured with Cycles: 0.4 to 1.0 depending on the sun); this factor keeps
# world_strength meaning about the same for both kinds.
SKY_STRENGTH_FACTOR = 1.4


def _world(rng: np.random.Generator, p: dict, asset_rng: np.random.Generator) -> WorldSpec:
    if p["envmap_probability"] > 0 and asset_rng.random() < p["envmap_probability"]:
        # An equirectangular environment map, turned about the vertical, scaled so that its mean radiance
        # is the drawn world strength. Rendering it needs the renderer's 'envmap' world kind.
        asset = p["_assets"].pick(asset_rng, "envmap", used_by="world")
        strength = float(asset_rng.uniform(*p["world_strength"])) * 2.0 ** p["exposure"]
        params = {"path": asset.path, "rotation_z": float(asset_rng.uniform(0.0, 2 * math.pi))}
        return WorldSpec("envmap", [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], strength / asset.info["mean_luminance"], params)
    kind = str(rng.choice(p["world_kinds"]))
    strength = float(rng.uniform(*p["world_strength"])) * 2.0 ** p["exposure"]
    if kind == "gradient":
        def tint():
            rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.4), 1.0)
            return [float(c) for c in srgb_to_linear(np.array(rgb))]

        return WorldSpec("gradient", tint(), tint(), strength)
    # Preetham or Hosek-Wilkie sky: the sun somewhere above the horizon (world +Z is behind the camera).
    elevation = rng.uniform(math.radians(10.0), math.radians(80.0))
    azimuth = rng.uniform(0.0, 2 * math.pi)
    sun = [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)]
    sky_type = "HOSEK_WILKIE" if kind == "hosek_sky" else "PREETHAM"
    params = {"sky_type": sky_type, "sun_direction": _vec(sun), "turbidity": float(rng.uniform(2.0, 8.0))}
    return WorldSpec("sky", [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], strength * SKY_STRENGTH_FACTOR, params)


# --------------------------------------------------------------------------------------------------
# The scene
# --------------------------------------------------------------------------------------------------


def frustum_tangents(camera: CameraSpec) -> tuple[float, float]:
    """(tx, ty): half-width and half-height of the view at planar depth 1 m (horizontal sensor fit)."""
    tx = camera.sensor_width_mm / (2.0 * camera.focal_length_mm)
    return tx, tx * camera.height / camera.width


def sample_scene(config, seed: int) -> SceneDescription:
    """Sample the scene with ``seed`` from ``config`` (a RenderConfig): pure, deterministic.

    The camera comes from the config; objects, background, materials and lighting from its [scene]
    table (``SCENE_DEFAULTS`` for what it leaves out). Raises ValueError for a bad [scene] table.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed {seed!r}: expected a non-negative integer")
    p = scene_params(config.scene)
    # The seed salt gives presets disjoint scenes for the same seeds; salt 0 keeps the plain seed.
    salt = int(p["seed_salt"])
    rng = np.random.default_rng(int(seed) if salt == 0 else [int(seed), salt])
    # Independent streams: changing how one part draws leaves the others' draws unchanged.
    (bg_rng, bg_mat_rng, obj_rng, obj_mat_rng, light_rng, world_rng,
     focus_rng, asset_rng, panel_rng, kind_rng) = rng.spawn(10)  # fmt: skip
    camera = CameraSpec(
        focal_length_mm=float(config.focal_length_mm),
        sensor_width_mm=float(config.sensor_width_mm),
        f_number=float(config.f_number),
        focus_distances=_stack_subset(focus_rng, p, _focus_distances(focus_rng, p, config)),
        width=int(config.width),
        height=int(config.height),
    )
    tx, ty = frustum_tangents(camera)
    assets = _AssetDraws(asset_catalogue(p), p["split"])
    p = {**p, "_assets": assets}
    p_bg = {**p, **p["background_material"]}  # backgrounds' own material distribution
    kinds = [p["background"]] if isinstance(p["background"], str) else list(p["background"])
    kind = kinds[0] if len(kinds) == 1 else kinds[int(kind_rng.integers(len(kinds)))]
    extras = {"sampler_version": SAMPLER_VERSION, "depth_range": [float(x) for x in p["depth_range"]]}
    try:
        background, far_depth = _BACKGROUNDS[kind](bg_rng, bg_mat_rng, p_bg, tx, ty)
    except _NoFit:  # oblique walls need more depth range than the preset gives: a (less tilted) backdrop
        extras["background_requested"] = kind
        kind = "backdrop"
        background, far_depth = _backdrop(bg_rng, bg_mat_rng, p_bg, tx, ty)
    objects = _objects(obj_rng, obj_mat_rng, p, tx, ty, far_depth, asset_rng)
    objects += _mirror_panels(panel_rng, p, tx, ty, far_depth)
    lights = _lights(light_rng, p)
    world = _world(world_rng, p, asset_rng)
    if len(kinds) > 1 or kind != "backdrop" or "background_requested" in extras:
        extras["background"] = kind
    if p["split"] != "train":
        extras["split"] = p["split"]
    if assets.used:
        extras["assets"] = assets.used  # every asset file the scene uses: path, sha256, split, user
    return SceneDescription(
        seed=int(seed),
        preset=config.preset,
        camera=camera,
        objects=objects + background,
        lights=lights,
        world=world,
        extras=extras,
    )


def _focus_distances(rng: np.random.Generator, p: dict, config) -> list[float]:
    """The camera's focus distances, or as many drawn from focus_range (focus_sampling = 'random')."""
    if p["focus_sampling"] == "fixed":
        return [float(s) for s in config.focus_distances]
    lo, hi = p["focus_range"]
    f_m = float(config.focal_length_mm) * 1e-3
    if not lo > f_m:
        raise ValueError(f"focus_range = {p['focus_range']!r}: must lie beyond the focal length ({f_m:g} m)")
    out = [_depth_at(float(u), lo, hi, p["focus_distribution"]) for u in rng.random(len(config.focus_distances))]
    return sorted(out) if p["focus_order"] == "sorted" else out


def _stack_subset(rng: np.random.Generator, p: dict, focus_distances: list[float]) -> list[float]:
    """A random stack size (stack_size = [low, high]): that many of the slices, in their order."""
    if p["stack_size"] == "all":
        return focus_distances
    lo, hi = (int(x) for x in p["stack_size"])
    if hi > len(focus_distances):
        raise ValueError(
            f"stack_size = {p['stack_size']!r}: at most the camera's {len(focus_distances)} focus distances"
        )
    n = int(rng.integers(lo, hi + 1))
    keep = np.sort(rng.choice(len(focus_distances), size=n, replace=False))
    return [focus_distances[int(i)] for i in keep]


class _AssetDraws:
    """Draws catalogue files of one split for one scene and records which were used, by whom."""

    def __init__(self, catalogue: AssetCatalogue | None, split: str):
        self.catalogue, self.split = catalogue, split
        self.used: list[dict] = []

    def pick(self, rng: np.random.Generator, kind: str, used_by: str | None = None) -> AssetFile:
        files = self.catalogue.select(kind, self.split) if self.catalogue is not None else []
        if not files:
            raise ValueError(f"no {self.split}-split {kind} file in the asset catalogue")
        asset = files[int(rng.integers(len(files)))]
        if used_by is not None:
            self._add(asset, used_by)
        return asset

    def record(self, path: str, used_by: str) -> None:
        for asset in self.catalogue.files:
            if asset.path == path:
                self._add(asset, used_by)
                return

    def _add(self, asset: AssetFile, used_by: str) -> None:
        self.used.append({"kind": asset.kind, "path": asset.path, "sha256": asset.sha256, "split": asset.split, "used_by": used_by})


# --------------------------------------------------------------------------------------------------
# What a preset can draw: for checking that held-out test presets are disjoint from training ones
# --------------------------------------------------------------------------------------------------


def preset_signature(config) -> dict:
    """The discrete things a preset's scenes can contain, by axis, for disjointness checks.

    - ``shapes``: object shape classes, 'family:<name>' for procedural families and 'mesh:<sha256>' for
      catalogue meshes (mirror panels count as 'family:cube'); ``shape_ranges``: each family's drawn
      parameter ranges (``shape_ranges``);
    - ``textures``: texture sources of objects and backgrounds, 'procedural:<kind>' or 'image:<sha256>';
    - ``lights``: '<kind>:<colour model>'; ``worlds``: world kinds, 'envmap:<sha256>' for environment maps;
    - ``asset_files``: the sha256 of every catalogue file the preset may draw;
    - ``f_number``: the aperture.

    Backgrounds' geometry (planes) is scene structure, not an object shape, and is left out.
    """
    p = scene_params(config.scene)
    catalogue = asset_catalogue(p)

    def files(kind: str, probability: float) -> set[str]:
        if probability <= 0 or catalogue is None:
            return set()
        return {a.sha256 for a in catalogue.select(kind, p["split"])}

    meshes = files("mesh", p["mesh_file_probability"])
    shapes = {f"mesh:{h}" for h in meshes}
    ranges = {}
    if p["mesh_file_probability"] < 1 and p["objects"][1] > 0:
        shapes |= {f"family:{f}" for f in p["shape_families"]}
        ranges = shape_ranges(p)
    if p["mirror_panels"][1] > 0:
        shapes.add("family:cube")
        ranges.setdefault("cube", {})
    textures, images = set(), set()
    for table in (p, {**p, **p["background_material"]}):
        if table["texture_layers"][1] == 0:
            continue
        if table["image_texture_probability"] < 1:
            textures |= {f"procedural:{k}" for k in table["texture_kinds"]}
        images |= files("texture", table["image_texture_probability"])
    textures |= {f"image:{h}" for h in images}
    lights = {f"{k}:{p['light_colour']}" for k in p["light_kinds"]} if p["lights"][1] > 0 else set()
    envmaps = files("envmap", p["envmap_probability"])
    worlds = {f"envmap:{h}" for h in envmaps}
    if p["envmap_probability"] < 1:
        worlds |= set(p["world_kinds"])
    return {
        "shapes": shapes,
        "shape_ranges": ranges,
        "textures": textures,
        "lights": lights,
        "worlds": worlds,
        "asset_files": meshes | images | envmaps,
        "f_number": float(config.f_number),
    }
