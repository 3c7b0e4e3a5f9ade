"""Plain-data scene description: what to render, with no knowledge of Blender.

A ``SceneDescription`` is sampled from a seed and a preset (``sampling.py``), stored as JSON with each
scene in the HDF5 file, and turned into Blender data by ``blender.py``, the only module that imports bpy.
Conventions: the camera sits at the origin looking down -Z with +Y up (Blender's camera default), so
the planar depth of a world point is -z. Colours are scene-linear RGB in [0, 1]. Angles in radians.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

SCENE_FORMAT_VERSION = 1


@dataclass
class CameraSpec:
    focal_length_mm: float
    sensor_width_mm: float
    f_number: float
    focus_distances: list[float]  # metres, in slice order
    width: int
    height: int


@dataclass
class TextureLayer:
    """A procedural texture mixed into a material's base colour (and optionally its roughness).

    kind: one of noise, voronoi, wave, checker, brick, magic, gradient, musgrave-like 'noise_ridged',
    or 'image' (params['path'] names a texture file). ``scale`` is in pattern repeats per metre of the
    object's own coordinates, so textures keep their frequency however the object is scaled.
    """

    kind: str
    scale: float
    color_a: list[float]
    color_b: list[float]
    mix: float = 1.0  # weight of this layer over the colour below it
    params: dict = field(default_factory=dict)  # kind-specific: detail, distortion, offset, ...
    affects_roughness: float = 0.0  # how much the pattern modulates roughness (0 = not at all)
    # The texture's factor output is stretched linearly from [low, high] to [0, 1] (clamped) before it
    # mixes the two colours, modulates roughness or bumps: texture nodes' factors span very different
    # ranges (normalised noise mostly 0.35-0.65), so this keeps every kind at full contrast.
    factor_range: list[float] = field(default_factory=lambda: [0.0, 1.0])


@dataclass
class MaterialSpec:
    base_color: list[float]
    roughness: float
    metallic: float
    specular: float  # Principled 'Specular IOR Level', 0.5 = default dielectric
    textures: list[TextureLayer] = field(default_factory=list)
    bump_strength: float = 0.0  # bump from the first texture layer, 0 = none
    name: str = ""


@dataclass
class ShapeSpec:
    """A mesh family and its parameters; ``focalstack.assets.shapes.build_mesh`` turns it into geometry.

    The mesh fits the cube [-1, 1]^3 before the object's scale is applied.
    """

    family: str
    params: dict = field(default_factory=dict)


@dataclass
class ObjectSpec:
    name: str
    shape: ShapeSpec
    location: list[float]
    rotation: list[float]  # XYZ Euler, radians
    scale: list[float]
    material: MaterialSpec
    role: str = "object"  # 'object' or 'background' (walls, floors, backdrops)
    smooth: bool = True  # smooth shading of curved surfaces


@dataclass
class LightSpec:
    kind: str  # 'POINT', 'AREA', 'SUN', 'SPOT'
    location: list[float]
    rotation: list[float]
    energy: float  # watts for point/area/spot, W/m^2 (strength) for sun
    color: list[float]  # linear RGB, from the colour temperature below
    temperature_k: float
    size: float  # radius (point), edge (area), angle in radians (sun)


@dataclass
class WorldSpec:
    """Environment light: a vertical gradient between horizon and zenith colours, or a sky texture."""

    kind: str  # 'gradient' or 'sky'
    color_horizon: list[float]
    color_zenith: list[float]
    strength: float
    params: dict = field(default_factory=dict)


@dataclass
class SceneDescription:
    seed: int
    preset: str
    camera: CameraSpec
    objects: list[ObjectSpec]
    lights: list[LightSpec]
    world: WorldSpec
    extras: dict = field(default_factory=dict)  # per-scene options later presets add (effects, ...)
    format_version: int = SCENE_FORMAT_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "SceneDescription":
        if d.get("format_version") != SCENE_FORMAT_VERSION:
            raise ValueError(
                f"scene description format_version {d.get('format_version')!r}: expected {SCENE_FORMAT_VERSION}"
            )

        def material(m: dict) -> MaterialSpec:
            return MaterialSpec(**{**m, "textures": [TextureLayer(**t) for t in m.get("textures", [])]})

        def obj(o: dict) -> ObjectSpec:
            return ObjectSpec(**{**o, "shape": ShapeSpec(**o["shape"]), "material": material(o["material"])})

        return cls(
            seed=int(d["seed"]),
            preset=d["preset"],
            camera=CameraSpec(**d["camera"]),
            objects=[obj(o) for o in d["objects"]],
            lights=[LightSpec(**light) for light in d["lights"]],
            world=WorldSpec(**d["world"]),
            extras=dict(d.get("extras", {})),
            format_version=d["format_version"],
        )

    @classmethod
    def from_json(cls, text: str) -> "SceneDescription":
        return cls.from_dict(json.loads(text))
