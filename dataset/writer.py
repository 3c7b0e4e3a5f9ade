"""Appends scenes to a schema-v1 HDF5 file, one at a time, and resumes an interrupted file.

Crash safety: a scene's ``complete`` flag is written and flushed after all its arrays, so a killed run
leaves at worst one incomplete scene, which readers ignore and the next run overwrites. A new file is
created under a temporary name and renamed into place, so a crash never leaves a headerless file where
the caller asked for output, and an existing file is only ever opened for appending after its format
and configuration have been checked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from . import schema
from .files import atomic_path
from .record import SceneRecord
from .schema import DatasetError

# Chosen by benchmarks/compression_bench.py (synthetic 256 x 256 scenes, 5 slices, 2 CPU cores; raw
# 2818 kB per scene): gzip 6 + shuffle stores 1608 kB per scene (ratio 1.75: images 1.37, float maps
# 2.10, edges 28), writes in ~67 ms and reads back in ~10.4 ms per scene. Shuffle is what makes float
# maps compress (gzip 6 alone: 2128 kB total); gzip 1 + shuffle is 3% larger (1660 kB) for 41 ms of
# writing, lzf + shuffle 18% larger (1892 kB) but reads in 8.4 ms. gzip reads equally fast at every
# level, and tens of ms of writing are nothing against ~10 s of rendering, so the smallest wins.
# Real fod500 renders (4 scenes, 256 px, `--from`) agree: gzip 6 + shuffle 1575 kB per scene (ratio
# 1.79: images 1.27, float maps 2.45), gzip 1 + shuffle 1648 kB, lzf + shuffle 1845 kB, none 2818 kB.
COMPRESSION = {"compression": "gzip", "compression_opts": 6, "shuffle": True}

# Per-pixel arrays are chunked one scene per chunk (the unit a reader fetches). The small per-scene
# arrays (focus distances, camera scalars, seed, scene JSON, complete) are chunked along axis 0 too, a
# chunk never splitting a scene, but many scenes per chunk: one-element chunks would cost a chunk
# lookup per scene whenever a reader loads e.g. all seeds or the complete flags. A chunk is allocated
# whole (uncompressed), so 128 scenes keeps a small file small (slice_pose: 41 kB per chunk) while
# 10 000 scenes need only 79 chunks.
SMALL_CHUNK_SCENES = 128


def _check_record(rec: SceneRecord, n_slices: int, height: int, width: int) -> None:
    for name, value in rec.arrays().items():
        spec = schema.SPECS[name]
        if not spec.trailing:
            continue
        want = schema.concrete_shape(spec, n_slices, height, width)
        if value.shape != want:
            raise DatasetError(f"scene array {name!r}: expected shape {want}, got {value.shape}")
        raw = np.asarray(getattr(rec, name)) if spec in schema.ARRAYS else value  # optional ones are cast
        if raw.dtype != np.dtype(spec.dtype):
            raise DatasetError(f"scene array {name!r}: expected dtype {spec.dtype}, got {raw.dtype}")
    size = int(rec.array("stack_size"))
    if not 1 <= size <= n_slices:
        raise DatasetError(f"scene array 'stack_size': {size} is not within 1..{n_slices}")
    try:
        json.loads(rec.scene)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"scene description: expected a JSON string ({exc})") from None


def _read_config(f: h5py.File, path: Path) -> dict:
    try:
        return json.loads(f.attrs["config"])
    except (KeyError, ValueError, TypeError):
        raise DatasetError(f"{path}: attribute 'config' missing or not JSON") from None


def config_differences(old: dict, new: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """Names of the settings that differ between two configurations (ignoring some keys)."""
    keys = sorted((set(old) | set(new)) - set(ignore))
    return [k for k in keys if old.get(k) != new.get(k)]


class FocalStackWriter:
    """Writer for one schema-v1 file. Use ``create_or_resume`` and then ``append`` scenes."""

    def __init__(self, path: Path, h5: h5py.File, n_slices: int, height: int, width: int):
        self.path = path
        self._h5 = h5
        self.n_slices, self.height, self.width = n_slices, height, width

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def create_or_resume(
        cls,
        path: str | os.PathLike,
        *,
        n_slices: int,
        height: int,
        width: int,
        attrs: dict,
        resume_ignore: tuple[str, ...] = (),
    ) -> "FocalStackWriter":
        """Open ``path`` for appending: create it, or resume it if it holds the same configuration.

        ``attrs`` are the root attributes (``config`` as a dict, serialised here). An existing file made
        with a different configuration (other than keys in ``resume_ignore``) is refused, untouched.
        The first incomplete scene and everything after it are dropped, so appending resumes there.
        """
        path = Path(path)
        schema.check_dims(n_slices, height, width)
        if not path.parent.is_dir():
            raise DatasetError(f"{path}: folder {path.parent} does not exist")
        config = attrs.get("config")
        if not isinstance(config, dict):
            raise DatasetError("attribute 'config': expected a dict of the render configuration")
        if path.exists():
            return cls._resume(path, n_slices, height, width, config, resume_ignore)
        return cls._create(path, n_slices, height, width, attrs)

    @classmethod
    def _create(cls, path: Path, n_slices: int, height: int, width: int, attrs: dict) -> "FocalStackWriter":
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["format"] = schema.FORMAT
            f.attrs["schema_version"] = schema.SCHEMA_VERSION
            for key, value in attrs.items():
                f.attrs[key] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
            missing = [k for k in schema.REQUIRED_ATTRS if k not in f.attrs]
            if missing:
                raise DatasetError(f"root attributes missing: {', '.join(missing)}")
            for spec in schema.WRITTEN_ARRAYS:
                shape = schema.concrete_shape(spec, n_slices, height, width)
                dtype = h5py.string_dtype("utf-8") if spec.dtype == "str" else np.dtype(spec.dtype)
                big = "H" in spec.trailing  # compress the per-pixel arrays; small ones are not worth it
                f.create_dataset(
                    spec.name,
                    shape=(0, *shape),
                    maxshape=(None, *shape),
                    chunks=(1, *shape) if big else (SMALL_CHUNK_SCENES, *shape),
                    dtype=dtype,
                    **(COMPRESSION if big else {}),
                )
                f[spec.name].attrs["meaning"] = spec.meaning
        return cls(path, h5py.File(path, "r+"), n_slices, height, width)

    @classmethod
    def _resume(
        cls, path: Path, n_slices: int, height: int, width: int, config: dict, ignore: tuple[str, ...]
    ) -> "FocalStackWriter":
        from .reader import check_header  # reader depends on schema only; no cycle at import time

        # Every check runs on a read-only handle: a file we refuse is never opened for writing, so it
        # stays byte-identical (HDF5 may touch the superblock when a file is merely opened with r+).
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise DatasetError(f"{path}: exists but is not a readable HDF5 file ({exc}); not overwriting") from None
        try:
            check_header(f, path)
            old = _read_config(f, path)
            # compare as stored: JSON turns tuples into lists
            diff = config_differences(old, json.loads(json.dumps(config, sort_keys=True)), ignore)
            if diff:
                details = ", ".join(f"{k}={old.get(k)!r} (now {config.get(k)!r})" for k in diff)
                raise DatasetError(
                    f"{path}: exists with other settings: {details}; choose another --out or the same settings"
                )
            have = f["stack"].shape[1:]
            want = (n_slices, height, width, 3)
            if have != want:
                raise DatasetError(f"{path}: 'stack' holds slices of shape {have}, expected {want}")
        finally:
            f.close()
        try:
            f = h5py.File(path, "r+")
        except OSError as exc:
            raise DatasetError(f"{path}: cannot open for appending ({exc})") from None
        try:
            complete = f["complete"][:]
            k = int(np.argmin(complete)) if not complete.all() else len(complete)
            for spec in schema.WRITTEN_ARRAYS:
                if spec.name in f:  # slice geometry is optional in files of other writers
                    f[spec.name].resize(k, axis=0)
            f.flush()
        except BaseException:
            f.close()
            raise
        return cls(path, f, n_slices, height, width)

    # -- writing ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of complete scenes in the file."""
        return int(self._h5["complete"].shape[0])

    def seeds(self) -> np.ndarray:
        return self._h5["seed"][:]

    def append(self, rec: SceneRecord) -> int:
        """Write one scene; its ``complete`` flag goes last. Returns the scene index."""
        _check_record(rec, self.n_slices, self.height, self.width)
        f = self._h5
        i = len(self)
        names = [spec.name for spec in schema.WRITTEN_ARRAYS if spec.name in f]
        for name in names:
            f[name].resize(i + 1, axis=0)
        for name, value in rec.arrays().items():
            if name in f:  # files of other writers may lack optional datasets
                f[name][i] = value
        f["complete"][i] = False
        f.flush()
        f["complete"][i] = True
        f.flush()
        return i

    def attr(self, key: str, default=None):
        """A root attribute (JSON-decoded where it was stored as JSON), or ``default``."""
        value = self._h5.attrs.get(key, default)
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and value[:1] in "[{":
            try:
                return json.loads(value)
            except ValueError:
                pass
        return value

    def set_attr(self, key: str, value) -> None:
        """Set a root attribute; dicts and lists are stored as JSON. Not for the schema's own attributes."""
        if key in ("format", "schema_version", "config"):
            raise DatasetError(f"root attribute {key!r} is the writer's own")
        self._h5.attrs[key] = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
        self._h5.flush()

    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> "FocalStackWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
