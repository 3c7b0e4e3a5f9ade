"""What ``focalstack-data inspect`` prints about a file: counts, ground truth, camera settings, depth range
and per-dataset storage (``summarize``)."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from . import schema
from .reader import FocalStackFile
from .schema import DatasetError
from .storage import is_planar


def _f32(value) -> float:
    """A float32 as the float it was written from (2.9, not 2.9000000953674316)."""
    return float(str(np.float32(value)))


def _unique_sorted(values: np.ndarray) -> list[float]:
    return [_f32(v) for v in np.unique(np.asarray(values, dtype=np.float32))]


def summarize(path: str | os.PathLike, depth_range: bool = True) -> dict:
    """What ``inspect`` prints, for a file that ``FocalStackFile`` opens (raises DatasetError if not).

    Camera settings and seeds are over complete scenes; the depth range reads every complete scene's
    depth map, one chunk at a time (skip it with ``depth_range=False``), leaving out no-data pixels.
    """
    path = Path(path)
    out: dict = {"path": str(path), "file_size": path.stat().st_size}
    with FocalStackFile(path) as fs:
        out["attrs"] = {k: v for k, v in fs.attrs.items() if k not in ("config", "ground_truth")}
        out["schema_version"] = fs.schema_version
        out["ground_truth"] = fs.ground_truth
        try:
            out["config"] = fs.config
        except DatasetError:
            out["config"] = None
        out["n_rows"], out["n_complete"] = fs.n_rows, len(fs)
        out["n_incomplete"] = fs.n_rows - len(fs)
        out["n_slices"] = fs.n_slices
        out["height"], out["width"] = fs.image_size
        if len(fs):
            _scene_values(fs, out, depth_range)
        out["datasets"] = _storage(fs)
    return out


def _scene_values(fs: FocalStackFile, out: dict, depth_range: bool) -> None:
    seeds = fs.read_all("seed")
    out["seed_min"], out["seed_max"] = int(seeds.min()), int(seeds.max())
    out["n_unique_seeds"] = int(len(np.unique(seeds)))
    for name in schema.CAMERA_NAMES:
        out[name] = _unique_sorted(fs.read_all(name)) if fs.has(name) else None
    focus = np.asarray(fs.read_all("focus_distance"), dtype=np.float32)
    sets, counts = np.unique(focus, axis=0, return_counts=True)
    out["focus_distance_sets"] = [([_f32(x) for x in s], int(c)) for s, c in zip(sets, counts)]
    if depth_range and fs.has("depth"):
        no_data = fs.ground_truth["depth"].no_data
        lo, hi, holes = np.inf, -np.inf, 0
        ds = fs.dataset("depth")
        for row in fs._rows:
            d = ds[int(row)]
            keep = np.isfinite(d) & ((d != no_data) if no_data is not None else True)
            holes += int(d.size - np.count_nonzero(keep))
            d = d[keep]
            if d.size:
                lo, hi = min(lo, float(d.min())), max(hi, float(d.max()))
        out["depth_range"] = (lo, hi) if lo <= hi else None
        out["depth_no_data_pixels"] = holes if no_data is not None else None


def _storage(fs: FocalStackFile) -> dict:
    f = fs._h5
    datasets = {}
    known = tuple(spec.name for spec in schema.WRITTEN_ARRAYS)
    others = sorted(k for k in f if k not in known and isinstance(f[k], h5py.Dataset))
    for name in (*(n for n in known if n in f), *others):
        ds = f[name]
        stored = int(ds.id.get_storage_size())
        is_str = h5py.check_string_dtype(ds.dtype) is not None
        raw = None if is_str else int(ds.size * ds.dtype.itemsize)
        comp, opts = ds.compression, ds.compression_opts
        if comp and opts is not None:
            comp = f"{comp} {' '.join(str(x) for x in opts) if isinstance(opts, tuple) else opts}"
        if ds.shuffle:
            comp = f"{comp or 'none'} + shuffle"
        if is_planar(ds):
            comp = f"{comp or 'none'}, planar"
        datasets[name] = {
            "shape": tuple(ds.shape),
            "dtype": "utf-8 string" if is_str else str(ds.dtype),
            "chunks": ds.chunks,
            "compression": comp or "none",
            "stored_bytes": stored,
            "raw_bytes": raw,
            "ratio": (raw / stored) if raw and stored else None,
        }
    return datasets
