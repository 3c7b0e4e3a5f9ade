"""HDF5 schema version 1: the contract between the renderer, the trainer and anyone with h5py.

One file holds one split (or one shard of it): N scenes of S slices, H x W pixels. Datasets are
chunked one scene per chunk along axis 0 and grow as scenes are appended. A scene whose ``complete``
flag is false does not exist for readers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FORMAT = "focalstack"
SCHEMA_VERSION = 1

# Root attributes every file carries.
REQUIRED_ATTRS = (
    "format",
    "schema_version",
    "generator_version",
    "blender_version",
    "created_utc",
    "preset",
    "config",
    "defocus_model",
)


class DatasetError(Exception):
    """A file, key or value that does not meet the schema; the message names it and what was expected."""


@dataclass(frozen=True)
class ArraySpec:
    name: str
    dtype: str  # numpy dtype name, or "str" for UTF-8 variable-length strings
    trailing: tuple[str, ...]  # symbolic shape after the leading N axis
    meaning: str


# Shapes use symbols S (slices), H, W; the leading N axis is implicit.
ARRAYS: tuple[ArraySpec, ...] = (
    ArraySpec("stack", "uint8", ("S", "H", "W", "3"), "focal slices, 8-bit sRGB, in focus_distance order"),
    ArraySpec("aif", "uint8", ("H", "W", "3"), "all-in-focus (pinhole) render, 8-bit sRGB"),
    ArraySpec("depth", "float32", ("H", "W"), "planar depth along the optical axis, metres"),
    ArraySpec("defocus", "float32", ("S", "H", "W"), "signed blur-circle diameter, pixels (+ behind focus)"),
    ArraySpec("edges", "uint8", ("H", "W"), "Canny edges of aif, 0 or 1"),
    ArraySpec("focus_distance", "float32", ("S",), "focus distance of each slice, metres"),
    ArraySpec("f_number", "float32", (), "f-number of the scene's camera"),
    ArraySpec("focal_length_mm", "float32", (), "focal length, millimetres"),
    ArraySpec("sensor_width_mm", "float32", (), "sensor width, millimetres (horizontal fit)"),
    ArraySpec("seed", "int64", (), "seed the scene was sampled from"),
    ArraySpec("scene", "str", (), "JSON scene description, enough to render the scene again"),
    ArraySpec("complete", "bool", (), "set last, once all of the scene's arrays are written"),
)
ARRAY_NAMES = tuple(a.name for a in ARRAYS)

# Added for real-capture effects (focus breathing, camera shake) and random stack sizes. Written by this
# generator into every file (identity geometry and full stacks when unused); optional for readers, as
# files of other writers may lack them. Pixel coordinates follow OpenCV: (0, 0) is the centre of the
# top-left pixel.
OPTIONAL_ARRAYS: tuple[ArraySpec, ...] = (
    ArraySpec("slice_homography", "float32", ("S", "3", "3"),
              "maps reference-view pixel coordinates to each slice's pixel coordinates (plane at the slice's "
              "focus distance); identity without breathing or shake"),
    ArraySpec("slice_pose", "float32", ("S", "4", "4"),
              "pose of each slice's camera in the reference camera's frame (Blender axes: -Z forward, +Y up), m"),
    ArraySpec("slice_focal_length_mm", "float32", ("S",),
              "focal length each slice was rendered with, mm (the image distance when the lens breathes)"),
    ArraySpec("stack_size", "int16", (),
              "number of distinct slices; a shorter stack repeats its last slice (and its focus distance, "
              "defocus and geometry) up to S"),
)
WRITTEN_ARRAYS = ARRAYS + OPTIONAL_ARRAYS
SPECS = {a.name: a for a in WRITTEN_ARRAYS}


def concrete_shape(spec: ArraySpec, n_slices: int, height: int, width: int) -> tuple[int, ...]:
    """The per-scene shape of an array once S, H and W are known."""
    sizes = {"S": n_slices, "H": height, "W": width, "3": 3, "4": 4}
    return tuple(sizes[s] for s in spec.trailing)


def check_dims(n_slices: int, height: int, width: int) -> None:
    for name, value in (("slices", n_slices), ("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise DatasetError(f"{name} = {value!r}: expected a positive integer")
