"""focalstack.assets: the bundled asset catalogue.

Procedural mesh families (pure numpy, no Blender): ``build_mesh(ShapeSpec) -> (vertices, faces)``,
the catalogue ``SHAPE_FAMILIES`` (each family with a group tag and parameter ranges) and the helpers
that draw or validate family parameters.
"""

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
