"""Reads schema-v1 and v2 files. Only complete scenes exist for a reader; unknown datasets are ignored.

Ground truth a file lacks is None in the records it returns, and an error (naming it) where asked for
by name; defocus maps the file recomputes instead of storing (``provenance``) are computed here, bit for
bit what the writer was given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from . import optics, provenance, schema
from .groundtruth import recompute
from .record import SceneRecord
from .schema import DatasetError
from .storage import check_decodable, read_row


def _attr(f: h5py.File, key: str):
    value = f.attrs.get(key)
    return value.decode() if isinstance(value, bytes) else value


def check_header(f: h5py.File, path: Path) -> int:
    """The file's schema version; DatasetError unless ``f`` declares format 'focalstack', a schema
    version we read, and holds the datasets that version (and its ground-truth declaration) requires."""
    fmt = _attr(f, "format")
    if fmt != schema.FORMAT:
        raise DatasetError(f"{path}: attribute 'format' is {fmt!r}, expected {schema.FORMAT!r}: not a focalstack file")
    try:
        version = schema.check_version(f.attrs.get("schema_version"))
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    if version == 1:
        required = schema.ARRAY_NAMES
    else:
        declared = declaration_of(f, path)
        required = (*schema.REQUIRED_NAMES, *provenance.stored_names(declared))
    missing = [name for name in required if name not in f]
    if missing:
        raise DatasetError(f"{path}: dataset(s) missing: {', '.join(missing)}")
    return version


def declaration_of(f: h5py.File, path: Path) -> provenance.Declaration:
    """Which ground truth the file holds (``provenance``): its ``ground_truth`` attribute, or for a
    schema-v1 file, everything."""
    if f.attrs.get("schema_version") == 1:
        return provenance.v1_declaration(_attr(f, "defocus_model"))
    if "ground_truth" not in f.attrs:
        raise DatasetError(f"{path}: root attribute 'ground_truth' missing (schema v2 files declare their ground truth)")
    try:
        return provenance.from_json(f.attrs["ground_truth"], version=int(f.attrs["schema_version"]))
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from None


def open_h5(path: str | os.PathLike, mode: str = "r") -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if path.is_dir():
        raise DatasetError(f"{path}: a folder, expected an HDF5 file")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise DatasetError(f"{path}: {open_error_text(exc)}") from None


def one_line_text(exc: Exception) -> str:
    return " ".join(str(exc).split())[:160]


def is_locked(exc: OSError) -> bool:
    """Whether h5py could not open a file because another process has it open for writing."""
    return isinstance(exc, BlockingIOError) or "unable to lock file" in str(exc)


def open_error_text(exc: OSError) -> str:
    """One line saying why h5py could not open a file."""
    if is_locked(exc):
        return "locked by another process that has it open for writing (a render still running?)"
    return f"not a readable HDF5 file (truncated or foreign?): {one_line_text(exc)}"


def camera_problem(
    focus_distance: np.ndarray, f_number: float | None, focal_length_mm: float | None, sensor_width_mm: float | None
) -> str | None:
    """What is wrong with one scene's camera and focus distances (as ``validate`` words it), or None.
    A camera value the file lacks (DDFF-12) is None; distances then need only be positive."""
    for name, value in zip(schema.CAMERA_NAMES, (f_number, focal_length_mm, sensor_width_mm)):
        if value is not None and not (np.isfinite(value) and value > 0):
            return f"{name!r} is {value!r}, expected a number > 0"
    if not np.all(optics.beyond_focal_length(focus_distance, focal_length_mm or 0.0)):
        beyond = f"beyond the focal length ({focal_length_mm * 1e-3:g} m)" if focal_length_mm else "> 0"
        listed = ", ".join(f"{v:g}" for v in np.asarray(focus_distance, np.float64))
        return f"'focus_distance' [{listed}] m, expected every distance {beyond}"
    return None


class FocalStackFile:
    """A schema-v1, v2 or v3 file opened for reading. ``len()`` and indices count complete scenes only.

    ``ground_truth`` says which ground truth the file holds and where each array came from.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._h5 = open_h5(self.path)
        try:
            self.schema_version = check_header(self._h5, self.path)
            self._declared = declaration_of(self._h5, self.path)
            self._rows = np.flatnonzero(self._h5["complete"][:].astype(bool))
            self._columns: dict[str, np.ndarray] = {}  # small per-scene datasets, read whole on first use
            # the schema datasets the file stores, looked up once (h5py's lookup costs per call)
            self._stored = {spec.name: self._h5[spec.name] for spec in schema.WRITTEN_ARRAYS if spec.name in self._h5}
            for ds in self._stored.values():
                try:
                    check_decodable(ds)
                except DatasetError as exc:
                    raise DatasetError(f"{self.path}: {exc}") from None
        except BaseException:
            self._h5.close()
            raise

    # -- metadata --------------------------------------------------------------------------------
    @property
    def attrs(self) -> dict:
        out = {}
        for key, value in self._h5.attrs.items():
            out[key] = value.decode() if isinstance(value, bytes) else value
        return out

    @property
    def config(self) -> dict:
        try:
            return json.loads(self._h5.attrs["config"])
        except (KeyError, ValueError, TypeError):
            raise DatasetError(f"{self.path}: attribute 'config' missing or not JSON") from None

    @property
    def ground_truth(self) -> dict[str, provenance.GroundTruth]:
        """Every ground-truth dataset of the schema -> its ``provenance.GroundTruth`` (``.present``:
        readers give values for it; ``.source``: rendered, imported, derived or absent; ``.stored``;
        ``.no_data``: the pixel value meaning 'no ground truth')."""
        return dict(self._declared)

    def has(self, name: str) -> bool:
        """True when the file gives values for dataset ``name`` (stored, or recomputed)."""
        if name in self._declared:
            return self._declared[name].present
        return name in self._h5

    @property
    def n_slices(self) -> int:
        return int(self._h5["stack"].shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        height, width = self._h5["stack"].shape[2:4]
        return int(height), int(width)

    @property
    def n_rows(self) -> int:
        """Rows in the file, complete or not."""
        return int(self._h5["complete"].shape[0])

    def __len__(self) -> int:
        return int(len(self._rows))

    def dataset(self, name: str) -> h5py.Dataset:
        """The stored HDF5 dataset ``name`` (DatasetError for data the file lacks or recomputes)."""
        gt = self._declared.get(name)
        if gt is not None and not gt.stored:
            how = "absent from this file" if not gt.present else f"{gt.describe()}: use read() or read_all()"
            raise DatasetError(f"{self.path}: no dataset {name!r} ({how})")
        if name not in self._h5:
            raise DatasetError(f"{self.path}: no dataset {name!r}")
        return self._h5[name]

    def read(self, name: str, index: int) -> np.ndarray:
        """One array of one complete scene (recomputed where the file does not store it)."""
        if name in self._declared and self._declared[name].recomputed:
            return getattr(self[index], name)
        return self._read_row(self.dataset(name), self._row(index))

    def _read_row(self, ds: h5py.Dataset, row: int):
        """Row ``row`` of a stored dataset. The small per-scene numeric datasets (camera, focus
        distances, slice geometry, ...: a few hundred bytes per scene) are read whole once and served
        from memory: one HDF5 read per dataset per scene would cost more than decoding the images."""
        spec = schema.SPECS.get(ds.name.lstrip("/"))
        try:
            if spec is None or spec.per_pixel or spec.dtype == "str":
                return read_row(ds, row)
            column = self._columns.get(spec.name)
            if column is None:
                column = self._columns[spec.name] = ds[:]
        except OSError as exc:  # a chunk that fails its checksum, or cannot be decoded
            raise DatasetError(
                f"{self.path}: {ds.name.lstrip('/')!r} of row {row} cannot be read: damaged "
                f"({one_line_text(exc)}); `focalstack-data salvage` copies the intact scenes"
            ) from None
        return column[row].copy() if column.ndim > 1 else column[row]

    def read_all(self, name: str) -> np.ndarray:
        """A per-scene scalar or small array for every complete scene (e.g. 'seed', 'focus_distance')."""
        if name in self._declared and self._declared[name].recomputed:
            return np.stack([self.read(name, i) for i in range(len(self))]) if len(self) else np.empty((0,))
        return self.dataset(name)[:][self._rows]

    def _row(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{self.path}: scene {index} out of range (file has {n} complete scenes)")
        return int(self._rows[index])

    def __getitem__(self, index: int) -> SceneRecord:
        """Complete scene ``index``: every schema dataset the file holds, through ``SceneRecord.from_arrays``;
        ground truth the file lacks is None, and recomputed ground truth is computed."""
        row = self._row(index)
        arrays = {name: self._read_row(ds, row) for name, ds in self._stored.items()}
        try:
            record = SceneRecord.from_arrays(arrays, index=index if index >= 0 else index + len(self))
            record.description
        except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
            raise DatasetError(f"{self.path}: scene {index}: dataset 'scene' is not JSON ({exc})") from None
        for name, gt in self._declared.items():
            if not gt.present:
                setattr(record, name, None)  # a dataset the declaration disowns is not read as data
        problem = camera_problem(record.focus_distance, record.f_number, record.focal_length_mm, record.sensor_width_mm)
        if problem:  # the optics would divide by it, or focus inside the lens
            raise self._camera_error(index if index >= 0 else index + len(self), problem)
        for name, gt in self._declared.items():
            if gt.recomputed:
                setattr(record, name, recompute(name, record, self._declared))
        return record

    def check_cameras(self) -> None:
        """DatasetError naming the first complete scene whose camera or focus distances no optics can use
        (for readers of the small arrays alone; reading a scene checks its own)."""
        focus = self.read_all("focus_distance")
        cams = [self.read_all(n) if self.has(n) else None for n in schema.CAMERA_NAMES]
        for i in range(len(self)):
            problem = camera_problem(focus[i], *(None if c is None else float(c[i]) for c in cams))
            if problem:
                raise self._camera_error(i, problem)

    def _camera_error(self, index: int, problem: str) -> DatasetError:
        return DatasetError(f"{self.path}: scene {index}: {problem} (focalstack-data validate lists every problem)")

    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> "FocalStackFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
