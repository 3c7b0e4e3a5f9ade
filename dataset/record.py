"""One scene as stored: the record the writer takes and the reader returns.

The conversion between a record and the per-scene arrays of a file is driven by the schema's table
(``schema.WRITTEN_ARRAYS``): ``SceneRecord.arrays()`` yields exactly one value per schema dataset, and
``SceneRecord.from_arrays`` takes them back. Every copy of scenes (shard merging, export, import) goes
through these two, so a dataset added to the schema reaches every copy path; a test checks that the
record's fields are the schema's names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from . import schema
from .schema import DatasetError

# Per-scene scalars come back from h5py as numpy scalars; the record holds plain Python values.
_SCALARS = {"f_number": float, "focal_length_mm": float, "sensor_width_mm": float, "seed": int, "stack_size": int}


@dataclass
class SceneRecord:
    """Everything stored for one scene; shapes as in ``schema.ARRAYS`` without the N axis."""

    stack: np.ndarray  # (S, H, W, 3) uint8
    aif: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32
    defocus: np.ndarray  # (S, H, W) float32
    edges: np.ndarray  # (H, W) uint8
    focus_distance: np.ndarray  # (S,) float32
    f_number: float
    focal_length_mm: float
    sensor_width_mm: float
    seed: int
    scene: str  # JSON scene description, as stored
    # Optional datasets (schema.OPTIONAL_ARRAYS); None = their neutral value (identity geometry, full stack).
    slice_homography: np.ndarray | None = None  # (S, 3, 3) float32
    slice_pose: np.ndarray | None = None  # (S, 4, 4) float32
    slice_focal_length_mm: np.ndarray | None = None  # (S,) float32
    stack_size: int | None = None  # distinct slices; slices from here on repeat the last one
    # Not stored: the record's position among the complete scenes of the file it was read from.
    index: int | None = None

    @property
    def description(self) -> dict:
        """The scene description, parsed from its JSON."""
        return json.loads(self.scene)

    @property
    def n_slices(self) -> int:
        return int(np.asarray(self.focus_distance).shape[0])

    def array(self, name: str) -> np.ndarray:
        """The value stored for schema dataset ``name``, in its dtype; neutral values for optional ones."""
        spec = schema.SPECS[name]
        value = getattr(self, name)
        if value is None:
            value = _neutral(name, self)
        if spec.dtype == "str":
            return value
        return np.asarray(value, dtype=np.dtype(spec.dtype))

    def arrays(self) -> dict[str, np.ndarray]:
        """One value per schema dataset (``complete`` is the writer's), in the schema's order."""
        return {spec.name: self.array(spec.name) for spec in schema.WRITTEN_ARRAYS if spec.name != "complete"}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, object], index: int | None = None) -> "SceneRecord":
        """A record from per-scene values keyed by schema dataset names (unknown names are an error;
        missing optional ones stay None)."""
        names = set(RECORD_FIELDS)
        unknown = sorted(set(arrays) - names - {"complete"})
        if unknown:
            raise DatasetError(f"scene record: unknown dataset(s) {', '.join(unknown)}")
        values = {}
        for name, value in arrays.items():
            if name == "complete":
                continue
            if name in _SCALARS:
                value = _SCALARS[name](np.asarray(value).item())
            elif name == "scene":
                value = value.decode("utf-8") if isinstance(value, bytes) else str(value)
            values[name] = value
        missing = [s.name for s in schema.ARRAYS if s.name != "complete" and s.name not in values]
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
    if name == "slice_focal_length_mm":
        return np.full(n, rec.focal_length_mm, dtype=np.float32)
    raise DatasetError(f"scene record: dataset {name!r} has no value")


# The schema datasets a record holds, in the schema's order ('complete' is the writer's own flag).
RECORD_FIELDS = tuple(spec.name for spec in schema.WRITTEN_ARRAYS if spec.name != "complete")
assert RECORD_FIELDS == tuple(f.name for f in fields(SceneRecord) if f.name != "index"), "record != schema"
