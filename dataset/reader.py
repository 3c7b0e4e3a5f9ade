"""Reads schema-v1 files. Only complete scenes exist for a reader; unknown datasets are ignored."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from . import schema
from .schema import DatasetError


def check_header(f: h5py.File, path: Path) -> None:
    """Raise DatasetError unless ``f`` declares format 'focalstack' and a schema version we read."""
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != schema.FORMAT:
        raise DatasetError(f"{path}: attribute 'format' is {fmt!r}, expected {schema.FORMAT!r}: not a focalstack file")
    version = f.attrs.get("schema_version")
    # an integer scalar; a string, float or array is not a version we know
    if not (isinstance(version, (int, np.integer)) and int(version) == schema.SCHEMA_VERSION):
        raise DatasetError(
            f"{path}: attribute 'schema_version' is {version!r}, this reader reads version {schema.SCHEMA_VERSION}"
        )
    missing = [name for name in schema.ARRAY_NAMES if name not in f]
    if missing:
        raise DatasetError(f"{path}: dataset(s) missing: {', '.join(missing)}")


@dataclass
class Scene:
    """One complete scene, arrays without the N axis."""

    index: int  # position among the complete scenes of the file
    stack: np.ndarray
    aif: np.ndarray
    depth: np.ndarray
    defocus: np.ndarray
    edges: np.ndarray
    focus_distance: np.ndarray
    f_number: float
    focal_length_mm: float
    sensor_width_mm: float
    seed: int
    scene: dict
    # Slice geometry relative to the reference view; None in files written without it.
    slice_homography: np.ndarray | None = None  # (S, 3, 3)
    slice_pose: np.ndarray | None = None  # (S, 4, 4)
    slice_focal_length_mm: np.ndarray | None = None  # (S,)
    stack_size: int | None = None  # distinct slices; slices from here on repeat the last one


def open_h5(path: str | os.PathLike, mode: str = "r") -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise DatasetError(f"{path}: {open_error_text(exc)}") from None


def open_error_text(exc: OSError) -> str:
    """One line saying why h5py could not open a file."""
    if isinstance(exc, BlockingIOError) or "unable to lock file" in str(exc):
        return "locked by another process that has it open for writing (a render still running?)"
    return f"not a readable HDF5 file (truncated or foreign?): {exc}"


class FocalStackFile:
    """A schema-v1 file opened for reading. ``len()`` and indices count complete scenes only."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._h5 = open_h5(self.path)
        try:
            check_header(self._h5, self.path)
            self._rows = np.flatnonzero(self._h5["complete"][:].astype(bool))
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
    def n_slices(self) -> int:
        return int(self._h5["stack"].shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        return tuple(int(x) for x in self._h5["stack"].shape[2:4])

    @property
    def n_rows(self) -> int:
        """Rows in the file, complete or not."""
        return int(self._h5["complete"].shape[0])

    def __len__(self) -> int:
        return int(len(self._rows))

    def dataset(self, name: str) -> h5py.Dataset:
        if name not in self._h5:
            raise DatasetError(f"{self.path}: no dataset {name!r}")
        return self._h5[name]

    def read(self, name: str, index: int) -> np.ndarray:
        """One array of one complete scene."""
        return self.dataset(name)[self._row(index)]

    def read_all(self, name: str) -> np.ndarray:
        """A per-scene scalar or small array for every complete scene (e.g. 'seed', 'focus_distance')."""
        return self.dataset(name)[:][self._rows]

    def _row(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{self.path}: scene {index} out of range (file has {n} complete scenes)")
        return int(self._rows[index])

    def __getitem__(self, index: int) -> Scene:
        row = self._row(index)
        f = self._h5
        text = f["scene"][row]
        try:
            description = json.loads(text.decode() if isinstance(text, bytes) else text)
        except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
            raise DatasetError(f"{self.path}: scene {index}: dataset 'scene' is not JSON ({exc})") from None
        return Scene(
            index=index if index >= 0 else index + len(self),
            stack=f["stack"][row],
            aif=f["aif"][row],
            depth=f["depth"][row],
            defocus=f["defocus"][row],
            edges=f["edges"][row],
            focus_distance=f["focus_distance"][row],
            f_number=float(f["f_number"][row]),
            focal_length_mm=float(f["focal_length_mm"][row]),
            sensor_width_mm=float(f["sensor_width_mm"][row]),
            seed=int(f["seed"][row]),
            scene=description,
            **{spec.name: (f[spec.name][row] if spec.trailing else f[spec.name][row].item())
               for spec in schema.OPTIONAL_ARRAYS if spec.name in f},
        )

    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> "FocalStackFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
