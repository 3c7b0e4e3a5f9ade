"""Checks a file against HDF5 schema v3 (or v1, v2), without ever raising on a bad file.

``validate_file`` returns a ``ValidationReport``: a list of problems (each one line that names the
attribute, dataset or scene and what was expected; the file's path is the report's, not repeated),
warnings (the file is readable but something looks off) and a summary dict. Structural checks cover the
whole file; the per-pixel checks (depth, edges,
defocus against the optics, JSON, blank images) run on every complete scene with ``full=True`` and on a
sample of up to ``sample`` scenes spread over the file otherwise. Only the ground truth the file declares
(``provenance``) is checked: what it lacks is skipped, pixels marked ``no_data`` are not errors, and
defocus maps it recomputes are not compared with themselves.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np

from . import optics, provenance, schema
from .groundtruth import canny_edges, stored_defocus_maps
from .reader import open_error_text
from .schema import DatasetError
from .storage import check_decodable, read_row

# Defocus maps must match the recomputation to within DEFOCUS_ATOL_PX + DEFOCUS_RTOL * |c|.
DEFOCUS_ATOL_PX = 1e-3
DEFOCUS_RTOL = 1e-3
# Canny edges recomputed from the AiF image with the file's thresholds may differ in this fraction of
# pixels before a warning (opencv versions differ in rounding).
EDGE_MISMATCH_WARN = 0.01
# Filters every h5py build has; anything else needs a plugin a reader may not have.
BUILTIN_FILTERS = {"gzip", "lzf", "shuffle", "fletcher32", "scaleoffset", "szip"}
STRING_ATTRS = ("generator_version", "blender_version", "created_utc", "preset", "config", "defocus_model")


@dataclass
class ValidationReport:
    path: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def readable(self) -> bool:
        """True when the file opened as a focalstack file (schema v1 or v2) with all its datasets."""
        return bool(self.summary.get("readable"))

    def problem(self, text: str) -> None:
        self.problems.append(" ".join(str(text).split()))

    def warn(self, text: str) -> None:
        self.warnings.append(" ".join(str(text).split()))


def _attr_str(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return value.item()
    return value


def scene_sample(n: int, k: int = 8) -> list[int]:
    """Up to ``k`` indices spread evenly over ``range(n)``, first and last included."""
    if n <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(k, n))})


def validate_file(path: str | os.PathLike, full: bool = False, sample: int = 8) -> ValidationReport:
    """Check ``path`` against its schema (v1 or v2); never raises for a bad file (see the module docstring)."""
    path = Path(path)
    report = ValidationReport(path)
    report.summary.update(path=str(path), readable=False, full=full)
    if not path.exists():
        report.problem("no such file")
        return report
    if not path.is_file():
        report.problem("not a file")
        return report
    report.summary["file_size"] = path.stat().st_size
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        report.problem(open_error_text(exc))
        return report
    try:
        with f:
            if _check_header(f, report):
                before = len(report.problems)
                report.summary["readable"] = _check_datasets(f, report)
                if len(report.problems) == before:
                    _check_scenes(f, report, full, sample)
                else:
                    report.warn("per-scene checks skipped until the datasets' structure is right")
    # h5py reports damaged metadata or chunks as OSError, RuntimeError, KeyError or ValueError; a
    # damaged shape can ask for absurd amounts of memory
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, ArithmeticError, MemoryError) as exc:
        report.problem(f"unreadable part of the file ({type(exc).__name__}: {exc})")
    return report


# -- header ------------------------------------------------------------------------------------------
def _check_header(f: h5py.File, r: ValidationReport) -> bool:
    """Root attributes. False when the file is not ours (or another version): nothing else applies."""
    fmt = _attr_str(f.attrs.get("format"))
    if fmt != schema.FORMAT:
        r.problem(f"attribute 'format' is {fmt!r}, expected {schema.FORMAT!r}: not a focalstack file")
        return False
    version = f.attrs.get("schema_version")
    if not (isinstance(version, (int, np.integer)) and int(version) in schema.READABLE_VERSIONS):
        known = " or ".join(str(v) for v in schema.READABLE_VERSIONS)
        r.problem(
            f"attribute 'schema_version' is {_attr_str(version)!r}, expected {known} "
            f"(this is focalstack's schema-v{schema.SCHEMA_VERSION} validator)"
        )
        return False
    version = int(version)
    r.summary["schema_version"] = version
    for key in schema.REQUIRED_ATTRS_V1 if version == 1 else schema.REQUIRED_ATTRS:
        if key not in f.attrs:
            r.problem(f"root attribute {key!r} missing")
    for key in STRING_ATTRS:
        if key in f.attrs and not isinstance(_attr_str(f.attrs[key]), str):
            r.problem(f"root attribute {key!r} is {f.attrs[key]!r}, expected a string")
    attrs = {k: _attr_str(v) for k, v in f.attrs.items()}
    r.summary["attrs"] = {k: v for k, v in attrs.items() if k != "config"}
    config = r.summary["config"] = _stored_config(attrs, r)
    declared = _check_declaration(f, r, version)
    r.summary["ground_truth"] = declared
    if declared is None:  # what the file holds is unknown: its datasets and scenes cannot be checked against it
        r.warn("dataset and scene checks skipped until the 'ground_truth' attribute is right")
        return False
    _check_defocus_model(attrs, config, declared, version, r)
    created = attrs.get("created_utc")
    if isinstance(created, str):
        try:
            datetime.fromisoformat(created)
        except ValueError:
            r.warn(f"root attribute 'created_utc' is {created!r}, expected an ISO 8601 time")
    return True


def _stored_config(attrs: dict, r: ValidationReport) -> dict | None:
    """The root attribute 'config' as a dict; None (with a problem) when it is not a JSON object."""
    if not isinstance(attrs.get("config"), str):
        return None
    try:
        config = json.loads(attrs["config"])
    except ValueError as exc:
        r.problem(f"root attribute 'config' is not JSON ({exc})")
        return None
    if not isinstance(config, dict):
        r.problem(f"root attribute 'config' is JSON {type(config).__name__}, expected a JSON object")
        return None
    return config


def _check_defocus_model(attrs: dict, config, declared, version: int, r: ValidationReport) -> None:
    """'defocus_model' names a blur model, agrees with the config and with how the defocus maps were derived."""
    model = attrs.get("defocus_model")
    defocus_present = declared is None or declared["defocus"].present
    if "defocus_model" in attrs and model not in optics.DEFOCUS_MODELS:
        r.problem(f"root attribute 'defocus_model' is {model!r}, expected one of {', '.join(optics.DEFOCUS_MODELS)}")
    elif config and "defocus_model" in config and config["defocus_model"] != model:
        r.problem(f"root attribute 'defocus_model' is {model!r} but 'config' says {config['defocus_model']!r}")
    elif version > 1 and defocus_present and "defocus_model" not in attrs:
        r.problem("root attribute 'defocus_model' missing (the file has defocus maps)")
    if (
        model in optics.DEFOCUS_MODELS
        and declared
        and declared["defocus"].source == "derived"
        and declared["defocus"].method != model
    ):
        r.problem(
            f"ground_truth['defocus'] is derived by {declared['defocus'].method!r} but root attribute "
            f"'defocus_model' is {model!r}"
        )


def _check_declaration(f: h5py.File, r: ValidationReport, version: int) -> provenance.Declaration | None:
    """The file's ground-truth declaration (v1: implied), or None with a problem when it is unusable."""
    if version == 1:
        return provenance.v1_declaration(_attr_str(f.attrs.get("defocus_model")))
    if "ground_truth" not in f.attrs:
        return None  # reported with the required attributes
    text = _attr_str(f.attrs["ground_truth"])
    try:
        declared = provenance.from_json(text, version=version)
    except DatasetError as exc:
        r.problem(f"root {exc}" if str(exc).startswith("attribute") else str(exc))
        return None
    raw = json.loads(text)
    extra = sorted(set(raw) - set(declared))
    if extra:
        r.warn(f"root attribute 'ground_truth' lists dataset(s) this schema does not know: {', '.join(extra)}")
    return declared


