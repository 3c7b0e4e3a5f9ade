"""Small schema-v1 files for tests: a plain module (no pytest fixtures), importable by any test as
``import dataset_fixtures`` (pytest puts tests/ on sys.path) or ``from tests import dataset_fixtures``.

Scenes are tiny (default 3 slices of 16 x 16) with random images, a piecewise-smooth depth map and
defocus maps computed from it by ``optics.defocus_maps``, so the files pass ``validate_file``.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from focalstack.dataset import optics, provenance
from focalstack.dataset.groundtruth import canny_edges
from focalstack.dataset.writer import FocalStackWriter, SceneRecord

FOCUS_DISTANCES = (0.1, 0.3, 1.5)
CAMERA = {"f_number": 1.0, "focal_length_mm": 2.9, "sensor_width_mm": 3.1}


def make_config(**overrides) -> dict:
    """A render configuration as the renderer stores it (JSON-able dict)."""
    config = {
        "preset": "test",
        "seed": 0,
        "width": 16,
        "height": 16,
        "focus_distances": list(FOCUS_DISTANCES),
        "samples": 4,
        "denoise": False,
        "defocus_model": "cycles",
        "canny_low": 50,
        "canny_high": 150,
        "canny_blur_sigma": 1.0,
        **CAMERA,
    }
    config.update(overrides)
    return config


def make_attrs(config: dict | None = None, **overrides) -> dict:
    """Root attributes for ``FocalStackWriter.create_or_resume`` (config as a dict)."""
    config = make_config() if config is None else config
    attrs = {
        "generator_version": "0.1.0-test",
        "blender_version": "5.0.1",
        "created_utc": "2026-01-01T00:00:00Z",
        "preset": config.get("preset", "test"),
        "config": config,
        "defocus_model": config.get("defocus_model", "cycles"),
    }
    attrs.update(overrides)
    return attrs


def make_depth(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Piecewise-smooth planar depth in metres: a tilted back wall and a nearer tilted box."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    depth = rng.uniform(1.5, 2.5) + rng.uniform(-0.3, 0.3) * xx + rng.uniform(-0.3, 0.3) * yy
    y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
    box = np.zeros((height, width), bool)
    box[y0 : y0 + height // 2, x0 : x0 + width // 2] = True
    near = rng.uniform(0.12, 0.6) + 0.05 * xx
    return np.where(box, near, depth).astype(np.float32)


def make_record(
    seed: int,
    *,
    n_slices: int | None = None,
    height: int = 16,
    width: int = 16,
    focus_distances=None,
    f_number: float = CAMERA["f_number"],
    focal_length_mm: float = CAMERA["focal_length_mm"],
    sensor_width_mm: float = CAMERA["sensor_width_mm"],
    model: str = "cycles",
    requested: tuple[str, ...] = (),
) -> SceneRecord:
    """One schema-valid scene, determined by ``seed``; with the ground truth made on request that
    ``requested`` names (schema.ON_REQUEST_GROUND_TRUTH)."""
    if focus_distances is None:
        focus_distances = FOCUS_DISTANCES if n_slices is None else np.geomspace(0.1, 1.5, n_slices)
    focus = np.asarray(focus_distances, dtype=np.float32)
    s = len(focus)
    rng = np.random.default_rng(seed)
    depth = make_depth(rng, height, width)
    aif = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    stack = rng.integers(0, 256, (s, height, width, 3), dtype=np.uint8)
    defocus = optics.defocus_maps(depth, focus, f_number, focal_length_mm, sensor_width_mm, model)
    normals = rng.normal(size=(height, width, 3)) + [0, 0, 2]
    normals = (normals / np.linalg.norm(normals, axis=-1, keepdims=True)).astype(np.float16)
    objects = (depth < 1).astype(np.uint16)  # the near box is the scene's one object
    return SceneRecord(
        stack=stack,
        aif=aif,
        depth=depth,
        defocus=defocus,
        edges=canny_edges(aif),
        focus_distance=focus,
        f_number=f_number,
        focal_length_mm=focal_length_mm,
        sensor_width_mm=sensor_width_mm,
        seed=int(seed),
        scene=json.dumps({"seed": int(seed), "objects": [{"shape": "cube", "z": float(depth.min())}]}),
        normals=normals if "normals" in requested else None,
        objects=objects if "objects" in requested else None,
    )


def open_writer(
    path, *, n_slices: int = len(FOCUS_DISTANCES), height: int = 16, width: int = 16, attrs=None, requested: tuple[str, ...] = ()
):
    """A writer of rendered scenes (every ground truth, and those made on request that ``requested`` names)."""
    attrs = make_attrs() if attrs is None else attrs
    declared = provenance.rendered_declaration(attrs.get("defocus_model", "cycles"), requested=requested)
    return FocalStackWriter.create_or_resume(
        path, n_slices=n_slices, height=height, width=width, attrs=attrs, ground_truth=declared
    )


def write_file(path, n_scenes: int = 3, *, seeds=None, height: int = 16, width: int = 16, attrs=None) -> Path:
    """Write a complete schema-v1 file of ``n_scenes`` scenes (seeds 0, 1, ... unless given)."""
    path = Path(path)
    seeds = list(range(n_scenes)) if seeds is None else list(seeds)
    with open_writer(path, height=height, width=width, attrs=attrs) as w:
        for seed in seeds:
            w.append(make_record(seed, height=height, width=width))
    return path


def append_incomplete(path, seed: int = 99, *, partial: bool = True) -> None:
    """Simulate a run killed mid-scene: one more row whose ``complete`` flag is false.

    With ``partial`` only some arrays of the row are written (the rest keep HDF5's fill value).
    """
    with h5py.File(path, "r+") as f:
        n = f["complete"].shape[0]
        for name in f:
            f[name].resize(n + 1, axis=0)
        rec = make_record(seed, height=f["depth"].shape[1], width=f["depth"].shape[2])
        f["stack"][n] = rec.stack
        f["seed"][n] = seed
        if not partial:
            for name in ("aif", "depth", "defocus", "edges", "focus_distance"):
                f[name][n] = getattr(rec, name)
            f["scene"][n] = rec.scene
        f["complete"][n] = False


def write_foreign_h5(path) -> Path:
    """An HDF5 file that is not a focalstack file."""
    path = Path(path)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "something-else"
        f.create_dataset("images", data=np.zeros((2, 4, 4), np.uint8))
    return path


def truncate(path, keep_fraction: float = 0.5) -> Path:
    """Cut a file to a fraction of its size, as a full disk or an interrupted copy would."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


# Schema v1 as the writer made it before v2: every array of the v1 table (and the optional ones), one
# chunk per scene, gzip 6 + shuffle, the v1 root attributes. Written with plain h5py, so it does not
# change when the writer does.
V1_TABLE = (
    ("stack", "uint8", lambda s, h, w: (s, h, w, 3)),
    ("aif", "uint8", lambda s, h, w: (h, w, 3)),
    ("depth", "float32", lambda s, h, w: (h, w)),
    ("defocus", "float32", lambda s, h, w: (s, h, w)),
    ("edges", "uint8", lambda s, h, w: (h, w)),
    ("focus_distance", "float32", lambda s, h, w: (s,)),
    ("f_number", "float32", lambda s, h, w: ()),
    ("focal_length_mm", "float32", lambda s, h, w: ()),
    ("sensor_width_mm", "float32", lambda s, h, w: ()),
    ("seed", "int64", lambda s, h, w: ()),
    ("scene", "str", lambda s, h, w: ()),
    ("complete", "bool", lambda s, h, w: ()),
    ("slice_homography", "float32", lambda s, h, w: (s, 3, 3)),
    ("slice_pose", "float32", lambda s, h, w: (s, 4, 4)),
    ("slice_focal_length_mm", "float32", lambda s, h, w: (s,)),
    ("stack_size", "int16", lambda s, h, w: ()),
)


def write_v1_file(path, records) -> Path:
    """A schema-v1 file of ``records`` (SceneRecords with every array), laid out as v1 writers did."""
    path = Path(path)
    s, h, w = records[0].stack.shape[:3]
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "focalstack"
        f.attrs["schema_version"] = 1
        for key, value in make_attrs(make_config(width=w, height=h)).items():
            f.attrs[key] = json.dumps(value) if isinstance(value, dict) else value
        for name, dtype, shape_of in V1_TABLE:
            shape = shape_of(s, h, w)
            big = len(shape) >= 2
            f.create_dataset(
                name,
                shape=(0, *shape),
                maxshape=(None, *shape),
                chunks=(1, *shape) if big else (128, *shape),
                dtype=h5py.string_dtype("utf-8") if dtype == "str" else dtype,
                **({"compression": "gzip", "compression_opts": 6, "shuffle": True} if big else {}),
            )
        for i, rec in enumerate(records):
            for name, _, _ in V1_TABLE:
                f[name].resize(i + 1, axis=0)
            neutral = {
                "slice_homography": np.repeat(np.eye(3)[None], s, 0),
                "slice_pose": np.repeat(np.eye(4)[None], s, 0),
                "slice_focal_length_mm": np.full(s, rec.focal_length_mm),
                "stack_size": s,
                "complete": True,
            }
            for name, _, _ in V1_TABLE:
                value = getattr(rec, name, None) if name != "complete" else None
                f[name][i] = neutral[name] if value is None else value
    return path
