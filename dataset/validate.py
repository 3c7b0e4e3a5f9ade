"""Checks a file against HDF5 schema v1 and summarises it, without ever raising on a bad file.

``validate_file`` returns a ``ValidationReport``: a list of problems (each one line that names the
attribute, dataset or scene and what was expected; the file's path is the report's, not repeated), warnings (the file is readable but something looks
off) and a summary dict. Structural checks cover the whole file; the per-pixel checks (depth, edges,
defocus against the optics, JSON, blank images) run on every complete scene with ``full=True`` and on a
sample of up to ``sample`` scenes spread over the file otherwise.

``summarize`` gathers what ``focalstack-data inspect`` prints: counts, camera settings, depth range and
per-dataset storage.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np

from . import optics, schema
from .groundtruth import canny_edges
from .reader import open_error_text
from .schema import DatasetError

# Defocus maps must match the recomputation to within DEFOCUS_ATOL_PX + DEFOCUS_RTOL * |c|.
DEFOCUS_ATOL_PX = 1e-3
DEFOCUS_RTOL = 1e-3
# Canny edges recomputed from the AiF image with the file's thresholds may differ in this fraction of
# pixels before a warning (opencv versions differ in rounding).
EDGE_MISMATCH_WARN = 0.01
# Filters every h5py build has; anything else needs a plugin a reader may not have.
BUILTIN_FILTERS = {"gzip", "lzf", "shuffle", "fletcher32", "scaleoffset", "szip"}
# Datasets a schema-v1 file may carry (checked when present); getattr keeps this module working with a
# schema that does not define them.
OPTIONAL_ARRAYS: tuple = schema.OPTIONAL_ARRAYS
OPTIONAL_NAMES = tuple(a.name for a in OPTIONAL_ARRAYS)
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
        """True when the file opened as a focalstack schema-v1 file with all its datasets."""
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
    """Check ``path`` against schema v1; never raises for a bad file (see the module docstring)."""
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
    if not (isinstance(version, (int, np.integer)) and int(version) == schema.SCHEMA_VERSION):
        r.problem(
            f"attribute 'schema_version' is {_attr_str(version)!r}, expected {schema.SCHEMA_VERSION} "
            f"(this is focalstack's schema-v{schema.SCHEMA_VERSION} validator)"
        )
        return False
    r.summary["schema_version"] = int(version)
    for key in schema.REQUIRED_ATTRS:
        if key not in f.attrs:
            r.problem(f"root attribute {key!r} missing")
    for key in STRING_ATTRS:
        if key in f.attrs and not isinstance(_attr_str(f.attrs[key]), str):
            r.problem(f"root attribute {key!r} is {f.attrs[key]!r}, expected a string")
    attrs = {k: _attr_str(v) for k, v in f.attrs.items()}
    r.summary["attrs"] = {k: v for k, v in attrs.items() if k != "config"}
    config = None
    if isinstance(attrs.get("config"), str):
        try:
            config = json.loads(attrs["config"])
        except ValueError as exc:
            r.problem(f"root attribute 'config' is not JSON ({exc})")
        else:
            if not isinstance(config, dict):
                r.problem(f"root attribute 'config' is JSON {type(config).__name__}, expected a JSON object")
                config = None
    r.summary["config"] = config
    model = attrs.get("defocus_model")
    if "defocus_model" in attrs and model not in optics.DEFOCUS_MODELS:
        r.problem(f"root attribute 'defocus_model' is {model!r}, expected one of {', '.join(optics.DEFOCUS_MODELS)}")
    elif config and "defocus_model" in config and config["defocus_model"] != model:
        r.problem(f"root attribute 'defocus_model' is {model!r} but 'config' says {config['defocus_model']!r}")
    created = attrs.get("created_utc")
    if isinstance(created, str):
        try:
            datetime.fromisoformat(created)
        except ValueError:
            r.warn(f"root attribute 'created_utc' is {created!r}, expected an ISO 8601 time")
    return True


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
    present = True
    bound: dict[str, tuple[int, str]] = {}  # symbol -> (size, dataset that fixed it)
    lengths: dict[str, int] = {}
    for spec in (*schema.ARRAYS, *OPTIONAL_ARRAYS):
        name = spec.name
        if name not in f or not isinstance(f[name], h5py.Dataset):
            if spec in schema.ARRAYS:
                r.problem(f"dataset {name!r} missing ({spec.meaning})")
                present = False
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
        for sym, size in zip(spec.trailing, ds.shape[1:]):
            if sym.isdigit() and size != int(sym):
                r.problem(f"dataset {name!r} has shape {ds.shape}, expected ({', '.join(symbolic)})")
            elif sym.isdigit():
                continue
            elif sym not in bound:
                bound[sym] = (size, name)
            elif bound[sym][0] != size:
                want, source = bound[sym]
                r.problem(
                    f"dataset {name!r} has shape {ds.shape}: axis {sym} is {size}, expected {want}"
                    f" (as in {source!r}; shape ({', '.join(symbolic)}))"
                )
        if ds.chunks is None:
            r.problem(f"dataset {name!r} is not chunked; expected chunks along axis 0, one scene per chunk")
        elif tuple(ds.chunks[1:]) != tuple(ds.shape[1:]):
            r.problem(f"dataset {name!r} has chunks {ds.chunks} that split a scene; expected (1, *{ds.shape[1:]})")
        elif "H" in spec.trailing and ds.chunks[0] != 1:  # per-pixel arrays
            r.problem(f"dataset {name!r} has chunks {ds.chunks}: expected one scene per chunk, (1, *{ds.shape[1:]})")
        if ds.maxshape[0] is not None:
            r.warn(f"dataset {name!r} has a fixed length {ds.maxshape[0]}: scenes cannot be appended")
        foreign = [x for x in _filters(ds) if x not in BUILTIN_FILTERS]
        if foreign:
            r.problem(f"dataset {name!r} uses filter(s) {', '.join(foreign)}, expected h5py's built-in filters only")
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{k} {v}" for k, v in lengths.items())
        r.problem(f"datasets differ in scene count N ({listing}); expected one N for all (an interrupted append?)")
    for sym, key in (("S", "n_slices"), ("H", "height"), ("W", "width")):
        if sym in bound:
            r.summary[key] = int(bound[sym][0])
    if "complete" in lengths:
        r.summary["n_rows"] = lengths["complete"]
    return present


# -- per scene ---------------------------------------------------------------------------------------
class _Unreadable(Exception):
    def __init__(self, name: str, exc: BaseException):
        super().__init__(f"dataset {name!r} unreadable ({type(exc).__name__}: {' '.join(str(exc).split())})")


def _read(f: h5py.File, name: str, row: int):
    """One scene's value of a dataset; _Unreadable names the dataset when a chunk is damaged."""
    try:
        return f[name][row]
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
    rows_ok = rows[rows < min(f[name].shape[0] for name in schema.ARRAY_NAMES + OPTIONAL_NAMES if name in f)]
    if len(rows_ok) < len(rows):
        rows = rows_ok  # already reported as differing N

    # Small per-scene arrays: cheap, so every complete scene is checked.
    focus = f["focus_distance"][:][rows]
    cams = {name: f[name][:][rows].astype(np.float64) for name in ("f_number", "focal_length_mm", "sensor_width_mm")}
    for name, values in cams.items():
        bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
        for i in bad[:3]:
            r.problem(f"{_scene_label(i, rows[i])}: {name!r} is {values[i]!r}, expected a number > 0")
        if len(bad) > 3:
            r.problem(f"{name!r}: {len(bad) - 3} more scene(s) not > 0")
    bad_camera = set()
    for values in cams.values():
        bad_camera.update(np.flatnonzero(~(np.isfinite(values) & (values > 0))).tolist())
    f_m = cams["focal_length_mm"] * 1e-3
    bad_focus = np.flatnonzero(~np.all(np.isfinite(focus) & (focus > f_m[:, None]), axis=1))
    for i in bad_focus[:3]:
        r.problem(
            f"{_scene_label(i, rows[i])}: 'focus_distance' {focus[i].tolist()} m, expected every distance beyond "
            f"the focal length ({f_m[i]:g} m)"
        )
    if len(bad_focus) > 3:
        r.problem(f"'focus_distance': {len(bad_focus) - 3} more scene(s) focused inside the focal length")
    seeds = f["seed"][:][rows]
    uniq, counts = np.unique(seeds, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        r.warn(f"'seed': {len(dup)} seed(s) used by more than one scene (e.g. {int(dup[0])})")

    # Per-pixel checks on all complete scenes or a sample.
    picks = list(range(len(rows))) if full else scene_sample(len(rows), sample)
    r.summary["checked"] = picks
    model = _attr_str(f.attrs.get("defocus_model"))
    config = r.summary.get("config") or {}
    for i in picks:
        # no defocus check where the camera itself is already reported as wrong
        try:
            with np.errstate(all="ignore"):  # damaged values are reported, not warned about
                _check_one_scene(f, r, i, int(rows[i]), model, config, bad_camera | set(bad_focus.tolist()))
        except _Unreadable as exc:
            r.problem(f"{_scene_label(i, int(rows[i]))}: {exc}")


def _check_one_scene(f, r: ValidationReport, index: int, row: int, model, config: dict, bad_camera: set) -> None:
    label = _scene_label(index, row)
    depth = _read(f, "depth", row).astype(np.float64)
    bad = ~(np.isfinite(depth) & (depth > 0))
    if bad.any():
        r.problem(f"{label}: 'depth' has {int(bad.sum())} pixel(s) not finite or not > 0; expected metres > 0")
    edges = _read(f, "edges", row)
    stray = np.setdiff1d(np.unique(edges), [0, 1])
    if stray.size:
        r.problem(f"{label}: 'edges' holds value(s) {stray[:5].tolist()}, expected only 0 and 1")
    text = _read(f, "scene", row)
    try:
        json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        r.problem(f"{label}: 'scene' is not JSON ({exc})")

    stack, aif = _read(f, "stack", row), _read(f, "aif", row)
    if aif.min() == aif.max():
        r.warn(f"{label}: 'aif' is constant ({int(aif.min())}): a blank render?")
    for k, img in enumerate(stack):
        if img.min() == img.max():
            r.warn(f"{label}: 'stack' slice {k} is constant ({int(img.min())}): a blank render?")

    defocus = _read(f, "defocus", row).astype(np.float64)
    if not np.isfinite(defocus).all():
        r.problem(f"{label}: 'defocus' has {int((~np.isfinite(defocus)).sum())} non-finite value(s)")
    elif model in optics.DEFOCUS_MODELS and not bad.any() and index not in bad_camera:
        _check_defocus(f, r, label, row, depth, defocus, model)

    keys = ("canny_low", "canny_high", "canny_blur_sigma")
    if all(isinstance(config.get(k), (int, float)) for k in keys) and not stray.size:
        want = canny_edges(aif, config["canny_low"], config["canny_high"], config["canny_blur_sigma"])
        frac = float(np.mean(want != edges))
        if frac > EDGE_MISMATCH_WARN:
            r.warn(
                f"{label}: 'edges' differ from Canny edges of 'aif' with the config's thresholds in "
                f"{100 * frac:.1f}% of pixels"
            )


def _expected_defocus(f, row: int, depth: np.ndarray, model: str) -> np.ndarray:
    return optics.defocus_maps(
        depth,
        _read(f, "focus_distance", row).astype(np.float64),
        float(_read(f, "f_number", row)),
        float(_read(f, "focal_length_mm", row)),
        float(_read(f, "sensor_width_mm", row)),
        model,
    ).astype(np.float64)


def _check_defocus(f, r, label: str, row: int, depth, defocus, model: str) -> None:
    want = _expected_defocus(f, row, depth, model)
    err = np.abs(defocus - want)
    excess = err - (DEFOCUS_ATOL_PX + DEFOCUS_RTOL * np.abs(want))
    if (excess <= 0).all():
        return
    k = int(np.argmax(excess.reshape(len(excess), -1).max(axis=1)))
    hint = ""
    for other in optics.DEFOCUS_MODELS:
        if other != model:
            alt = _expected_defocus(f, row, depth, other)
            if (np.abs(defocus - alt) <= DEFOCUS_ATOL_PX + DEFOCUS_RTOL * np.abs(alt)).all():
                hint = f"; it matches the {other!r} model instead"
    r.problem(
        f"{label}: 'defocus' slice {k} disagrees with 'depth' and the camera by the file's defocus_model "
        f"{model!r}: max error {err[k].max():.4g} px, expected within {DEFOCUS_ATOL_PX:g} px + "
        f"{DEFOCUS_RTOL:g} x |c|{hint}"
    )


# -- summary for inspect -----------------------------------------------------------------------------
def _f32(value) -> float:
    """A float32 as the float it was written from (2.9, not 2.9000000953674316)."""
    return float(str(np.float32(value)))


def _unique_sorted(values: np.ndarray) -> list[float]:
    return [_f32(v) for v in np.unique(np.asarray(values, dtype=np.float32))]


def summarize(path: str | os.PathLike, depth_range: bool = True) -> dict:
    """What ``inspect`` prints, for a file that ``FocalStackFile`` opens (raises DatasetError if not).

    Camera settings and seeds are over complete scenes; the depth range reads every complete scene's
    depth map, one chunk at a time (skip it with ``depth_range=False``).
    """
    from .reader import FocalStackFile

    path = Path(path)
    out: dict = {"path": str(path), "file_size": path.stat().st_size}
    with FocalStackFile(path) as fs:
        f = fs._h5
        out["attrs"] = {k: v for k, v in fs.attrs.items() if k != "config"}
        try:
            out["config"] = fs.config
        except DatasetError:
            out["config"] = None
        out["n_rows"], out["n_complete"] = fs.n_rows, len(fs)
        out["n_incomplete"] = fs.n_rows - len(fs)
        out["n_slices"] = fs.n_slices
        out["height"], out["width"] = fs.image_size
        if len(fs):
            seeds = fs.read_all("seed")
            out["seed_min"], out["seed_max"] = int(seeds.min()), int(seeds.max())
            out["n_unique_seeds"] = int(len(np.unique(seeds)))
            for name in ("f_number", "focal_length_mm", "sensor_width_mm"):
                out[name] = _unique_sorted(fs.read_all(name))
            focus = np.asarray(fs.read_all("focus_distance"), dtype=np.float32)
            sets, counts = np.unique(focus, axis=0, return_counts=True)
            out["focus_distance_sets"] = [([_f32(x) for x in s], int(c)) for s, c in zip(sets, counts)]
            if depth_range:
                lo, hi = np.inf, -np.inf
                for row in fs._rows:
                    d = f["depth"][int(row)]
                    d = d[np.isfinite(d)]
                    if d.size:
                        lo, hi = min(lo, float(d.min())), max(hi, float(d.max()))
                out["depth_range"] = (lo, hi) if lo <= hi else None
        datasets = {}
        others = sorted(k for k in f if k not in schema.ARRAY_NAMES and isinstance(f[k], h5py.Dataset))
        for name in (*schema.ARRAY_NAMES, *others):
            ds = f[name]
            stored = int(ds.id.get_storage_size())
            is_str = h5py.check_string_dtype(ds.dtype) is not None
            raw = None if is_str else int(ds.size * ds.dtype.itemsize)
            comp = ds.compression
            if comp and ds.compression_opts is not None:
                comp = f"{comp} {ds.compression_opts}"
            if ds.shuffle:
                comp = f"{comp or 'none'} + shuffle"
            datasets[name] = {
                "shape": tuple(ds.shape),
                "dtype": "utf-8 string" if is_str else str(ds.dtype),
                "chunks": ds.chunks,
                "compression": comp or "none",
                "stored_bytes": stored,
                "raw_bytes": raw,
                "ratio": (raw / stored) if raw and stored else None,
            }
        out["datasets"] = datasets
    return out