# -- structure ---------------------------------------------------------------------------------------
def _dtype_ok(ds: h5py.Dataset, spec: schema.ArraySpec) -> bool:
    if spec.dtype == "str":
        info = h5py.check_string_dtype(ds.dtype)
        return info is not None and info.encoding == "utf-8"
    want = np.dtype(spec.dtype)
    return ds.dtype.kind == want.kind and ds.dtype.itemsize == want.itemsize


def _filters(ds: h5py.Dataset) -> list[str]:
    try:
        return [str(name) for name in ds._filters]
    except Exception:  # private h5py API; a missing attribute must not fail validation
        return []


def _check_datasets(f: h5py.File, r: ValidationReport) -> bool:
    """Presence, dtype, shape, N and chunking of every schema dataset. False if one is missing."""
    declared = r.summary.get("ground_truth")
    present = declared is not None
    version = r.summary["schema_version"]
    required = schema.ARRAY_NAMES if version == 1 else (*schema.REQUIRED_NAMES, *provenance.stored_names(declared or {}))
    bound: dict[str, tuple[int, str]] = {}  # symbol -> (size, dataset that fixed it)
    lengths: dict[str, int] = {}
    for spec in schema.WRITTEN_ARRAYS:
        name = spec.name
        if name not in f or not isinstance(f[name], h5py.Dataset):
            if name in required:
                gt = (declared or {}).get(name)
                why = f"; ground_truth says {gt.describe()}" if gt else ""
                r.problem(f"dataset {name!r} missing ({spec.meaning}{why})")
                present = False
            continue
        if declared and name in declared and not declared[name].stored:
            r.problem(
                f"dataset {name!r} is in the file, but its ground_truth entry says "
                f"{declared[name].describe()}; expected no such dataset"
            )
            continue
        ds = f[name]
        if not _dtype_ok(ds, spec):
            want = "UTF-8 string" if spec.dtype == "str" else spec.dtype
            r.problem(f"dataset {name!r} has dtype {ds.dtype}, expected {want}")
        symbolic = ("N", *spec.trailing)
        if ds.ndim != len(symbolic):
            r.problem(f"dataset {name!r} has shape {ds.shape}, expected ({', '.join(symbolic)})")
            continue
        lengths[name] = ds.shape[0]
        _check_axes(ds, spec, bound, r)
        _check_storage(ds, spec, r)
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{k} {v}" for k, v in lengths.items())
        r.problem(f"datasets differ in scene count N ({listing}); expected one N for all (an interrupted append?)")
    for sym, key in (("S", "n_slices"), ("H", "height"), ("W", "width")):
        if sym in bound:
            r.summary[key] = int(bound[sym][0])
    if "complete" in lengths:
        r.summary["n_rows"] = lengths["complete"]
    return present


