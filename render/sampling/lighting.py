"""Lights and the world (environment light): kinds, colours, energies and directions."""

from __future__ import annotations

import colorsys
import math

import numpy as np

from focalstack.dataset.colour import srgb_to_linear

from ..geometry import matrix_to_euler_xyz, rotation_with_z
from ..scene import LightSpec, WorldSpec
from .assets import AssetDraws
from .draws import int_in, log_uniform, vec


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


def sample_lights(rng: np.random.Generator, p: dict) -> list[LightSpec]:
    """1-4 lights behind and around the camera. Their energies are set so that together they deliver
    the drawn irradiance at the reference point (on the axis, halfway to depth_range max) to a surface
    facing each light. Radiometric conventions assumed for Cycles: a sun of strength S gives S W/m^2; a
    point light of power P gives P / (4 pi d^2); a small area light of power P gives P / (pi d^2) on its axis.
    """
    zmax = p["depth_range"][1]
    ref = np.array([0.0, 0.0, -0.5 * zmax])
    n = int_in(rng, p["lights"])
    if n == 0:
        return []
    total = log_uniform(rng, *p["irradiance"]) * 2.0 ** p["exposure"]
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
            rot = rotation_with_z(u)  # the sun shines along its local -Z, i.e. along -u
            location, energy, size = ref + u * zmax, irradiance, float(rng.uniform(0.01, 0.2))
        else:
            rho = float(rng.uniform(*p["light_distance"])) * zmax
            location = u * rho
            to_light = location - ref
            d = float(np.linalg.norm(to_light))
            rot = rotation_with_z(to_light)  # local -Z faces the reference point
            if kind in ("point", "spot"):  # a spot is a point light masked to a cone (45 degrees by default)
                energy, size = irradiance * 4 * math.pi * d * d, float(rng.uniform(0.02, 0.1)) * rho
            else:
                energy, size = irradiance * math.pi * d * d, float(rng.uniform(0.1, 0.5)) * rho
        out.append(
            LightSpec(
                kind=kind.upper(),
                location=vec(location),
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


def sample_world(rng: np.random.Generator, env_rng: np.random.Generator, p: dict, assets: AssetDraws) -> WorldSpec:
    """The environment light: a catalogue environment map (drawn from ``env_rng``), or a gradient or sky."""
    if p["envmap_probability"] > 0 and env_rng.random() < p["envmap_probability"]:
        # An equirectangular environment map, turned about the vertical, scaled so that its mean radiance
        # is the drawn world strength.
        asset = assets.pick(env_rng, "envmap", used_by="world")
        strength = float(env_rng.uniform(*p["world_strength"])) * 2.0 ** p["exposure"]
        params = {"path": asset.path, "rotation_z": float(env_rng.uniform(0.0, 2 * math.pi))}
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
    params = {"sky_type": sky_type, "sun_direction": vec(sun), "turbidity": float(rng.uniform(2.0, 8.0))}
    return WorldSpec("sky", [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], strength * SKY_STRENGTH_FACTOR, params)
