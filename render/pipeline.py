"""From scene index to stored record: describe scene i of a dataset, render it, derive its ground truth,
and append it to a file (``render_range``). ``job.render_dataset`` runs this over a whole dataset.

Resuming: the output file is the ledger. A rerun with the same settings opens it, drops a trailing
incomplete scene and continues with the next scene index, so an interrupted and an uninterrupted run
produce the same scenes in the same order (scene i always has seed ``scene_seed(seed, i)``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import h5py
import numpy as np

from focalstack.assets.catalogue import AssetChanged
from focalstack.dataset import FocalStackFile, FocalStackWriter, SceneRecord, schema
from focalstack.dataset.colour import linear_to_srgb8
from focalstack.dataset.groundtruth import canny_edges, stored_defocus_maps
from focalstack.dataset.provenance import rendered_declaration
from focalstack.dataset.schema import DatasetError

from .config import LIGHT_FIELD_VERSION, ConfigError, RenderConfig, config_default, cycles_slice_keys
from .effects import EffectsConfig, capture_slices, with_effects
from .interrupt import held_signals
from .sampling import SAMPLER_VERSION, asset_fingerprint, sample_scene, scene_params, scene_seed
from .scene import SCENE_FORMAT_VERSION, SceneDescription

# Settings that may differ when resuming a file: asking for more scenes extends it.
RESUME_IGNORE = ("scenes", "device")
# Written when Ctrl-C (or SIGTERM) arrives mid-scene: the scene is finished and written first.
STOPPING = "stopping after the scene being rendered (again to stop at once; the file resumes either way)"
# Settings of the light-field slice path: they change no pixel of a file whose slices Cycles renders.
LIGHT_FIELD_KEYS = ("light_field_views", "light_field_samples", "light_field_guides", "light_field_version")
# Defaults that changed, with the value files made before the change hold: such a file resumes with its own value
# when the run leaves the key at today's default, so one file never mixes the two (``with_file_settings``).
CHANGED_DEFAULTS = {"denoise_quality": "high"}


# Settings added after files were made, with the value a file that lacks them was rendered with.
IMPLICIT_BEFORE = {
    "light_field_guides": "rays",
    "ground_truth": [],
    "light_field_version": 1,  # a light-field file without it is refused (refuse_other_light_field)
    # before slice_denoise_quality, slices were denoised at denoise_quality: what "auto" still does for Cycles
    # slices (light-field files that old are refused)
    "slice_denoise_quality": "auto",
}


def _stored_config(path: Path) -> dict | None:
    try:
        with FocalStackFile(path) as f:
            return f.config
    except (OSError, DatasetError, ValueError):
        return None  # no file yet, or one the writer will name


def _uses_light_field(stored: dict, config: RenderConfig) -> bool:
    return stored.get("slices", "cycles") == "light_field" or config.render.slices == "light_field"


def resume_ignore(path: Path, config: RenderConfig) -> tuple[str, ...]:
    """The settings that may differ between ``path``'s stored configuration and ``config`` on resume:
    RESUME_IGNORE; the light-field keys when neither renders slices by light field (a changed light-field
    default must not refuse a Cycles-slices file); and a key the file predates whose implicit value
    (IMPLICIT_BEFORE) is the one asked for."""
    stored = _stored_config(path)
    if stored is None:
        return RESUME_IGNORE
    ignore = list(RESUME_IGNORE)
    if not _uses_light_field(stored, config):
        ignore += LIGHT_FIELD_KEYS
    if _stored_assets(path) is not None:  # the folders' contents are compared (refuse_other_assets), not their paths
        ignore.append("scene.asset_dirs")
    asked = config.to_dict()
    ignore += [k for k, v in IMPLICIT_BEFORE.items() if k not in stored and asked.get(k) == v]
    return tuple(dict.fromkeys(ignore))


def with_file_settings(config: RenderConfig, path: Path) -> tuple[RenderConfig, str | None]:
    """``config`` for rendering into ``path``: where ``config`` holds today's default of a key and the file
    was made with another value (a default that changed since, CHANGED_DEFAULTS, or a key the file predates,
    IMPLICIT_BEFORE), the file's own value; and a line saying so."""
    stored = _stored_config(path)
    if stored is None:
        return config, None
    asked = config.to_dict()
    made_with = {k: stored[k] for k, before in CHANGED_DEFAULTS.items() if stored.get(k) == before}
    made_with |= {k: v for k, v in IMPLICIT_BEFORE.items() if k not in stored}
    if not _uses_light_field(stored, config):
        made_with = {k: v for k, v in made_with.items() if k not in LIGHT_FIELD_KEYS}
    keep = {k: v for k, v in made_with.items() if asked[k] == config_default(k) != v}
    if _same_effects(stored.get("effects") or {}, asked.get("effects") or {}):
        # written otherwise, the same effects (--jpeg-quality 0 is off, as no jpeg_quality is): the file's table
        config = config.with_overrides(effects=dict(stored.get("effects") or {}))
    if not keep:
        return config, None
    listing = ", ".join(f"{k} = {v!r}" for k, v in keep.items())
    line = f"{path}: resuming with the settings it was begun with ({listing}; today's default differs)"
    return config.with_overrides(**keep), line