def _check_axes(ds: h5py.Dataset, spec: schema.ArraySpec, bound: dict[str, tuple[int, str]], r: ValidationReport) -> None:
    """Each trailing axis: a fixed size as the schema says, or a symbol (S, H, W) of one size in every dataset
    (``bound``: symbol -> (size, the dataset that fixed it), updated here)."""
    name, symbolic = spec.name, ("N", *spec.trailing)
    for sym, size in zip(spec.trailing, ds.shape[1:]):
        if sym.isdigit() and size != int(sym):
            r.problem(f"dataset {name!r} has shape {ds.shape}, expected ({', '.join(symbolic)})")
        elif sym.isdigit():
            continue
        elif sym not in bound:
            bound[sym] = (size, name)
        elif bound[sym][0] != size:
            bound_size, source = bound[sym]
            r.problem(
                f"dataset {name!r} has shape {ds.shape}: axis {sym} is {size}, expected {bound_size}"
                f" (as in {source!r}; shape ({', '.join(symbolic)}))"
            )


def _check_storage(ds: h5py.Dataset, spec: schema.ArraySpec, r: ValidationReport) -> None:
    """Chunks, appendability, filters any h5py reads, and a readable first chunk."""
    name = spec.name
    _check_chunks(ds, spec, r)
    if ds.maxshape[0] is not None:
        r.warn(f"dataset {name!r} has a fixed length {ds.maxshape[0]}: scenes cannot be appended")
    foreign = [x for x in _filters(ds) if x not in BUILTIN_FILTERS]
    if foreign:
        r.problem(f"dataset {name!r} uses filter(s) {', '.join(foreign)}, expected h5py's built-in filters only")
    try:
        check_decodable(ds)
    except DatasetError as exc:
        r.problem(str(exc))


