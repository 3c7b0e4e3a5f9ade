"""The preset's ``[scene]`` table: every key with its default, its check and what it means, in one table.

``SCENE_PARAMS`` is the table; ``scene_params`` validates a preset's table and completes it with the
defaults of every key it leaves out (so ``{}`` is valid); ``focalstack-render --scene-keys`` prints it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from focalstack.assets import SHAPE_FAMILIES, check_sample_range, families_in_group
from focalstack.dataset.numbers import is_finite_number

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


# -- checks: each takes (key, value) and raises ValueError naming the key ---------------------------------
def _range(lo: float, hi: float, *, integer: bool = False, positive_low: bool = False) -> Callable:
    kind = "integers" if integer else "numbers"

    def check(key, value):
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(f"{key} = {value!r}: expected [low, high], two {kind}")
        for x in value:
            if not is_finite_number(x) or (integer and int(x) != x):
                raise ValueError(f"{key} = {value!r}: expected two finite {kind}")
        a, b = value
        if not lo <= a <= b <= hi:
            raise ValueError(f"{key} = {value!r}: expected {lo} <= low <= high <= {hi}")
        if positive_low and not a > 0:
            raise ValueError(f"{key} = {value!r}: expected low > 0")

    return check


def _number(lo: float, hi: float) -> Callable:
    def check(key, value):
        if not is_finite_number(value) or not lo <= value <= hi:
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
        if not is_finite_number(value) or int(value) != value or not lo <= value <= hi:
            raise ValueError(f"{key} = {value!r}: expected an integer in [{lo}, {hi}]")

    return check


def _boolean(key, value):
    if not isinstance(value, bool):
        raise ValueError(f"{key} = {value!r}: expected true or false")


def _folders(key, value):
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key} = {value!r}: expected a list of folder paths")


def _stack_size(key, value):
    if value != "all":
        _range(1, 1000, integer=True)(key, value)


def _background_material(key, value):
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} = {value!r}: expected a table of material keys")
    for k, v in value.items():
        if k not in BACKGROUND_MATERIAL_KEYS:
            raise ValueError(f"{key}: unknown key {k!r}; expected some of {', '.join(BACKGROUND_MATERIAL_KEYS)}")
        SCENE_PARAMS[k].check(f"{key}.{k}", v)


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


# -- the table -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    group: str
    default: object
    check: Callable
    doc: str


def _table(group: str, rows: list[tuple[str, object, Callable, str]]) -> dict[str, Param]:
    return {key: Param(group, default, check, doc) for key, default, check, doc in rows}


SCENE_PARAMS: dict[str, Param] = {
    **_table("geometry", [
        ("depth_range", [0.1, 3.0], _range(0.0, 1e6, positive_low=True),
         "metres: every visible surface lies inside"),
        ("depth_distribution", "log_uniform", _choice(DEPTH_DISTRIBUTIONS),
         "of object centres between their nearest and farthest allowed depth"),
        ("objects", [20, 30], _range(0, 1000, integer=True), "object count, inclusive"),
        ("object_size", [0.1, 0.5], _range(0.0, 1.0, positive_low=True),
         "largest dimension / frustum width at the object's depth (log-uniform)"),
        ("object_stretch", 1.5, _number(1.0, 10.0), "each axis scaled by a factor drawn log-uniform in [1/s, s]"),
        ("shape_families", families_in_group("primitive", "procedural"), _names(tuple(SHAPE_FAMILIES)),
         "shape families objects are drawn from (focalstack.assets)"),
        ("shape_params", {}, _shape_params,
         "{family: {param: [low, high] or [choices...]}}: replaces the catalogue's ranges"),
        ("background", "backdrop", _kinds(BACKGROUND_KINDS),
         "a background kind, or a list of kinds to draw one from per scene"),
        ("background_tilt_deg", [0.0, 20.0], _range(0.0, 60.0), "backdrop: angle between its normal and the optical axis"),
        ("background_depth", [0.85, 1.0], _range(0.0, 1.0, positive_low=True),
         "farthest background point in view / depth_range max"),
        ("room_yaw_deg", [10.0, 50.0], _range(0.0, 60.0),
         "room/corner/floor: angle between the view and the back wall's normal"),
        ("room_pitch_deg", [-30.0, 10.0], _range(-45.0, 45.0), "room/corner/floor: camera pitch (negative looks down)"),
        ("mirror_panels", [0, 0], _range(0, 16, integer=True), "thin flat mirrors among the objects, inclusive"),
    ]),
    **_table("materials", [
        ("texture_kinds", list(TEXTURE_KINDS), _names(TEXTURE_KINDS), "procedural texture kinds"),
        ("texture_layers", [1, 3], _range(0, 8, integer=True), "texture layers per material, inclusive"),
        ("texture_frequency", [2.0, 100.0], _range(0.0, 1e4, positive_low=True),
         "pattern periods per view width at the object's depth (log-uniform)"),
        ("background_texture_frequency", [2.0, 100.0], _range(0.0, 1e4, positive_low=True),
         "the same for backgrounds, at their farthest depth"),
        ("texture_contrast", [0.3, 0.8], _range(0.0, 1.0),
         "difference in HSV value (sRGB) between a layer's two colours"),
        ("texture_colours", "independent", _choice(("independent", "tone")),
         "a layer's two colours: 'independent' hues, or 'tone' (one hue)"),
        ("roughness", [0.05, 1.0], _range(0.0, 1.0), "roughness of dielectric materials"),
        ("metallic_probability", 0.15, _number(0.0, 1.0), "per material: metallic"),
        ("metallic_roughness", [0.05, 1.0], _range(0.0, 1.0), "roughness of metallic materials"),
        ("mirror_probability", 0.0, _number(0.0, 1.0),
         "per object: a mirror (metallic 1, roughness <= 0.02, untextured)"),
        ("specular", [0.2, 0.8], _range(0.0, 1.0), "Principled 'Specular IOR Level'"),
        ("bump_probability", 0.3, _number(0.0, 1.0), "per material: bump from its first texture layer"),
        ("saturation", [0.0, 1.0], _range(0.0, 1.0), "of base and texture colours (HSV, in sRGB)"),
        ("value", [0.15, 0.95], _range(0.0, 1.0), "brightness of base and texture colours (HSV value, in sRGB)"),
        ("background_material", {}, _background_material,
         "replacements of material keys for backgrounds: " + ", ".join(BACKGROUND_MATERIAL_KEYS)),
    ]),
    **_table("lighting", [
        ("lights", [1, 4], _range(0, 16, integer=True), "light count, inclusive"),
        ("light_kinds", ["area", "point", "sun"], _names(LIGHT_KINDS), "light kinds ('spot' is test-only)"),
        ("light_colour", "blackbody", _choice(LIGHT_COLOURS), "'blackbody' temperatures, or any 'hue' (test-only)"),
        ("light_temperature_k", [2500.0, 9000.0], _range(1667.0, 25000.0), "black-body colour temperature, kelvin"),
        ("light_distance", [1.0, 2.0], _range(0.0, 100.0, positive_low=True),
         "point/area light distance from the camera / depth_range max"),
        ("irradiance", [3.0, 8.0], _range(0.0, 1e6, positive_low=True),
         "W/m^2 all lights deliver together at the reference point (log-uniform)"),
        ("world_kinds", ["gradient", "sky"], _names(WORLD_KINDS), "environment kinds ('hosek_sky' is test-only)"),
        ("world_strength", [0.15, 0.5], _range(0.0, 1e3), "radiance of the environment (gradient colours have max 1)"),
        ("exposure", 0.0, _number(-20.0, 20.0), "stops: every light and the world are multiplied by 2 ** exposure"),
    ]),
    **_table("focus", [
        ("focus_sampling", "fixed", _choice(FOCUS_SAMPLING),
         "'fixed': the camera's focus_distances; 'random': drawn per scene"),
        ("focus_range", [0.1, 1.5], _range(0.0, 1e6, positive_low=True),
         "metres, for 'random' (as many distances as the camera's list holds)"),
        ("focus_distribution", "inverse", _choice(DEPTH_DISTRIBUTIONS),
         "for 'random': uniform, log_uniform or inverse (uniform in dioptres)"),
        ("focus_order", "sorted", _choice(FOCUS_ORDERS), "for 'random': 'sorted' (near to far) or 'random'"),
        ("stack_size", "all", _stack_size,
         "'all', or [low, high] slices per scene (at most the camera's count); the file keeps the camera's "
         "count, repeating a shorter stack's last slice (dataset 'stack_size')"),
    ]),
    **_table("splits and assets", [
        ("split", "train", _choice(SPLITS),
         "which asset files (by content hash) and whether test-only items are allowed"),
        ("seed_salt", 0, _integer(0, 2**63 - 1),
         "mixed into every scene's seed: presets with different salts never share a scene"),
        ("asset_dirs", [], _folders, "user folders of meshes, textures and environment maps (the CLI's --assets)"),
        ("bundled_assets", True, _boolean, "include the package's own asset files (assets/data)"),
        ("mesh_file_probability", 0.0, _number(0.0, 1.0), "per object: a catalogue mesh instead of a procedural family"),
        ("image_texture_probability", 0.0, _number(0.0, 1.0),
         "per texture layer: a catalogue image instead of a procedural kind"),
        ("envmap_probability", 0.0, _number(0.0, 1.0), "per scene: a catalogue environment map as the world"),
    ]),
}  # fmt: skip
SCENE_DEFAULTS = {key: param.default for key, param in SCENE_PARAMS.items()}


def validate_scene_params(params: Mapping) -> None:
    """Raise ValueError naming the first unknown key or bad value of a preset's [scene] table."""
    from .assets import check_assets  # assets reads the completed table; no cycle at import time

    if not isinstance(params, Mapping):
        raise ValueError(f"[scene] = {params!r}: expected a table")
    unknown = sorted(set(params) - set(SCENE_PARAMS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(SCENE_PARAMS)}")
    for key, value in params.items():
        SCENE_PARAMS[key].check(key, value)
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
    check_assets(p)


def scene_params(params: Mapping) -> dict:
    """The [scene] table validated and completed with the defaults of every key it leaves out (a copy:
    callers may not change the defaults through it)."""
    validate_scene_params(params)
    return copy.deepcopy({**SCENE_DEFAULTS, **params})


def describe_params() -> str:
    """The table as text, by group: key, default, meaning (for ``focalstack-render --scene-keys``)."""
    lines, group = [], None
    width = max(len(k) for k in SCENE_PARAMS)
    for key, param in SCENE_PARAMS.items():
        if param.group != group:
            group = param.group
            lines.append(f"[{group}]")
        lines.append(f"  {key:<{width}}  {param.default!r}\n  {'':<{width}}  {param.doc}")
    return "\n".join(lines)
