"""Reads schema-v1 files. Only complete scenes exist for a reader; unknown datasets are ignored."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from . import schema
from .record import SceneRecord
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

    def __getitem__(self, index: int) -> SceneRecord:
        """Complete scene ``index``: every schema dataset the file holds, through ``SceneRecord.from_arrays``."""
        row = self._row(index)
        f = self._h5
        arrays = {spec.name: f[spec.name][row] for spec in schema.WRITTEN_ARRAYS if spec.name in f}
        try:
            record = SceneRecord.from_arrays(arrays, index=index if index >= 0 else index + len(self))
            record.description
        except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
            raise DatasetError(f"{self.path}: scene {index}: dataset 'scene' is not JSON ({exc})") from None
        return record

    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> "FocalStackFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