def _check_chunks(ds: h5py.Dataset, spec: schema.ArraySpec, r: ValidationReport) -> None:
    """Chunked along axis 0, never across scenes: per-pixel arrays one scene per chunk, or for colour
    images one colour channel of one scene per chunk (storage.py); small arrays whole scenes per chunk."""
    name, rest = spec.name, tuple(ds.shape[1:])
    planar = (*rest[:-1], 1) if spec.trailing[-1:] == ("3",) else None
    if ds.chunks is None:
        r.problem(f"dataset {name!r} is not chunked; expected chunks along axis 0, one scene per chunk")
    elif tuple(ds.chunks[1:]) not in (rest, planar):
        also = f" or one colour channel per chunk (1, *{planar})" if planar else ""
        r.problem(f"dataset {name!r} has chunks {ds.chunks} that split a scene; expected (1, *{rest}){also}")
    elif spec.per_pixel and ds.chunks[0] != 1:
        r.problem(f"dataset {name!r} has chunks {ds.chunks}: expected one scene per chunk, (1, *{rest})")


# -- per scene ---------------------------------------------------------------------------------------
class _Unreadable(Exception):
    def __init__(self, name: str, exc: BaseException):
        super().__init__(f"dataset {name!r} unreadable ({type(exc).__name__}: {' '.join(str(exc).split())})")


def _read(f: h5py.File, name: str, row: int):
    """One scene's value of a dataset; _Unreadable names the dataset when a chunk is damaged."""
    try:
        return read_row(f[name], row)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, MemoryError) as exc:
        raise _Unreadable(name, exc) from None


def _scene_label(index: int, row: int) -> str:
    return f"scene {index}" if index == row else f"scene {index} (row {row})"


def _check_scenes(f: h5py.File, r: ValidationReport, full: bool, sample: int) -> None:
    complete = f["complete"][:].astype(bool)
    n = len(complete)
    rows = np.flatnonzero(complete)
    r.summary.update(n_rows=n, n_complete=int(len(rows)), n_incomplete=int(n - len(rows)))
    if n - len(rows):
        r.warn(f"{n - len(rows)} incomplete scene(s) will be re-rendered on resume")
    if not len(rows):
        r.warn("no complete scenes")
        r.summary["checked"] = []
        return
    rows_ok = rows[rows < min(f[spec.name].shape[0] for spec in schema.WRITTEN_ARRAYS if spec.name in f)]
    if len(rows_ok) < len(rows):
        rows = rows_ok  # already reported as differing N
    declared = r.summary["ground_truth"]
    skip = _check_small_arrays(f, r, rows, declared)

    # Per-pixel checks on all complete scenes or a sample.
    picks = list(range(len(rows))) if full else scene_sample(len(rows), sample)
    r.summary["checked"] = picks
    config = r.summary.get("config") or {}
    for i in picks:
        # no defocus check where the camera itself is already reported as wrong
        try:
            with np.errstate(all="ignore"):  # damaged values are reported, not warned about
                _check_one_scene(f, r, i, int(rows[i]), declared, config, i in skip)
        except _Unreadable as exc:
            r.problem(f"{_scene_label(i, int(rows[i]))}: {exc}")


def _check_small_arrays(f: h5py.File, r: ValidationReport, rows: np.ndarray, declared) -> set:
    """Camera, focus distances and seeds of every complete scene (cheap). Returns the scene indices
    whose camera or focus is wrong (their defocus is not checked)."""
    focus = f["focus_distance"][:][rows].astype(np.float64)
    cams = {name: f[name][:][rows].astype(np.float64) for name in schema.CAMERA_NAMES if declared[name].present}
    bad_camera = set()
    for name, values in cams.items():
        bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
        bad_camera.update(bad.tolist())
        for i in bad[:3]:
            r.problem(f"{_scene_label(i, rows[i])}: {name!r} is {values[i]!r}, expected a number > 0")
        if len(bad) > 3:
            r.problem(f"{name!r}: {len(bad) - 3} more scene(s) not > 0")
    if "focal_length_mm" in cams:
        f_mm, beyond = cams["focal_length_mm"], "beyond the focal length"
    else:  # no camera model (DDFF-12): distances need only be positive
        f_mm, beyond = np.zeros(len(rows)), "> 0"
    f_m = f_mm * 1e-3
    bad_focus = np.flatnonzero(~np.all(optics.beyond_focal_length(focus, f_mm[:, None]), axis=1))
    for i in bad_focus[:3]:
        r.problem(
            f"{_scene_label(i, rows[i])}: 'focus_distance' {focus[i].tolist()} m, expected every distance "
            f"{beyond}" + (f" ({f_m[i]:g} m)" if "focal_length_mm" in cams else "")
        )
    if len(bad_focus) > 3:
        r.problem(f"'focus_distance': {len(bad_focus) - 3} more scene(s) focused inside the focal length")
    if "stack_size" in f:  # optional: files of other writers hold full stacks
        n_slices = f["stack"].shape[1]
        sizes = f["stack_size"][:][rows].astype(np.int64)
        bad_size = np.flatnonzero((sizes < 1) | (sizes > n_slices))
        for i in bad_size[:3]:
            r.problem(f"{_scene_label(i, rows[i])}: 'stack_size' is {int(sizes[i])}, expected 1 to {n_slices} (its slices)")
        if len(bad_size) > 3:
            r.problem(f"'stack_size': {len(bad_size) - 3} more scene(s) outside 1 to {n_slices}")
    seeds = f["seed"][:][rows]
    uniq, counts = np.unique(seeds[seeds >= 0], return_counts=True)  # imported scenes have seed -1
    if (counts > 1).any():
        dup = uniq[counts > 1]
        r.warn(f"'seed': {len(dup)} seed(s) used by more than one scene (e.g. {int(dup[0])})")
    return bad_camera | set(bad_focus.tolist())


