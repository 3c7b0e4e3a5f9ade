"""HDF5 schema version 2: the contract between the renderer, the importers, the trainer and anyone with h5py.

One file holds one split (or one shard of it): N scenes of S slices, H x W pixels. Datasets are
chunked one scene per chunk along axis 0 and grow as scenes are appended. A scene whose ``complete``
flag is false does not exist for readers.

Version 2 over version 1: a file states which ground truth it holds (root attribute ``ground_truth``,
see ``provenance.py``), so files imported from other data sets may lack what their source lacks
(FoD500 has no all-in-focus images, DDFF-12 no camera model), and a derived array that readers
recompute bit for bit (defocus maps, an exact function of depth and the camera) need not be stored.
Files of version 1 hold every array of ``ARRAYS`` and stay readable.

Version 3 over version 2: two optional ground truths, surface normals and an object-index mask
(``GROUND_TRUTH_V3``). Each array names the version that introduced it (``ArraySpec.since``): a file of an
earlier version does not declare it, and readers take it as absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FORMAT = "focalstack"
SCHEMA_VERSION = 3  # the version this code writes
READABLE_VERSIONS = (1, 2, 3)  # the versions it reads and validates

# Root attributes every file carries (version 1 files carry REQUIRED_ATTRS_V1).
REQUIRED_ATTRS = ("format", "schema_version", "generator_version", "created_utc", "config", "ground_truth")
REQUIRED_ATTRS_V1 = (
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


# How a dataset is present in a file:
#   required      every file holds it
#   ground_truth  declared by the file's ``ground_truth`` attribute: stored, recomputed by readers, or absent
#   optional      written by this generator; files of other writers may lack it (neutral value when absent)
PRESENCES = ("required", "ground_truth", "optional")


@dataclass(frozen=True)
class ArraySpec:
    name: str
    dtype: str  # numpy dtype name, or "str" for UTF-8 variable-length strings
    trailing: tuple[str, ...]  # symbolic shape after the leading N axis
    meaning: str
    presence: str = "required"
    since: int = 1  # the schema version that introduced it; files of earlier versions lack it
    # Vector arrays whose components follow the image axes (in the camera frame: +x right, +y up): the
    # component negated when the image is flipped left-right and up-down (surface normals: x and y), or None.
    # A transpose swaps the two and negates both.
    flip_negates: tuple[int | None, int | None] = (None, None)

    def __post_init__(self) -> None:
        if self.presence not in PRESENCES:
            raise ValueError(f"array {self.name!r}: presence {self.presence!r}, expected one of {', '.join(PRESENCES)}")

    @property
    def per_pixel(self) -> bool:
        return "H" in self.trailing

    def placeholder(self, shape: tuple[int, ...]) -> "np.ndarray":
        """A stand-in of ``shape`` for ground truth a file lacks (never read as values: samples flag it
        absent): NaN for floating-point arrays, 0 otherwise."""
        dtype = np.dtype(self.dtype)
        return np.full(shape, np.nan if dtype.kind == "f" else 0, dtype)


# Shapes use symbols S (slices), H, W; the leading N axis is implicit. The first twelve are schema
# version 1's table, in its order: a version-1 file holds every one of them.
ARRAYS: tuple[ArraySpec, ...] = (
    ArraySpec("stack", "uint8", ("S", "H", "W", "3"), "focal slices, 8-bit sRGB, in focus_distance order"),
    ArraySpec("aif", "uint8", ("H", "W", "3"), "all-in-focus (pinhole) render, 8-bit sRGB", "ground_truth"),
    ArraySpec("depth", "float32", ("H", "W"), "planar depth along the optical axis, metres", "ground_truth"),
    ArraySpec("defocus", "float32", ("S", "H", "W"), "signed blur-circle diameter, pixels (+ behind focus)", "ground_truth"),
    ArraySpec("edges", "uint8", ("H", "W"), "Canny edges of aif, 0 or 1", "ground_truth"),
    ArraySpec("focus_distance", "float32", ("S",), "focus distance of each slice, metres"),
    ArraySpec("f_number", "float32", (), "f-number of the scene's camera", "ground_truth"),
    ArraySpec("focal_length_mm", "float32", (), "focal length, millimetres", "ground_truth"),
    ArraySpec("sensor_width_mm", "float32", (), "sensor width, millimetres (horizontal fit)", "ground_truth"),
    ArraySpec("seed", "int64", (), "seed the scene was sampled from; -1 for imported scenes"),
    ArraySpec(
        "scene", "str", (), "JSON scene description, enough to render the scene again (imports: where the scene came from)"
    ),
    ArraySpec("complete", "bool", (), "set last, once all of the scene's arrays are written"),
)
ARRAY_NAMES = tuple(a.name for a in ARRAYS)  # the datasets of a version-1 file

# Added for real-capture effects (focus breathing, camera shake) and random stack sizes. Written by this
# generator into every file (identity geometry and full stacks when unused); optional for readers, as
# files of other writers may lack them. Pixel coordinates follow OpenCV: (0, 0) is the centre of the
# top-left pixel.
OPTIONAL_ARRAYS: tuple[ArraySpec, ...] = (
    ArraySpec(
        "slice_homography",
        "float32",
        ("S", "3", "3"),
        "maps reference-view pixel coordinates to each slice's pixel coordinates (plane at the slice's "
        "focus distance); identity without breathing or shake",
        "optional",
    ),
    ArraySpec(
        "slice_pose",
        "float32",
        ("S", "4", "4"),
        "pose of each slice's camera in the reference camera's frame (Blender axes: -Z forward, +Y up), m",
        "optional",
    ),
    ArraySpec(
        "slice_focal_length_mm",
        "float32",
        ("S",),
        "focal length each slice was rendered with, mm (the image distance when the lens breathes)",
        "optional",
    ),
    ArraySpec(
        "stack_size",
        "int16",
        (),
        "number of distinct slices; a shorter stack repeats its last slice (and its focus distance, "
        "defocus and geometry) up to S",
        "optional",
    ),
)

# Ground truth added in version 2 (absent from every version-1 file).
GROUND_TRUTH_V2: tuple[ArraySpec, ...] = (
    ArraySpec(
        "disparity",
        "float32",
        ("H", "W"),
        "disparity as the source data set gave it, pixels (DDFF-12); 0 = no ground truth",
        "ground_truth",
        since=2,
    ),
)

# Ground truth added in version 3: rendered only when asked (``focalstack-render --ground-truth``).
GROUND_TRUTH_V3: tuple[ArraySpec, ...] = (
    ArraySpec(
        "normals",
        "float16",
        ("H", "W", "3"),
        "surface normal of the surface each pixel sees (the all-in-focus render's), unit vector in the "
        "camera frame: +x right, +y up, +z towards the camera",
        "ground_truth",
        since=3,
        flip_negates=(0, 1),
    ),
    ArraySpec(
        "objects",
        "uint16",
        ("H", "W"),
        "which object each pixel sees: its index in the scene description's objects plus 1; 0 = "
        "background (objects of role 'background': walls, floors, backdrops; and the world)",
        "ground_truth",
        since=3,
    ),
)

WRITTEN_ARRAYS = ARRAYS + OPTIONAL_ARRAYS + GROUND_TRUTH_V2 + GROUND_TRUTH_V3  # every dataset the schema knows, in record order
SPECS = {a.name: a for a in WRITTEN_ARRAYS}
REQUIRED_NAMES = tuple(a.name for a in WRITTEN_ARRAYS if a.presence == "required")
GROUND_TRUTH_NAMES = tuple(a.name for a in WRITTEN_ARRAYS if a.presence == "ground_truth")
CAMERA_NAMES = ("f_number", "focal_length_mm", "sensor_width_mm")
# Ground truth the renderer makes only when asked (``focalstack-render --ground-truth``); off by default.
ON_REQUEST_GROUND_TRUTH = tuple(a.name for a in GROUND_TRUTH_V3)


def declared_in(version: int) -> tuple[str, ...]:
    """The ground-truth names a file of schema ``version`` declares (those introduced by then)."""
    return tuple(a.name for a in WRITTEN_ARRAYS if a.presence == "ground_truth" and a.since <= version)


def concrete_shape(spec: ArraySpec, n_slices: int, height: int, width: int) -> tuple[int, ...]:
    """The per-scene shape of an array once S, H and W are known."""
    sizes = {"S": n_slices, "H": height, "W": width, "3": 3, "4": 4}
    return tuple(sizes[s] for s in spec.trailing)


def check_dims(n_slices: int, height: int, width: int) -> None:
    for name, value in (("slices", n_slices), ("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise DatasetError(f"{name} = {value!r}: expected a positive integer")


def check_version(version) -> int:
    """The schema version as an int; DatasetError unless it is an integer this code reads."""
    # an integer scalar; a string, float or array is not a version we know
    if not (isinstance(version, (int, np.integer)) and int(version) in READABLE_VERSIONS):
        known = " or ".join(str(v) for v in READABLE_VERSIONS)
        raise DatasetError(f"attribute 'schema_version' is {version!r}, this reader reads version {known}")
    return int(version)
