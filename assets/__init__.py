"""focalstack.assets: the bundled asset catalogue.

Procedural mesh families (pure numpy, no Blender): ``build_mesh(ShapeSpec) -> (vertices, faces)``,
the catalogue ``SHAPE_FAMILIES`` (each family with a group tag and parameter ranges) and the helpers
that draw or validate family parameters.

Asset files (``catalogue.py``): ``load_catalogue(dirs) -> AssetCatalogue`` lists the package's own
meshes, texture images and environment maps (``assets/data``, made by ``make_bundled.py``) and those of
user folders, each assigned to the 'train' or 'test' split by its content hash (``asset_split``).
"""

from .catalogue import (
    MESH_FILE_FAMILY,
    TEST_FRACTION,
    AssetCatalogue,
    AssetFile,
    AssetWarning,
    asset_split,
    cached_catalogue,
    check_unchanged,
    load_catalogue,
    load_mesh_arrays,
)
from .shapes import (
    MAX_TRIANGLES,
    SHAPE_FAMILIES,
    SHAPE_GROUPS,
    ShapeFamily,
    ShapeParam,
    build_mesh,
    check_sample_range,
    families_in_group,
    family,
    resolve_params,
    sample_shape_params,
)

__all__ = [
    "MESH_FILE_FAMILY",
    "TEST_FRACTION",
    "AssetCatalogue",
    "AssetFile",
    "AssetWarning",
    "asset_split",
    "cached_catalogue",
    "load_catalogue",
    "check_unchanged",
    "load_mesh_arrays",
    "MAX_TRIANGLES",
    "SHAPE_FAMILIES",
    "SHAPE_GROUPS",
    "ShapeFamily",
    "ShapeParam",
    "build_mesh",
    "check_sample_range",
    "families_in_group",
    "family",
    "resolve_params",
    "sample_shape_params",
]