def _check_one_scene(f, r: ValidationReport, index: int, row: int, declared, config: dict, bad_camera: bool) -> None:
    label = _scene_label(index, row)
    depth, bad = None, None
    if declared["depth"].present:
        depth = _read(f, "depth", row).astype(np.float64)
        bad = _check_positive(r, label, "depth", depth, declared["depth"].no_data, "metres > 0")
    if declared["disparity"].present:
        disparity = _read(f, "disparity", row).astype(np.float64)
        _check_positive(r, label, "disparity", disparity, declared["disparity"].no_data, "pixels > 0")
        if depth is not None:
            _check_depth_from_disparity(r, label, depth, disparity, declared)
    edges = _read(f, "edges", row) if declared["edges"].present else None
    stray = np.setdiff1d(np.unique(edges), [0, 1]) if edges is not None else np.zeros(0)
    if stray.size:
        r.problem(f"{label}: 'edges' holds value(s) {stray[:5].tolist()}, expected only 0 and 1")
    text = _read(f, "scene", row)
    try:
        description = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        r.problem(f"{label}: 'scene' is not JSON ({exc})")
        description = None
    if declared["normals"].present:
        _check_normals(r, label, _read(f, "normals", row).astype(np.float64))
    if declared["objects"].present:
        _check_objects(r, label, _read(f, "objects", row), description)

    stack = _read(f, "stack", row)
    aif = _read(f, "aif", row) if declared["aif"].present else None
    if aif is not None and aif.min() == aif.max():
        r.warn(f"{label}: 'aif' is constant ({int(aif.min())}): a blank render?")
    for k, img in enumerate(stack):
        if img.min() == img.max():
            r.warn(f"{label}: 'stack' slice {k} is constant ({int(img.min())}): a blank render?")

    gt = declared["defocus"]
    if gt.stored:  # recomputed maps are the recomputation: nothing to compare
        defocus = _read(f, "defocus", row).astype(np.float64)
        no_depth = declared["depth"].no_data
        holes = depth == no_depth if depth is not None and no_depth is not None else False  # NaN maps there
        nonfinite = ~np.isfinite(defocus) & ~np.asarray(holes)
        if nonfinite.any():
            r.problem(f"{label}: 'defocus' has {int(nonfinite.sum())} non-finite value(s)")
        elif (
            gt.source == "derived"
            and gt.method in optics.DEFOCUS_MODELS
            and depth is not None
            and bad is not None
            and not bad.any()
            and not bad_camera
        ):
            _check_defocus(f, r, label, row, depth, defocus, gt.method, declared["depth"].no_data)

    keys = ("canny_low", "canny_high", "canny_blur_sigma")
    if edges is not None and aif is not None and all(isinstance(config.get(k), (int, float)) for k in keys) and not stray.size:
        want = canny_edges(aif, config["canny_low"], config["canny_high"], config["canny_blur_sigma"])
        frac = float(np.mean(want != edges))
        if frac > EDGE_MISMATCH_WARN:
            r.warn(
                f"{label}: 'edges' differ from Canny edges of 'aif' with the config's thresholds in {100 * frac:.1f}% of pixels"
            )


# float16 unit vectors: their length is within a few 1e-3 of 1.
NORMAL_LENGTH_ATOL = 0.01


