"""One scene as stored: the record the writer takes and the reader returns.

The conversion between a record and the per-scene arrays of a file is driven by the schema's table
(``schema.WRITTEN_ARRAYS``): ``SceneRecord.arrays()`` yields one value per schema dataset the scene has,
and ``SceneRecord.from_arrays`` takes them back. Every copy of scenes (shard merging, import, export)
goes through these two, so a dataset added to the schema reaches every copy path; a test checks that the
record's fields are the schema's names.

Ground truth a file lacks (``provenance``: FoD500 has no all-in-focus image, DDFF-12 no camera) is None
in the record and left out of ``arrays()``; nothing is ever made up for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from . import schema
from .schema import DatasetError

# Per-scene scalars come back from h5py as numpy scalars; the record holds plain Python values.
_SCALARS = {"f_number": float, "focal_length_mm": float, "sensor_width_mm": float, "seed": int, "stack_size": int}


@dataclass
class SceneRecord:
    """Everything stored for one scene; shapes as in ``schema.ARRAYS`` without the N axis.

    Ground-truth fields (``schema.GROUND_TRUTH_NAMES``) are None where the file has no such data.
    """

    stack: np.ndarray  # (S, H, W, 3) uint8
    aif: np.ndarray | None  # (H, W, 3) uint8
    depth: np.ndarray | None  # (H, W) float32
    defocus: np.ndarray | None  # (S, H, W) float32
    edges: np.ndarray | None  # (H, W) uint8
    focus_distance: np.ndarray  # (S,) float32
    f_number: float | None
    focal_length_mm: float | None
    sensor_width_mm: float | None
    seed: int
    scene: str  # JSON scene description, as stored
    # Optional datasets (schema.OPTIONAL_ARRAYS); None = their neutral value (identity geometry, full stack).
    slice_homography: np.ndarray | None = None  # (S, 3, 3) float32
    slice_pose: np.ndarray | None = None  # (S, 4, 4) float32
    slice_focal_length_mm: np.ndarray | None = None  # (S,) float32
    stack_size: int | None = None  # distinct slices; slices from here on repeat the last one
    # Ground truth of schema v2 (absent from rendered files).
    disparity: np.ndarray | None = None  # (H, W) float32, DDFF-12's own disparity
    # Ground truth of schema v3, rendered on request (absent otherwise).
    normals: np.ndarray | None = None  # (H, W, 3) float16, unit vectors in the camera frame
    objects: np.ndarray | None = None  # (H, W) uint16, object index + 1, 0 = background
    # Not stored: the record's position among the complete scenes of the file it was read from.
    index: int | None = None

    @property
    def description(self) -> dict:
        """The scene description, parsed from its JSON."""
        return json.loads(self.scene)

    @property
    def n_slices(self) -> int:
        return int(np.asarray(self.focus_distance).shape[0])

    def has(self, name: str) -> bool:
        """True unless ``name`` is ground truth this scene lacks (None), or an optional dataset whose
        neutral value needs such ground truth (the slices' focal length without a camera)."""
        if getattr(self, name) is not None:
            return True
        presence = schema.SPECS[name].presence
        if presence == "optional":
            return name != "slice_focal_length_mm" or self.focal_length_mm is not None
        return presence == "required"

    def array(self, name: str) -> np.ndarray | str | None:
        """The value stored for schema dataset ``name``, in its dtype; neutral values for optional ones,
        None for absent ground truth."""
        spec = schema.SPECS[name]
        value = getattr(self, name)
        if value is None:
            if not self.has(name):
                return None
            value = _neutral(name, self)
        if spec.dtype == "str":
            return value
        return np.asarray(value, dtype=np.dtype(spec.dtype))

    def arrays(self) -> dict[str, np.ndarray | str]:
        """One value per schema dataset the scene has (``complete`` is the writer's), in the schema's order."""
        out: dict[str, np.ndarray | str] = {}
        for spec in schema.WRITTEN_ARRAYS:
            value = self.array(spec.name) if spec.name != "complete" and self.has(spec.name) else None
            if value is not None:
                out[spec.name] = value
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, object], index: int | None = None) -> "SceneRecord":
        """A record from per-scene values keyed by schema dataset names (unknown names are an error;
        missing optional ones and missing ground truth stay None)."""
        names = set(RECORD_FIELDS)
        unknown = sorted(set(arrays) - names - {"complete"})
        if unknown:
            raise DatasetError(f"scene record: unknown dataset(s) {', '.join(unknown)}")
        values: dict[str, Any] = dict.fromkeys(schema.GROUND_TRUTH_NAMES)
        for name, value in arrays.items():
            if name == "complete" or value is None:
                continue
            if name in _SCALARS:
                value = _SCALARS[name](np.asarray(value).item())
            elif name == "scene":
                value = value.decode("utf-8") if isinstance(value, bytes) else str(value)
            values[name] = value
        missing = [name for name in schema.REQUIRED_NAMES if name != "complete" and name not in values]
        if missing:
            raise DatasetError(f"scene record: dataset(s) {', '.join(missing)} missing")
        return cls(**values, index=index)


def _neutral(name: str, rec: SceneRecord):
    n = rec.n_slices
    if name == "stack_size":
        return n
    if name == "slice_homography":
        return np.repeat(np.eye(3, dtype=np.float32)[None], n, axis=0)
    if name == "slice_pose":
        return np.repeat(np.eye(4, dtype=np.float32)[None], n, axis=0)
    if name == "slice_focal_length_mm" and rec.focal_length_mm is not None:
        return np.full(n, rec.focal_length_mm, dtype=np.float32)
    raise DatasetError(f"scene record: dataset {name!r} has no value")


# The schema datasets a record holds, in the schema's order ('complete' is the writer's own flag).
RECORD_FIELDS = tuple(spec.name for spec in schema.WRITTEN_ARRAYS if spec.name != "complete")
assert RECORD_FIELDS == tuple(f.name for f in fields(SceneRecord) if f.name != "index"), "record != schema"
