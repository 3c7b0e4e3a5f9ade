"""Appends scenes to a schema-v2 HDF5 file, one at a time, and resumes an interrupted file (of
schema v1 or v2: a resumed file keeps its own layout).

What the file holds is its ground-truth declaration (``provenance``): arrays declared absent get no
dataset, and defocus maps declared recomputed are not stored; ``append`` checks that a record carries
exactly the declared ground truth and that maps not stored equal their recomputation bit for bit.

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

from . import provenance, schema
from .files import atomic_path
from .groundtruth import recompute
from .record import SceneRecord
from .schema import DatasetError
from .storage import Storage, chunk_shape, storage_for

# Per-pixel arrays are chunked by scene (storage.py: one scene, or one colour channel of one scene, per
# chunk). The small per-scene arrays (focus distances, camera scalars, seed, scene JSON, complete) are
# chunked along axis 0 too, a chunk never splitting a scene, but many scenes per chunk: one-element
# chunks would cost a chunk lookup per scene whenever a reader loads e.g. all seeds or the complete
# flags. A chunk is allocated whole (uncompressed), so 128 scenes keeps a small file small (slice_pose:
# 41 kB per chunk) while 10 000 scenes need only 79 chunks.
SMALL_CHUNK_SCENES = 128


def _check_record(rec: SceneRecord, n_slices: int, height: int, width: int) -> None:
    for name, value in rec.arrays().items():
        spec = schema.SPECS[name]
        if not spec.trailing or isinstance(value, str):
            continue
        want = schema.concrete_shape(spec, n_slices, height, width)
        if value.shape != want:
            raise DatasetError(f"scene array {name!r}: expected shape {want}, got {value.shape}")
        raw = value if spec.presence == "optional" else np.asarray(getattr(rec, name))  # optional ones are cast
        if raw.dtype != np.dtype(spec.dtype):
            raise DatasetError(f"scene array {name!r}: expected dtype {spec.dtype}, got {raw.dtype}")
    size = int(np.asarray(rec.array("stack_size")))
    if not 1 <= size <= n_slices:
        raise DatasetError(f"scene array 'stack_size': {size} is not within 1..{n_slices}")
    try:
        json.loads(rec.scene)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"scene description: expected a JSON string ({exc})") from None


def _check_ground_truth(rec: SceneRecord, declared: provenance.Declaration) -> None:
    """The record holds exactly the ground truth the file declares; recomputed arrays match bit for bit."""
    for name, gt in declared.items():
        has = rec.has(name)
        if gt.stored and not has:
            raise DatasetError(f"scene array {name!r} missing: this file stores it ({gt.describe()})")
        if not gt.present and has:
            raise DatasetError(f"scene array {name!r} given, but this file declares it absent")
        if gt.recomputed and has:
            want = recompute(name, rec, declared)
            got = np.asarray(getattr(rec, name))
            if not np.array_equal(got, want, equal_nan=True):
                diff = np.abs(got.astype(np.float64) - want)
                raise DatasetError(
                    f"scene array {name!r} differs from its recomputation from the stored values by up to "
                    f"{np.nanmax(diff):.3g} ({gt.describe()}); this file does not store it, so readers would get "
                    "other values: compute it with groundtruth.stored_defocus_maps, or store it"
                )


def _read_config(f: h5py.File, path: Path) -> dict:
    try:
        return json.loads(f.attrs["config"])
    except (KeyError, ValueError, TypeError):
        raise DatasetError(f"{path}: attribute 'config' missing or not JSON") from None


def config_differences(old: dict, new: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """Names of the settings that differ between two configurations (ignoring some keys; 'table.key' ignores
    one key of a table)."""
    for dotted in (k for k in ignore if "." in k):
        table, key = dotted.split(".", 1)
        old, new = (_without(c, table, key) for c in (old, new))
    keys = sorted((set(old) | set(new)) - set(ignore))
    return [k for k in keys if old.get(k) != new.get(k)]


def _without(config: dict, table: str, key: str) -> dict:
    """``config`` with ``key`` left out of its ``table`` (a copy; the tables are not changed)."""
    if not isinstance(config.get(table), dict):
        return config
    return {**config, table: {k: v for k, v in config[table].items() if k != key}}


def differences_text(old: dict, new: dict, keys: list[str], ignore: tuple[str, ...] = ()) -> str:
    """'key=OLD (now NEW), ...' for ``keys``; of a table (a preset's [scene], say) only the entries that differ,
    as 'scene.objects=...', so that the line names the change rather than holding both tables (and not the
    'table.key' entries ``ignore`` names)."""
    parts = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            skip = tuple(i.split(".", 1)[1] for i in ignore if i.startswith(f"{k}."))
            parts += [f"{k}.{sub}={a.get(sub)!r} (now {b.get(sub)!r})" for sub in config_differences(a, b, skip)]
        else:
            parts.append(f"{k}={a!r} (now {b!r})")
    return ", ".join(parts)


def _declaration(attrs: dict, ground_truth: provenance.Declaration | None) -> provenance.Declaration:
    """The declaration a new file gets, checked against its attributes."""
    if ground_truth is None:
        ground_truth = provenance.rendered_declaration(str(attrs.get("defocus_model", "")))
    declared = provenance.complete_declaration(ground_truth)
    defocus = declared["defocus"]
    if defocus.source == "derived" and attrs.get("defocus_model") != defocus.method:
        raise DatasetError(
            f"attribute 'defocus_model' is {attrs.get('defocus_model')!r}, but the defocus maps are derived by {defocus.method!r}"
        )
    return declared


def _init_file(
    f: h5py.File,
    n_slices: int,
    height: int,
    width: int,
    attrs: dict,
    declared: provenance.Declaration,
    optional: tuple[str, ...] | None = None,
    storage: dict[str, Storage] | None = None,
) -> None:
    """Root attributes and the empty datasets of a new file: the required and optional ones, and the
    ground truth the declaration says the file stores."""
    f.attrs["format"] = schema.FORMAT
    f.attrs["schema_version"] = schema.SCHEMA_VERSION
    f.attrs["ground_truth"] = provenance.to_json(declared)
    for key, value in attrs.items():
        if key in ("format", "schema_version", "ground_truth"):
            raise DatasetError(f"root attribute {key!r} is the writer's own")
        f.attrs[key] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
    missing = [k for k in schema.REQUIRED_ATTRS if k not in f.attrs]
    if missing:
        raise DatasetError(f"root attributes missing: {', '.join(missing)}")
    for spec in schema.WRITTEN_ARRAYS:
        if not _stores(spec, declared, optional):
            continue
        shape = schema.concrete_shape(spec, n_slices, height, width)
        dtype = h5py.string_dtype("utf-8") if spec.dtype == "str" else np.dtype(spec.dtype)
        layout = storage_for(spec.name, storage)
        f.create_dataset(
            spec.name,
            shape=(0, *shape),
            maxshape=(None, *shape),
            chunks=chunk_shape(spec, shape, layout, SMALL_CHUNK_SCENES),
            dtype=dtype,
            **layout.filters,
        )
        f[spec.name].attrs["meaning"] = spec.meaning


def _stores(spec: schema.ArraySpec, declared: provenance.Declaration, optional: tuple[str, ...] | None) -> bool:
    if spec.presence == "ground_truth":
        return declared[spec.name].stored
    if spec.presence == "optional" and optional is not None and spec.name not in optional:
        return False
    if spec.name == "slice_focal_length_mm":  # a camera-less file has no focal length to repeat
        return declared["focal_length_mm"].present
    return True


class FocalStackWriter:
    """Writer for one schema-v2 file (or a schema-v1 file it resumes). Use ``create_or_resume`` (or
    ``create`` for a path the caller owns) and then ``append`` scenes."""

    def __init__(self, path: Path, h5: h5py.File, n_slices: int, height: int, width: int, declared: provenance.Declaration):
        self.path = path
        self._h5 = h5
        self.n_slices, self.height, self.width = n_slices, height, width
        self.ground_truth = declared

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
        ground_truth: provenance.Declaration | None = None,
    ) -> "FocalStackWriter":
        """Open ``path`` for appending: create it, or resume it if it holds the same configuration.

        ``attrs`` are the root attributes (``config`` as a dict, serialised here). ``ground_truth`` says
        what the file holds (``provenance``; default: everything, rendered, defocus maps stored). An
        existing file made with a different configuration (other than keys in ``resume_ignore``) is
        refused, untouched; a resumed file keeps its own layout and declaration. The first incomplete
        scene and everything after it are dropped, so appending resumes there.
        """
        path = Path(path)
        schema.check_dims(n_slices, height, width)
        if not path.parent.is_dir():
            raise DatasetError(f"{path}: folder {path.parent} does not exist")
        config = attrs.get("config")
        if not isinstance(config, dict):
            raise DatasetError("attribute 'config': expected a dict of the configuration")
        if path.exists():
            return cls._resume(path, n_slices, height, width, config, resume_ignore)
        declared = _declaration(attrs, ground_truth)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            _init_file(f, n_slices, height, width, attrs, declared)
        return cls(path, h5py.File(path, "r+"), n_slices, height, width, declared)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        n_slices: int,
        height: int,
        width: int,
        attrs: dict,
        ground_truth: provenance.Declaration | None = None,
        optional: tuple[str, ...] | None = None,
        storage: dict[str, Storage] | None = None,
    ) -> "FocalStackWriter":
        """A new file at ``path``, replacing whatever is there: for a temporary path the caller renames
        into place when done (``files.atomic_path``), as the importers do. ``optional`` names the optional
        datasets to write (default: all; an importer leaves out slice geometry its source does not know);
        ``storage`` the layout of each per-pixel dataset (default ``storage.STORAGE``)."""
        path = Path(path)
        schema.check_dims(n_slices, height, width)
        declared = _declaration(attrs, ground_truth)
        f = h5py.File(path, "w")
        try:
            _init_file(f, n_slices, height, width, attrs, declared, optional, storage)
        except BaseException:
            f.close()
            raise
        return cls(path, f, n_slices, height, width, declared)

    @classmethod
    def check_existing(
        cls, path: str | os.PathLike, n_slices: int, height: int, width: int, config: dict, ignore: tuple[str, ...] = ()
    ) -> int:
        """The number of complete scenes of an existing ``path`` that ``create_or_resume`` would resume with
        this configuration, checked on a read-only handle (so readers of the file do not stop it); DatasetError
        naming what differs otherwise."""
        from .reader import check_header, declaration_of, open_error_text  # reader depends on schema only: no cycle

        path = Path(path)
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise DatasetError(f"{path}: exists but is {open_error_text(exc)}; not overwriting") from None
        try:
            check_header(f, path)
            declaration_of(f, path)
            old = _read_config(f, path)
            # compare as stored: JSON turns tuples into lists
            stored = json.loads(json.dumps(config, sort_keys=True))
            diff = config_differences(old, stored, ignore)
            if diff:
                details = differences_text(old, stored, diff, ignore)
                raise DatasetError(f"{path}: exists with other settings: {details}; choose another --out or the same settings")
            have = f["stack"].shape[1:]
            want = (n_slices, height, width, 3)
            if have != want:
                raise DatasetError(f"{path}: 'stack' holds slices of shape {have}, expected {want}")
            complete = f["complete"][:]
            return int(np.argmin(complete)) if not complete.all() else len(complete)
        finally:
            f.close()

    @classmethod
    def _resume(
        cls, path: Path, n_slices: int, height: int, width: int, config: dict, ignore: tuple[str, ...]
    ) -> "FocalStackWriter":
        from .reader import declaration_of

        # Every check runs on a read-only handle: a file we refuse is never opened for writing, so it
        # stays byte-identical (HDF5 may touch the superblock when a file is merely opened with r+).
        cls.check_existing(path, n_slices, height, width, config, ignore)
        with h5py.File(path, "r") as f:
            declared = declaration_of(f, path)
        try:
            f = h5py.File(path, "r+")
        except OSError as exc:
            from .reader import open_error_text

            raise DatasetError(f"{path}: cannot open for appending: {open_error_text(exc)}") from None
        try:
            complete = f["complete"][:]
            k = int(np.argmin(complete)) if not complete.all() else len(complete)
            for spec in schema.WRITTEN_ARRAYS:
                if spec.name in f:  # optional datasets may be missing in files of other writers
                    f[spec.name].resize(k, axis=0)
            f.flush()
        except BaseException:
            f.close()
            raise
        return cls(path, f, n_slices, height, width, declared)

    # -- writing ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of complete scenes in the file."""
        return int(self._h5["complete"].shape[0])

    def seeds(self) -> np.ndarray:
        return self._h5["seed"][:]

    def append(self, rec: SceneRecord) -> int:
        """Write one scene; its ``complete`` flag goes last. Returns the scene index."""
        _check_record(rec, self.n_slices, self.height, self.width)
        _check_ground_truth(rec, self.ground_truth)
        f = self._h5
        i = len(self)
        names = [spec.name for spec in schema.WRITTEN_ARRAYS if spec.name in f]
        for name in names:
            f[name].resize(i + 1, axis=0)
        for name, value in rec.arrays().items():
            if name in f:  # not stored: recomputed ground truth, optional datasets other writers lack
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
