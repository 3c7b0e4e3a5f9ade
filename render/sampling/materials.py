"""Materials: Principled BSDF parameters and procedural or image texture layers, drawn per surface."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Mapping

import numpy as np

from focalstack.dataset.colour import srgb_to_linear

from ..scene import MaterialSpec, TextureLayer
from .assets import AssetDraws
from .draws import int_in, log_uniform, vec
from .params import TEXTURE_KINDS

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


def hsv_linear(h: float, s: float, v: float) -> list[float]:
    return [float(c) for c in srgb_to_linear(np.array(colorsys.hsv_to_rgb(h, s, v)))]


def colour(rng: np.random.Generator, p: dict) -> list[float]:
    """A random scene-linear colour: HSV drawn in sRGB (hue uniform), then decoded to linear."""
    return hsv_linear(rng.random(), rng.uniform(*p["saturation"]), rng.uniform(*p["value"]))


def colour_pair(rng: np.random.Generator, p: dict) -> tuple[list[float], list[float]]:
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
        return hsv_linear(hue, sat, va), hsv_linear(hue, sat, vb)
    return hsv_linear(hue, sat, va), hsv_linear(rng.random(), rng.uniform(*p["saturation"]), vb)


def _texture_params(rng: np.random.Generator, kind: str, periods_per_view: float = 10.0) -> dict:
    """Kind-specific parameters, named after the Blender texture node's inputs (lower case, '_' for ' ')
    or its properties, as ``render.blender.build`` sets them.

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
        kinds = ["LINEAR", "QUADRATIC", "EASING", "DIAGONAL", "SPHERICAL", "QUADRATIC_SPHERE", "RADIAL"]
        return {"gradient_type": str(rng.choice(kinds))}
    raise ValueError(f"texture kind {kind!r}: expected one of {', '.join(TEXTURE_KINDS)}")


def _image_layer(
    rng: np.random.Generator, p: dict, assets: AssetDraws, view_width_m: float, frequency, first: bool, used_by: str
) -> TextureLayer:
    """A layer from a catalogue texture image: its luminance, stretched to full contrast, mixes two colours.
    The image tiles ``frequency`` (drawn) times per view width at the surface's depth, box-projected."""
    asset = assets.pick(rng, "texture", used_by=used_by)
    periods = log_uniform(rng, *frequency)
    color_a, color_b = colour_pair(rng, p)
    mix = float(rng.uniform(0.8, 1.0) if first else rng.uniform(0.3, 1.0))
    params = {
        "path": asset.path,
        "offset": vec(rng.uniform(0.0, 1.0, 3)),
        "rotation": vec(rng.uniform(0.0, 2 * math.pi, 3)),
        "projection": "BOX",
        "projection_blend": float(rng.uniform(0.1, 0.4)),
    }
    affects = float(rng.uniform(0.2, 0.8)) if rng.random() < 0.3 else 0.0
    lo, hi = asset.info.get("luminance_range", [0.0, 1.0])
    return TextureLayer("image", float(periods / view_width_m), color_a, color_b, mix, params, affects, [float(lo), float(hi)])


def _texture_layer(
    rng: np.random.Generator,
    p: dict,
    assets: AssetDraws,
    view_width_m: float,
    size_m: float,
    frequency,
    first: bool,
    used_by: str,
) -> TextureLayer:
    """One layer. Periodic kinds repeat ``frequency`` (drawn) times per view width at the surface's depth,
    whatever the surface's size; gradients ramp once over a fraction to a few times the surface's size."""
    if p["image_texture_probability"] > 0 and rng.random() < p["image_texture_probability"]:
        return _image_layer(rng, p, assets, view_width_m, frequency, first, used_by)
    kind = str(rng.choice(p["texture_kinds"]))
    if kind == "gradient":
        periods = log_uniform(rng, 0.5, 3.0)  # per surface size
        scale = periods / size_m
        periods = periods * view_width_m / size_m  # per view width
    else:
        periods = log_uniform(rng, *frequency)
        scale = periods / view_width_m / TEXTURE_BASE_FREQUENCY[kind]
    color_a, color_b = colour_pair(rng, p)
    if rng.random() < 0.5:
        color_a, color_b = color_b, color_a
    mix = float(rng.uniform(0.8, 1.0) if first else rng.uniform(0.3, 1.0))
    rotation = vec(rng.uniform(0.0, 2 * math.pi, 3))
    kind_params = _texture_params(rng, kind, periods)
    # The Mapping node adds its location after scale and rotation, in pattern units: a random phase per
    # surface. Gradients are not periodic: they are centred on the surface instead (LINEAR, DIAGONAL,
    # EASING and QUADRATIC ramp from 0 to 1 over coordinates 0..1; the spherical ones fall off from 0).
    if kind == "gradient":
        centre = 0.0 if kind_params["gradient_type"] in ("SPHERICAL", "QUADRATIC_SPHERE", "RADIAL") else 0.5
        offset = vec(centre + rng.uniform(-0.2, 0.2, 3))
    else:
        offset = vec(rng.uniform(-100.0, 100.0, 3))
    params = {"offset": offset, "rotation": rotation, **kind_params}
    affects = float(rng.uniform(0.2, 0.8)) if rng.random() < 0.3 else 0.0
    factor_range = texture_factor_range(kind, kind_params)
    return TextureLayer(kind, float(scale), color_a, color_b, mix, params, affects, factor_range)


def sample_material(
    rng: np.random.Generator, p: dict, assets: AssetDraws, view_width_m: float, size_m: float, frequency, name: str
) -> MaterialSpec:
    """A Principled material with 0-8 texture layers; image layers draw catalogue files through ``assets``."""
    base = colour(rng, p)
    u = rng.random()  # the roughness quantile: drawn first, its range depends on metallic
    metallic = float(rng.uniform(0.7, 1.0)) if rng.random() < p["metallic_probability"] else 0.0
    lo, hi = p["metallic_roughness"] if metallic else p["roughness"]
    roughness = float(lo + (hi - lo) * u)
    specular = float(rng.uniform(*p["specular"]))
    n_layers = int_in(rng, p["texture_layers"])
    layers = [_texture_layer(rng, p, assets, view_width_m, size_m, frequency, i == 0, name) for i in range(n_layers)]
    bump = float(rng.uniform(0.05, 0.4)) if layers and rng.random() < p["bump_probability"] else 0.0
    return MaterialSpec(base, roughness, metallic, specular, layers, bump, name)


def sample_mirror_material(rng: np.random.Generator, name: str) -> MaterialSpec:
    """A mirror: metallic, nearly perfectly smooth, untextured, a neutral or faintly tinted silver."""
    base = hsv_linear(rng.random(), rng.uniform(0.0, 0.08), rng.uniform(0.8, 0.97))
    return MaterialSpec(base, float(rng.uniform(0.0, 0.02)), 1.0, 0.5, [], 0.0, name)
