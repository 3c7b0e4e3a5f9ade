"""Plain-data scene description: everything needed to render a scene, with no knowledge of Blender.

A ``SceneDescription`` is sampled from a seed and a preset (``sampling``), given its real-capture effects
(``effects``), stored as JSON with each scene in the HDF5 file, and turned into Blender data by
``render.blender``, the only package that imports bpy. It is the whole truth about a scene: the renderer takes
only render settings (samples, denoiser, threads, device) besides it, so any stored description renders
again exactly as it was, whatever preset produced it.

The camera owns its optics (as kubric's camera does): the blur model, and one entry per slice with the
focus distance, the lens it is rendered with (the image distance when the lens breathes) and its pose
relative to the reference view. Ground truth (AiF, depth, defocus, edges) is in the reference view: the
nominal lens, unmoved.

Conventions: the camera sits at the origin looking down -Z with +Y up (Blender's camera default), so the
planar depth of a world point is -z. Colours are scene-linear RGB in [0, 1]. Angles in radians.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from focalstack.dataset import optics

from .geometry import pose_matrix

SCENE_FORMAT_VERSION = 2

# Blender camera axes (x right, y up, z backward) -> OpenCV camera axes (x right, y down, z forward).
_BLENDER_TO_CV = np.diag([1.0, -1.0, -1.0])


@dataclass
class SliceSpec:
    """One image of the focal stack."""

    focus_distance: float  # metres, planar
    lens_mm: float  # focal length Blender renders the slice with: the camera's, or v(s) with breathing
    rotation: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # XYZ Euler vs the reference view
    translation: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # metres, reference frame

    def pose(self) -> np.ndarray:
        """4x4 pose of the slice's camera in the reference camera's frame (Blender axes)."""
        return pose_matrix(self.rotation, self.translation)


@dataclass
class CameraSpec:
    """The camera: sensor, lens, aperture, blur model and the slices of the stack.

    ``slices`` may be given as plain focus distances: each becomes a slice with the camera's own lens and
    no motion (what a still camera refocusing does).
    """

    focal_length_mm: float
    sensor_width_mm: float  # horizontal sensor fit
    f_number: float
    slices: list[SliceSpec]
    width: int
    height: int
    defocus_model: str = "cycles"  # optics.DEFOCUS_MODELS: which blur the ground truth describes

    def __post_init__(self):
        self.slices = [
            s
            if isinstance(s, SliceSpec)
            else SliceSpec(**s)
            if isinstance(s, dict)
            else SliceSpec(float(s), float(self.focal_length_mm))
            for s in self.slices
        ]

    @property
    def focus_distances(self) -> list[float]:
        return [s.focus_distance for s in self.slices]

    def frustum_tangents(self) -> tuple[float, float]:
        """(tx, ty): the view's half-width and half-height at planar depth 1 m."""
        return optics.frustum_tangents(self.focal_length_mm, self.sensor_width_mm, self.width, self.height)

    def intrinsics(self, lens_mm: float | None = None) -> np.ndarray:
        """3x3 camera matrix (OpenCV pixels) of the reference view, or of a view with another lens."""
        lens = self.focal_length_mm if lens_mm is None else lens_mm
        return optics.intrinsics(lens, self.sensor_width_mm, self.width, self.height)

    def aperture_fstop(self, k: int) -> float:
        """The f-stop Cycles is given for slice k so that it blurs as the camera's blur model says."""
        s = self.slices[k]
        return optics.cycles_aperture_fstop(self.defocus_model, s.focus_distance, self.f_number, self.focal_length_mm, s.lens_mm)

    def slice_homography(self, k: int) -> np.ndarray:
        """3x3 map from reference-view pixels to slice k's pixels (OpenCV convention).

        Exact for breathing and rotation; for translation it is the homography of the plane at the slice's
        focus distance (parallax off that plane is not captured; the pose is stored for exact warps).
        """
        s = self.slices[k]
        pose = s.pose()
        # A reference-frame point X (CV axes) in the slice camera: X_k = R' X + t'.
        r_cv = _BLENDER_TO_CV @ pose[:3, :3].T @ _BLENDER_TO_CV
        t_cv = -r_cv @ (_BLENDER_TO_CV @ pose[:3, 3])
        normal = np.array([0.0, 0.0, 1.0])  # the plane z = d in front of the reference camera
        h = self.intrinsics(s.lens_mm) @ (r_cv + np.outer(t_cv, normal) / s.focus_distance) @ np.linalg.inv(self.intrinsics())
        return h / h[2, 2]

    def slice_geometry(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(homographies (S,3,3), poses (S,4,4), lenses mm (S,)) as float32, as the file stores them."""
        n = len(self.slices)
        return (
            np.stack([self.slice_homography(k) for k in range(n)]).astype(np.float32),
            np.stack([s.pose() for s in self.slices]).astype(np.float32),
            np.array([s.lens_mm for s in self.slices], dtype=np.float32),
        )

    def defocus_maps(self, depth_m: np.ndarray) -> np.ndarray:
        """Signed blur-circle diameters (S, H, W) float32 px of a depth map, by the camera's blur model."""
        return optics.defocus_maps(
            depth_m, self.focus_distances, self.f_number, self.focal_length_mm, self.sensor_width_mm, self.defocus_model
        )


@dataclass
class CaptureSpec:
    """What the sensor does to each linear slice before it is stored (real-capture effects)."""

    noise_full_well: float = 0.0  # photo-electrons at linear value 1.0 (Poisson); 0 = no shot noise
    read_noise: float = 0.0  # Gaussian read noise, standard deviation in linear units
    jpeg_quality: int = 0  # 1..100 compresses each slice; 0 = off


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
    """Environment light: a vertical gradient between horizon and zenith colours, a sky texture, or an
    environment map (params['path'])."""

    kind: str  # 'gradient', 'sky' or 'envmap'
    color_horizon: list[float]
    color_zenith: list[float]
    strength: float
    params: dict = field(default_factory=dict)


@dataclass
class AssetUse:
    """A catalogue file a scene uses, and by what."""

    kind: str  # mesh, texture, envmap
    path: str
    sha256: str
    split: str
    used_by: str  # object or material name, or 'world'


@dataclass
class SampleInfo:
    """How the scene was sampled: provenance, not needed to render it."""

    sampler_version: int = 0
    depth_range: list[float] = field(default_factory=list)  # metres, the preset's
    background: str = ""  # the background kind drawn
    background_requested: str | None = None  # set when a wall layout did not fit and a backdrop replaced it
    split: str = "train"
    assets: list[AssetUse] = field(default_factory=list)


@dataclass
class SceneDescription:
    seed: int
    preset: str
    camera: CameraSpec
    objects: list[ObjectSpec]
    lights: list[LightSpec]
    world: WorldSpec
    capture: CaptureSpec = field(default_factory=CaptureSpec)
    info: SampleInfo = field(default_factory=SampleInfo)
    format_version: int = SCENE_FORMAT_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "SceneDescription":
        if d.get("format_version") != SCENE_FORMAT_VERSION:
            raise ValueError(
                f"scene description format_version {d.get('format_version')!r}: expected {SCENE_FORMAT_VERSION} "
                "(descriptions of focalstack 0.1 do not say their blur model and slices: render such a file's "
                "scenes again from its seeds and preset)"
            )

        def material(m: dict) -> MaterialSpec:
            return MaterialSpec(**{**m, "textures": [TextureLayer(**t) for t in m.get("textures", [])]})

        def obj(o: dict) -> ObjectSpec:
            return ObjectSpec(**{**o, "shape": ShapeSpec(**o["shape"]), "material": material(o["material"])})

        info = dict(d.get("info", {}))
        info["assets"] = [AssetUse(**a) for a in info.get("assets", [])]
        return cls(
            seed=int(d["seed"]),
            preset=d["preset"],
            camera=CameraSpec(**d["camera"]),
            objects=[obj(o) for o in d["objects"]],
            lights=[LightSpec(**light) for light in d["lights"]],
            world=WorldSpec(**d["world"]),
            capture=CaptureSpec(**d.get("capture", {})),
            info=SampleInfo(**info),
            format_version=d["format_version"],
        )

    @classmethod
    def from_json(cls, text: str) -> "SceneDescription":
        return cls.from_dict(json.loads(text))
