"""DDFF-12 (Hazirbas et al., "Deep depth from focus", ACCV 2018): its HDF5 file into a schema file.

``ddff-dataset-trainval.h5`` holds ``stack_train``, ``disp_train``, ``stack_val``, ``disp_val``: stacks
(N, 10, 383, 552, 3) uint8 and disparity (N, 383, 552) float, light-field refocused, so every slice
shares one view. With DDFF's calibration (K2, flens, baseline = K2 / flens * 1e-3 m, f_sub = 521.4052 px)
disparity = baseline * f_sub / depth, and the ten slices are focused at disparities evenly spaced from
baseline * f_sub / 0.5 m to baseline * f_sub / 7 m.

The import keeps the disparity as given (``disparity``, float32; DDFF-12's metrics are computed on it)
and derives metric depth from it, ``depth = baseline * f_sub / disparity`` computed in float64 and
stored as float32. Disparity 0 means no ground truth: depth is 0 there too, and readers and validation
skip such pixels (``no_data``). Converting back, ``baseline * f_sub / depth`` where depth > 0 (0
elsewhere), gives the stored disparity to float32 rounding (relative error below 1.2e-7; ``BF``).
There is no camera model (f-number, focal length, sensor width), no AiF image, no defocus maps and no
edges: the file declares them absent. Scenes are streamed one at a time, so memory stays flat.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from . import provenance, schema
from .importing import mark_bad_as_no_data, write_imported
from .provenance import ABSENT, GroundTruth
from .reader import open_h5
from .record import SceneRecord
from .schema import DatasetError

K2 = 1982.0250823695178
FLENS = 7317.020641763665
BASELINE_M = K2 / FLENS * 1e-3
F_SUB_PX = 521.4052
BF = BASELINE_M * F_SUB_PX  # disparity (px) x depth (m)
N_SLICES = 10
SIZE = (383, 552)  # (H, W) of DDFF-12's stacks
SPLITS = ("train", "val")


def focus_disparities() -> np.ndarray:
    """The disparity (px) each of the ten slices is focused at, near to far."""
    return np.linspace(BF / 0.5, BF / 7.0, N_SLICES)


def focus_distances() -> np.ndarray:
    """The focus distance of each slice in metres (0.5 m to 7 m), float32 as stored."""
    return (BF / focus_disparities()).astype(np.float32)


def depth_from_disparity(disparity: np.ndarray) -> np.ndarray:
    """Metric depth (float32 m) from disparity (px); 0 where the disparity is 0 (no ground truth)."""
    d = np.asarray(disparity, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(d > 0, BF / d, 0.0).astype(np.float32)


def disparity_from_depth(depth: np.ndarray) -> np.ndarray:
    """The inverse: disparity (float32 px) from depth (m), 0 where the depth is 0."""
    z = np.asarray(depth, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(z > 0, BF / z, 0.0).astype(np.float32)


DECLARATION: provenance.Declaration = {
    "aif": ABSENT,
    "depth": GroundTruth("derived", True, ("disparity",), "ddff12-calibration", no_data=0.0),
    "defocus": ABSENT,
    "edges": ABSENT,
    **{name: ABSENT for name in schema.CAMERA_NAMES},
    "disparity": GroundTruth("imported", method="DDFF-12 disp_<split>", no_data=0.0),
}


@dataclass
class ImportSummary:
    path: Path
    imported: list[int]  # source stack indices, in file order
    skipped: list[str]  # one line per skipped stack
    warnings: list[str]
    repaired: list[str] = field(default_factory=list)  # one line per stack with pixels marked as no data


def _source_arrays(h5: h5py.File, path: Path, split: str) -> tuple[h5py.Dataset, h5py.Dataset]:
    if split not in SPLITS:
        raise DatasetError(f"--split {split!r}: expected train or val")
    names = (f"stack_{split}", f"disp_{split}")
    missing = [k for k in names if not isinstance(h5.get(k), h5py.Dataset)]
    if missing:
        have = ", ".join(sorted(h5)) or "nothing"
        raise DatasetError(
            f"{path}: no dataset {missing[0]!r} (it has {have}); expected DDFF-12's stack_train, disp_train, stack_val, disp_val"
        )
    stack, disp = h5[names[0]], h5[names[1]]
    if stack.ndim != 5 or stack.shape[1] != N_SLICES or stack.shape[4] != 3 or stack.dtype != np.uint8:
        raise DatasetError(
            f"{path}: {names[0]!r} is {stack.dtype} {stack.shape}, expected uint8 (N, {N_SLICES}, {SIZE[0]}, {SIZE[1]}, 3)"
        )
    want = (stack.shape[0], *stack.shape[2:4])
    if disp.shape not in (want, (*want, 1)) or disp.dtype.kind != "f":
        raise DatasetError(f"{path}: {names[1]!r} is {disp.dtype} {disp.shape}, expected float {want} to match {names[0]!r}")
    return stack, disp


def read_stack(
    stack: h5py.Dataset, disp: h5py.Dataset, i: int, path: Path, split: str, notes: list[str] | None = None
) -> SceneRecord:
    """Stack ``i`` of the source, read alone (the source is never loaded whole). A few disparities that are
    not finite, negative or too small for a finite float32 depth become 0 (no ground truth), noted in
    ``notes``; a stack with no ground truth left, or one HDF5 cannot read, is a DatasetError naming it."""
    where = f"{path}: disp_{split}[{i}]"
    try:
        raw = np.asarray(disp[i], dtype=np.float32).reshape(stack.shape[2:4])
        images = np.asarray(stack[i])
    except (OSError, RuntimeError, ValueError) as exc:  # a damaged chunk: h5py's filter or read error
        raise DatasetError(f"{path}: stack {i} of split {split} unreadable ({' '.join(str(exc).split())})") from None
    with np.errstate(divide="ignore", over="ignore"):
        overflow = (raw > 0) & ~np.isfinite((BF / raw.astype(np.float64)).astype(np.float32))
    unusable = "not finite, negative or too small for a finite depth"
    disparity, n = mark_bad_as_no_data(np.where(overflow, np.float32(np.nan), raw), where, "disparity", unusable=unusable)
    if not np.any(disparity > 0):  # 0 is 'no ground truth': a map of nothing else scores no pixel
        raise DatasetError(f"{where}: every disparity is 0 or unusable (no ground truth anywhere); is the file broken?")
    if n and notes is not None:
        notes.append(f"{where}: {n} disparity value(s) {unusable}, marked as no data")
    return SceneRecord(
        stack=images,
        aif=None,
        depth=depth_from_disparity(disparity),
        defocus=None,
        edges=None,
        focus_distance=focus_distances(),
        f_number=None,
        focal_length_mm=None,
        sensor_width_mm=None,
        seed=-1,
        scene=json.dumps({"source": "DDFF-12", "file": path.name, "split": split, "index": i}),
        stack_size=N_SLICES,
        disparity=disparity,
    )


def import_ddff12(
    path: str | os.PathLike, out: str | os.PathLike, *, split: str, skip_bad: bool = False, progress: Callable | None = None
) -> ImportSummary:
    """Import split ``split`` (train or val) of DDFF-12 file ``path`` into a new schema file ``out``,
    stack by stack, written under a temporary name and renamed at the end. A stack with bad disparity
    raises DatasetError, or with ``skip_bad`` is left out and listed."""
    path, out = Path(path), Path(out)
    with open_h5(path) as h5:
        stack, disp = _source_arrays(h5, path, split)
        n, height, width = stack.shape[0], stack.shape[2], stack.shape[3]
        if n == 0:
            raise DatasetError(f"{path}: 'stack_{split}' holds no stacks")
        warnings = (
            []
            if (height, width) == SIZE
            else [
                f"{path}: stacks of {width} x {height} px, not DDFF-12's {SIZE[1]} x {SIZE[0]}; f_sub = {F_SUB_PX} px "
                "is the calibration at DDFF-12's size"
            ]
        )
        repaired: list[str] = []
        imported, skipped = write_imported(
            out,
            range(n),
            lambda i: read_stack(stack, disp, i, path, split, repaired),
            n_slices=N_SLICES,
            height=height,
            width=width,
            attrs=_attrs(path, split),
            ground_truth=DECLARATION,
            optional=("slice_homography", "slice_pose", "stack_size"),
            skip_bad=skip_bad,
            progress=progress,
        )
    return ImportSummary(out, imported, skipped, warnings, repaired)


def _attrs(path: Path, split: str) -> dict:
    config = {
        "importer": "ddff12",
        "source_file": str(path.resolve()),
        "split": split,
        "calibration": {"K2": K2, "flens": FLENS, "baseline_m": BASELINE_M, "f_sub_px": F_SUB_PX},
        "focus_disparities_px": [float(x) for x in focus_disparities()],
        "focus_distances": [float(x) for x in focus_distances()],
    }
    return {
        "generator_version": provenance.generator_version(),
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "DDFF-12",
        "config": config,
    }