def _same_effects(a: dict, b: dict) -> bool:
    """Whether two [effects] tables do the same thing (an 'off' value given or left out alike)."""
    try:
        return EffectsConfig.from_dict(a) == EffectsConfig.from_dict(b)
    except (TypeError, ValueError):  # a table that does not read is checked, and refused, where it is used
        return False


class RenderError(RuntimeError):
    """A scene could not be rendered into valid ground truth; the message names the scene."""


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def file_attrs(config: RenderConfig) -> dict:
    """Root attributes of a new file (docs/data.md)."""
    attrs = {
        "generator_version": _package_version("focalstack"),
        # Read from package metadata so the parent of worker processes need not import bpy.
        "blender_version": _package_version("bpy"),
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "preset": config.preset,
        "config": config.to_dict(),
        "defocus_model": config.defocus_model,
    }
    assets = asset_fingerprint(scene_params(config.scene))
    if assets is not None:
        attrs["asset_catalogue"] = assets
    return attrs


def _stored_assets(path: Path) -> dict | None:
    """The ``asset_catalogue`` attribute of ``path``: None for a file of no asset files, one made before files
    kept it, or none yet."""
    try:
        with h5py.File(path, "r") as f:
            value = f.attrs.get("asset_catalogue")
    except OSError:
        return None
    try:
        return json.loads(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def refuse_other_assets(config: RenderConfig, path: Path) -> None:
    """DatasetError, the file untouched, when the asset files that ``path``'s scenes were drawn from changed
    since it was begun (files added, removed or changed in its --assets folders): the scenes to come would draw
    other files than an uninterrupted run. Moved folders of the same contents resume."""
    stored = _stored_assets(path)
    if stored is None:
        return
    now = asset_fingerprint(scene_params(config.scene)) or {}
    if now == stored:
        return
    # other settings are named as such first (a changed split or probability changes the fingerprint too)
    FocalStackWriter.check_existing(
        path, len(config.focus_distances), config.height, config.width, config.to_dict(), resume_ignore(path, config)
    )
    changed = [
        f"{kind} files {stored.get(kind, 0)} -> {now.get(kind, 0)}"
        for kind in ("mesh", "texture", "envmap")
        if stored.get(kind, 0) != now.get(kind, 0)
    ]
    raise DatasetError(
        f"{path}: the asset files its scenes draw from changed since it was begun "
        f"({', '.join(changed) if changed else 'as many files, other contents'}; in its --assets folders, the bundled "
        "ones, or files this machine cannot read); resuming would draw other files than an uninterrupted run: "
        "restore them, or choose another --out"
    )


def make_record(desc: SceneDescription, rendered, config: RenderConfig) -> SceneRecord:
    """Turn linear renders into stored arrays and derive defocus and edge ground truth.

    A scene with fewer slices than the file holds (random stack sizes) repeats its last slice, with its
    focus distance, defocus map and geometry, and records its own size in ``stack_size``.
    """
    from .blender import NO_SURFACE_DEPTH

    depth = np.asarray(rendered.depth, dtype=np.float32)
    holes = int(np.count_nonzero(~np.isfinite(depth) | (depth >= NO_SURFACE_DEPTH)))
    if holes:
        raise RenderError(
            f"scene seed {desc.seed}: {holes} pixel(s) see no surface; the preset's background does not cover the camera's view"
        )
    cam = desc.camera
    n, total = len(cam.focus_distances), len(config.focus_distances)
    if n > total:
        raise RenderError(f"scene seed {desc.seed}: {n} slices, more than the file's {total}")
    pad = np.minimum(np.arange(total), n - 1)  # slice index stored at each position

    aif8 = linear_to_srgb8(rendered.aif)
    homography, pose, lens = cam.slice_geometry()
    focus = np.asarray(cam.focus_distances, dtype=np.float32)
    return SceneRecord(
        stack=capture_slices(desc, rendered.slices)[pad],
        aif=aif8,
        depth=depth,
        # from the values as stored (float32), so that readers recompute exactly these maps
        defocus=stored_defocus_maps(depth, focus[pad], cam.f_number, cam.focal_length_mm, cam.sensor_width_mm, cam.defocus_model),
        edges=canny_edges(aif8, config.canny_low, config.canny_high, config.canny_blur_sigma),
        focus_distance=focus[pad],
        f_number=cam.f_number,
        focal_length_mm=cam.focal_length_mm,
        sensor_width_mm=cam.sensor_width_mm,
        seed=desc.seed,
        scene=desc.to_json(),
        slice_homography=homography[pad],
        slice_pose=pose[pad],
        slice_focal_length_mm=lens[pad],
        stack_size=n,
        **on_request_ground_truth(rendered, config),
    )


def on_request_ground_truth(rendered, config: RenderConfig) -> dict[str, np.ndarray]:
    """The ground truth rendered on request (``config.ground_truth``) in its stored form, from the renderer's
    passes (``RenderedScene.normals``: camera frame; ``.objects``: object index + 1, 0 = background)."""
    out = {}
    for name in config.ground_truth:
        value = getattr(rendered, name, None)
        if value is None:
            raise RenderError(f"the renderer made no {name!r} pass, though the configuration asks for it")
        out[name] = np.asarray(value).astype(schema.SPECS[name].dtype)
    return out


def describe_scene(config: RenderConfig, index: int) -> SceneDescription:
    """Scene ``index`` of the dataset ``config`` describes, real-capture effects included."""
    desc = sample_scene(config, scene_seed(config.seed, index))
    return with_effects(desc, EffectsConfig.from_dict(config.effects))


def open_writer(config: RenderConfig, path: Path, first_index: int = 0) -> FocalStackWriter:
    """Create or resume ``path`` and check that the scenes it holds are the ones this config makes.

    ``first_index`` is the dataset index of the file's scene 0 (non-zero for worker shards).
    """
    refuse_other_sampler(path)
    refuse_other_light_field(path)
    refuse_other_assets(config, path)
    attrs = file_attrs(config)
    if first_index:
        attrs["shard_start"] = first_index
    writer = FocalStackWriter.create_or_resume(
        path,
        n_slices=len(config.focus_distances),
        height=config.height,
        width=config.width,
        attrs=attrs,
        resume_ignore=resume_ignore(path, config),
        # defocus maps are an exact function of depth and the camera: readers recompute them
        ground_truth=rendered_declaration(config.defocus_model, store_defocus=False, requested=tuple(config.ground_truth)),
    )
    record_device(writer, config.device, first_index + len(writer))
    have = writer.seeds()
    want = np.array([scene_seed(config.seed, first_index + i) for i in range(len(have))], dtype=np.int64)
    if not np.array_equal(have, want):
        bad = int(np.flatnonzero(have != want)[0])
        writer.close()
        raise DatasetError(
            f"{path}: scene {first_index + bad} has seed {have[bad]}, expected {want[bad]} for --seed {config.seed}"
        )
    return writer


# Light-field slices need OSL, which Cycles runs on the CPU and on OptiX only.
OSL_BACKENDS = ("CPU", "OPTIX")


def slices_for_device(config: RenderConfig, used: str, path: Path) -> tuple[RenderConfig, str | None]:
    """The configuration to render with on ``used`` (what Cycles renders on: 'CPU', 'OPTIX: ...', 'CUDA: ...',
    or a requested device name when it cannot be asked, as for Ray's tasks), and a line to say when it changed:
    light-field slices fall back to Cycles slices where OSL cannot run. A file whose scenes are light-field
    renders is never continued with Cycles slices (a dataset never mixes the two): ConfigError."""
    if config.render.slices != "light_field":
        return config, None
    backend = used.split(":")[0].strip().upper()
    if backend in OSL_BACKENDS:
        return config, None
    stored = {}
    if path.exists():
        try:
            with FocalStackFile(path) as f:
                stored = f.config if len(f) else {}
        except (OSError, DatasetError):
            stored = {}
    if stored.get("slices") == "light_field":
        raise ConfigError(
            f"{path}: its slices are light-field renders, which need OSL: Cycles runs it on the CPU "
            f"and OptiX only, not {backend}; continue it with --device cpu or optix"
        )
    return config.with_overrides(**cycles_slice_keys()), (
        f"light-field slices need OSL, which Cycles runs on the CPU and OptiX only: rendering each slice with "
        f"Cycles on {backend} instead (the file records slices = cycles)"
    )


def finished_scenes(config: RenderConfig, path: Path, first_index: int = 0) -> int:
    """How many complete scenes of this configuration ``path`` holds, checked read-only as ``open_writer``
    checks them (sampler, settings, sizes, seeds): a finished file is confirmed without opening it for
    writing, so processes reading it (a training run validating on it) do not stop a rerun. ``first_index``:
    the dataset index of the file's scene 0 (a worker's shard)."""
    refuse_other_sampler(path)
    refuse_other_light_field(path)
    n = FocalStackWriter.check_existing(
        path, len(config.focus_distances), config.height, config.width, config.to_dict(), resume_ignore(path, config)
    )
    if n < config.scenes:  # scenes to draw: from the files the others were drawn from
        refuse_other_assets(config, path)
    with FocalStackFile(path) as f:
        have = f.read_all("seed")[:n] if n else np.zeros(0, np.int64)
    want = np.array([scene_seed(config.seed, first_index + i) for i in range(len(have))], dtype=np.int64)
    if not np.array_equal(have, want):
        bad = int(np.flatnonzero(have != want)[0])
        raise DatasetError(
            f"{path}: scene {first_index + bad} has seed {have[bad]}, expected {want[bad]} for --seed {config.seed}"
        )
    return n


def refuse_other_light_field(path: Path) -> None:
    """DatasetError, the file untouched, when ``path``'s slices are light-field renders of another version
    (``config.LIGHT_FIELD_VERSION``): resuming would mix two kinds of slices in one dataset."""
    stored = _stored_config(path)
    if stored is None or stored.get("slices") != "light_field":
        return
    version = stored.get("light_field_version", IMPLICIT_BEFORE["light_field_version"])
    if version != LIGHT_FIELD_VERSION:
        raise DatasetError(
            f"{path}: its slices are light-field renders of version {version} (this focalstack renders version "
            f"{LIGHT_FIELD_VERSION}: version 1 drew rays unevenly within pixels and blurred slices too little below a "
            "pixel) and resuming would mix the two: choose another --out"
        )


def refuse_other_sampler(path: Path) -> None:
    """DatasetError, the file untouched, when ``path`` holds scenes that this version would not draw
    again (another scene description format or sampler version): resuming would mix two samplers in one
    dataset. Files this version cannot read at all are left to the writer to name."""
    try:
        with FocalStackFile(path) as f:
            if len(f) == 0:
                return
            first = json.loads(f.read("scene", 0))
    except (OSError, DatasetError, ValueError):
        return
    fmt, sampler = first.get("format_version"), first.get("info", {}).get("sampler_version")
    if (fmt, sampler) != (SCENE_FORMAT_VERSION, SAMPLER_VERSION):
        raise DatasetError(
            f"{path}: its scenes were drawn by another focalstack (scene format {fmt}, sampler {sampler}; this "
            f"one draws format {SCENE_FORMAT_VERSION}, sampler {SAMPLER_VERSION}) and resuming would mix the two: "
            "choose another --out"
        )


def record_device(writer: FocalStackWriter, device: str, next_index: int) -> None:
    """Note in the file's ``render_devices`` attribute which device renders from which scene on (CPU and
    GPU renders of the same seeds hold the same scenes; their noise differs)."""
    devices = writer.attr("render_devices") or []
    if not devices or devices[-1]["device"] != device:
        writer.set_attr("render_devices", [*devices, {"device": device, "from_scene": int(next_index)}])


@dataclass
class RenderSummary:
    path: Path
    scenes: int  # complete scenes in the file now
    rendered: int  # scenes rendered by this call
    seconds: float
    phase_seconds: dict = field(default_factory=dict)  # summed over rendered scenes


ProgressFn = Callable[[int, dict], None]  # (scenes just finished, phase seconds of the last one)


def open_renderer(config: RenderConfig, threads: int = 0):
    """A ``BlenderRenderer`` with the configuration's render settings and device, ``threads`` CPU threads."""
    from .blender import BlenderRenderer

    return BlenderRenderer(
        **config.render.to_dict(), threads=threads, device=config.device, ground_truth=tuple(config.ground_truth)
    )


def render_scene(config: RenderConfig, renderer, index: int) -> tuple[SceneRecord, dict]:
    """Scene ``index`` of the dataset: described, rendered and turned into its record; with the seconds
    each phase took. RenderError naming the scene for an asset file it cannot use (changed since it was drawn)."""
    t0 = time.perf_counter()
    desc = describe_scene(config, index)
    t1 = time.perf_counter()
    try:
        rendered = renderer.render(desc)
    except AssetChanged as exc:  # an asset file changed or vanished between drawing and building the scene
        raise RenderError(f"scene {index}: {exc}") from None
    t2 = time.perf_counter()
    record = make_record(desc, rendered, config)
    t3 = time.perf_counter()
    return record, {"sample": t1 - t0, **rendered.seconds, "ground_truth": t3 - t2}


def add_phases(totals: dict, phases: dict) -> None:
    for k, v in phases.items():
        totals[k] = totals.get(k, 0.0) + v


def render_range(
    config: RenderConfig,
    writer: FocalStackWriter,
    first_index: int,
    stop: int,
    *,
    renderer=None,
    threads: int = 0,
    progress: ProgressFn | None = None,
    stop_notice: str | None = STOPPING,
) -> dict:
    """Render scenes up to index ``stop`` into ``writer``, whose scene 0 is dataset index ``first_index``,
    continuing after the scenes it already holds. Returns phase seconds summed over the scenes rendered.
    Ctrl-C and SIGTERM are held until the scene being rendered is written (``stop_notice`` says so)."""

    totals: dict[str, float] = {}
    begin = first_index + len(writer)
    if begin >= stop:
        return totals
    own = renderer is None
    if own:
        renderer = open_renderer(config, threads)
    try:
        for index in range(begin, stop):
            with held_signals(stop_notice):
                record, phases = render_scene(config, renderer, index)
                t = time.perf_counter()
                writer.append(record)
                phases["write"] = time.perf_counter() - t
            add_phases(totals, phases)
            if progress:
                progress(1, phases)
    finally:
        if own:
            renderer.close()
    return totals
