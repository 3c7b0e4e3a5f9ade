"""What a preset can draw: for checking that held-out test presets are disjoint from training ones."""

from __future__ import annotations

from collections.abc import Mapping

from focalstack.assets import SHAPE_FAMILIES, check_sample_range

from .assets import asset_catalogue
from .params import scene_params


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
