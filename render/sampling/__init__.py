"""Scene sampling: a seed and a render configuration -> a plain-data ``SceneDescription``.

Pure Python and numpy, no Blender. Every random draw comes from generators spawned from the scene's seed,
one stream per consumer (``draws.Streams``), so the same seed and configuration give the same description,
byte for byte, and changing how one part draws leaves the others alone. No global random state.

Geometry conventions (``focalstack.render.scene``): the camera sits at the origin looking down -Z, +Y up,
horizontal sensor fit. A point at planar depth z is in view when |x| <= z * tx and |y| <= z * ty, with
(tx, ty) = ``CameraSpec.frustum_tangents()``.

Held-out test sets are disjoint from training by construction: shape families of the assets' 'test'
group and the lighting in ``TEST_ONLY`` are refused to presets with ``split = "train"``, and asset files
(meshes, texture images, environment maps from ``focalstack.assets.catalogue``) are drawn only from the
preset's own split, assigned by content hash; ``preset_signature`` lists what a preset can draw, by axis.

Modules: ``params`` (the [scene] table: default, check and meaning of every key), ``materials``,
``backgrounds``, ``objects``, ``lighting``, ``assets``, ``sample`` (the scene itself) and ``signature``.
"""

from .assets import add_asset_dirs, asset_catalogue, asset_fingerprint
from .lighting import kelvin_to_rgb, luminance
from .materials import TEXTURE_BASE_FREQUENCY, TEXTURE_FACTOR_RANGE, texture_factor_range
from .params import (
    BACKGROUND_KINDS,
    SCENE_DEFAULTS,
    SCENE_PARAMS,
    TEST_ONLY,
    TEXTURE_KINDS,
    describe_params,
    scene_params,
    validate_scene_params,
)
from .sample import SAMPLER_VERSION, sample_scene, scene_seed
from .signature import preset_signature, shape_ranges

__all__ = [
    "BACKGROUND_KINDS",
    "SAMPLER_VERSION",
    "SCENE_DEFAULTS",
    "SCENE_PARAMS",
    "TEST_ONLY",
    "TEXTURE_BASE_FREQUENCY",
    "TEXTURE_FACTOR_RANGE",
    "TEXTURE_KINDS",
    "add_asset_dirs",
    "asset_catalogue",
    "asset_fingerprint",
    "describe_params",
    "kelvin_to_rgb",
    "luminance",
    "preset_signature",
    "sample_scene",
    "scene_params",
    "scene_seed",
    "shape_ranges",
    "texture_factor_range",
    "validate_scene_params",
]