def _check_normals(r, label: str, normals: np.ndarray) -> None:
    """Unit vectors facing the camera (a surface seen from behind has its normal flipped by Cycles)."""
    length = np.linalg.norm(normals, axis=-1)
    bad = ~(np.abs(length - 1) <= NORMAL_LENGTH_ATOL)
    if bad.any():
        r.problem(
            f"{label}: 'normals' has {int(bad.sum())} pixel(s) that are not unit vectors (length "
            f"{float(np.nanmax(np.abs(length - 1))):.3g} away from 1); expected unit vectors"
        )


def _check_objects(r, label: str, objects: np.ndarray, description) -> None:
    """Object indices name objects of the scene's description (1..number of objects; 0 = background)."""
    if isinstance(description, dict) and "objects" in description.get("omitted_for_transport", ()):
        text = "'objects' not checked against the scene descriptions: a pack left their object lists out"
        if text not in r.warnings:  # once per file, not per scene
            r.warn(text)
        return
    if not isinstance(description, dict) or not isinstance(description.get("objects"), list):
        return  # no description to check against (reported with 'scene')
    n = len(description["objects"])
    if objects.size and int(objects.max()) > n:
        r.problem(
            f"{label}: 'objects' holds index {int(objects.max())}, but the scene has {n} object(s); "
            f"expected 0 (background) to {n}"
        )


def _check_positive(r, label: str, name: str, values: np.ndarray, no_data, expected: str) -> np.ndarray:
    """Pixels not finite or not > 0 (other than the declared no-data value) are a problem; returns them."""
    bad = ~(np.isfinite(values) & (values > 0))
    if no_data is not None:
        bad &= values != no_data
    if bad.any():
        allowed = f" (or {no_data:g}: no ground truth)" if no_data is not None else ""
        r.problem(f"{label}: {name!r} has {int(bad.sum())} pixel(s) not finite or not > 0; expected {expected}{allowed}")
    return bad


def _check_depth_from_disparity(r, label: str, depth, disparity, declared) -> None:
    """Depth derived from disparity is one constant over disparity, and has no data exactly where it has none."""
    no_depth = depth == declared["depth"].no_data if declared["depth"].no_data is not None else np.zeros(depth.shape, bool)
    no_disp = disparity == declared["disparity"].no_data if declared["disparity"].no_data is not None else no_depth
    if not np.array_equal(no_depth, no_disp):
        r.problem(
            f"{label}: 'depth' and 'disparity' lack ground truth at different pixels "
            f"({int(no_depth.sum())} and {int(no_disp.sum())})"
        )
        return
    k = (depth * disparity)[~no_depth]
    if k.size and np.all(np.isfinite(k)) and np.ptp(k) > 1e-6 * np.abs(k).max():
        r.problem(
            f"{label}: 'depth' is not one constant over 'disparity' (depth x disparity from {k.min():.6g} to {k.max():.6g})"
        )


def _expected_defocus(f, row: int, depth: np.ndarray, model: str, no_data) -> np.ndarray:
    return stored_defocus_maps(
        depth,
        _read(f, "focus_distance", row),
        _read(f, "f_number", row),
        _read(f, "focal_length_mm", row),
        _read(f, "sensor_width_mm", row),
        model,
        no_data,
    ).astype(np.float64)


def _check_defocus(f, r, label: str, row: int, depth, defocus, model: str, no_data) -> None:
    want = _expected_defocus(f, row, depth, model, no_data)
    with np.errstate(invalid="ignore"):
        err = np.where(np.isnan(want), 0.0, np.abs(defocus - want))
    excess = err - (DEFOCUS_ATOL_PX + DEFOCUS_RTOL * np.abs(np.nan_to_num(want)))
    if (excess <= 0).all():
        return
    k = int(np.argmax(excess.reshape(len(excess), -1).max(axis=1)))
    hint = ""
    for other in optics.DEFOCUS_MODELS:
        if other != model:
            alt = np.nan_to_num(_expected_defocus(f, row, depth, other, no_data))
            if (np.abs(np.nan_to_num(defocus) - alt) <= DEFOCUS_ATOL_PX + DEFOCUS_RTOL * np.abs(alt)).all():
                hint = f"; it matches the {other!r} model instead"
    r.problem(
        f"{label}: 'defocus' slice {k} disagrees with 'depth' and the camera by the file's defocus_model "
        f"{model!r}: max error {err[k].max():.4g} px, expected within {DEFOCUS_ATOL_PX:g} px + "
        f"{DEFOCUS_RTOL:g} x |c|{hint}"
    )
