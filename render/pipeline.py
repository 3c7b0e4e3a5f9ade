"""Render a whole dataset: sample scenes from seeds, render them, derive ground truth, write HDF5.

Resuming: the output file is the ledger. A rerun with the same settings opens it, drops a trailing
incomplete scene and continues with the next scene index, so an interrupted and an uninterrupted run
produce the same scenes in the same order (scene i always has seed ``scene_seed(seed, i)``).

Workers: with ``workers > 1`` the remaining scene indices are split into contiguous ranges, each rendered
by a separate process (each its own Blender) into a shard file ``<out>.parts/shard-<start>-<end>.h5``,
itself a resumable focalstack file. Shards are appended to the output in index order at the end, and
shards left by a killed run are resumed, or merged where they continue the output.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

import numpy as np

from focalstack.dataset import FocalStackFile, FocalStackWriter, SceneRecord
from focalstack.dataset.colour import linear_to_srgb8
from focalstack.dataset.groundtruth import canny_edges
from focalstack.dataset.optics import defocus_maps
from focalstack.dataset.schema import DatasetError

from .config import RenderConfig
from .effects import EffectsConfig, add_sensor_noise, jpeg_roundtrip, noise_rng, scene_effects, slice_geometry, with_effects
from .sampling import sample_scene, scene_seed
from .scene import SceneDescription

# Settings that may differ when resuming a file: asking for more scenes extends it.
RESUME_IGNORE = ("scenes",)


class RenderError(RuntimeError):
    """A scene could not be rendered into valid ground truth; the message names the scene."""


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def file_attrs(config: RenderConfig) -> dict:
    """Root attributes of a new file (DESIGN.md)."""
    return {
        "generator_version": _package_version("focalstack"),
        # Read from package metadata so the parent of worker processes need not import bpy.
        "blender_version": _package_version("bpy"),
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "preset": config.preset,
        "config": config.to_dict(),
        "defocus_model": config.defocus_model,
    }


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
            f"scene seed {desc.seed}: {holes} pixel(s) see no surface; the preset's background does not "
            "cover the camera's view"
        )
    cam = desc.camera
    n, total = len(cam.focus_distances), len(config.focus_distances)
    if n > total:
        raise RenderError(f"scene seed {desc.seed}: {n} slices, more than the file's {total}")
    pad = np.minimum(np.arange(total), n - 1)  # slice index stored at each position

    aif8 = linear_to_srgb8(rendered.aif)
    homography, pose, lens = slice_geometry(desc)
    focus = np.asarray(cam.focus_distances, dtype=np.float32)
    defocus = defocus_maps(depth, cam.focus_distances, cam.f_number, cam.focal_length_mm, cam.sensor_width_mm,
                           config.defocus_model)
    return SceneRecord(
        stack=capture_slices(desc, rendered.slices)[pad],
        aif=aif8,
        depth=depth,
        defocus=defocus[pad],
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
    )


def capture_slices(desc: SceneDescription, slices_linear: np.ndarray) -> np.ndarray:
    """Linear renders -> stored 8-bit sRGB slices, through the scene's sensor noise and JPEG, if any."""
    effects = scene_effects(desc) or {}
    out = []
    for k, linear in enumerate(slices_linear):
        if effects.get("noise_full_well") or effects.get("read_noise"):
            linear = add_sensor_noise(linear, effects["noise_full_well"], effects["read_noise"], noise_rng(desc, k))
        srgb8 = linear_to_srgb8(linear)
        if effects.get("jpeg_quality"):
            srgb8 = jpeg_roundtrip(srgb8, effects["jpeg_quality"])
        out.append(srgb8)
    return np.stack(out)


def describe_scene(config: RenderConfig, index: int) -> SceneDescription:
    """Scene ``index`` of the dataset ``config`` describes, real-capture effects included."""
    desc = sample_scene(config, scene_seed(config.seed, index))
    return with_effects(desc, EffectsConfig.from_dict(config.effects))


def open_writer(config: RenderConfig, path: Path, first_index: int = 0) -> FocalStackWriter:
    """Create or resume ``path`` and check that the scenes it holds are the ones this config makes.

    ``first_index`` is the dataset index of the file's scene 0 (non-zero for worker shards).
    """
    attrs = file_attrs(config)
    if first_index:
        attrs["shard_start"] = first_index
    writer = FocalStackWriter.create_or_resume(
        path,
        n_slices=len(config.focus_distances),
        height=config.height,
        width=config.width,
        attrs=attrs,
        resume_ignore=RESUME_IGNORE,
    )
    have = writer.seeds()
    want = np.array([scene_seed(config.seed, first_index + i) for i in range(len(have))], dtype=np.int64)
    if not np.array_equal(have, want):
        bad = int(np.flatnonzero(have != want)[0])
        writer.close()
        raise DatasetError(
            f"{path}: scene {first_index + bad} has seed {have[bad]}, expected {want[bad]} for --seed {config.seed}"
        )
    return writer


@dataclass
class RenderSummary:
    path: Path
    scenes: int  # complete scenes in the file now
    rendered: int  # scenes rendered by this call
    seconds: float
    phase_seconds: dict = field(default_factory=dict)  # summed over rendered scenes


ProgressFn = Callable[[int, dict], None]  # (scenes just finished, phase seconds of the last one)


def render_range(
    config: RenderConfig,
    writer: FocalStackWriter,
    first_index: int,
    stop: int,
    *,
    renderer=None,
    threads: int = 0,
    progress: ProgressFn | None = None,
) -> dict:
    """Render scenes up to index ``stop`` into ``writer``, whose scene 0 is dataset index ``first_index``,
    continuing after the scenes it already holds. Returns phase seconds summed over the scenes rendered."""
    from .blender import BlenderRenderer

    totals: dict[str, float] = {}
    begin = first_index + len(writer)
    if begin >= stop:
        return totals
    own = renderer is None
    if own:
        renderer = BlenderRenderer(
            samples=config.samples, denoise=config.denoise, defocus_model=config.defocus_model, threads=threads
        )
    try:
        for index in range(begin, stop):
            t0 = time.perf_counter()
            desc = describe_scene(config, index)
            t1 = time.perf_counter()
            rendered = renderer.render(desc)
            t2 = time.perf_counter()
            record = make_record(desc, rendered, config)
            t3 = time.perf_counter()
            writer.append(record)
            t4 = time.perf_counter()
            phases = {"sample": t1 - t0, **rendered.seconds, "ground_truth": t3 - t2, "write": t4 - t3}
            for k, v in phases.items():
                totals[k] = totals.get(k, 0.0) + v
            if progress:
                progress(1, phases)
    finally:
        if own:
            renderer.close()
    return totals


# -- workers ---------------------------------------------------------------------------------------
_SHARD_NAME = re.compile(r"^shard-(\d{7})-(\d{7})\.h5$")


def shard_folder(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def shard_path(out: Path, start: int, stop: int) -> Path:
    return shard_folder(out) / f"shard-{start:07d}-{stop:07d}.h5"


def existing_shards(out: Path) -> list[tuple[int, int, Path]]:
    folder = shard_folder(out)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _SHARD_NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), int(m.group(2)), p))
    return sorted(found)


def plan_tasks(done: int, total: int, workers: int, shards: list[tuple[int, int, Path]]) -> list[tuple[int, int]]:
    """Index ranges still to render: existing shards beyond ``done`` keep their ranges (they resume);
    the gaps are split into about ``workers`` contiguous pieces."""
    tasks: list[tuple[int, int]] = []
    covered = []
    for start, stop, _ in shards:
        if stop > done and start < total:
            tasks.append((start, min(stop, total)))
            covered.append((start, min(stop, total)))
    gaps, cursor = [], done
    for start, stop in sorted(covered):
        if start > cursor:
            gaps.append((cursor, start))
        cursor = max(cursor, stop)
    if cursor < total:
        gaps.append((cursor, total))
    gap_total = sum(b - a for a, b in gaps)
    for a, b in gaps:
        pieces = max(1, round(workers * (b - a) / max(gap_total, 1)))
        edges = np.linspace(a, b, pieces + 1).round().astype(int)
        tasks.extend((int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo)
    return sorted(set(tasks))


def merge_shards(writer: FocalStackWriter, out: Path, total: int) -> None:
    """Append shard scenes that continue ``writer`` in index order; delete shards fully merged."""
    for start, stop, path in existing_shards(out):
        if len(writer) >= stop:
            path.unlink()
            continue
        if start > len(writer):
            break
        with FocalStackFile(path) as shard:
            for row in range(len(writer) - start, len(shard)):
                writer.append(shard[row])
            merged_all = start + len(shard) >= stop
        if merged_all:
            path.unlink()
        else:
            break
    folder = shard_folder(out)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _worker_task(args) -> tuple[int, int, dict]:
    config_dict, out, start, stop, threads, queue = args
    config = RenderConfig.from_dict(config_dict)

    def report(n: int, phases: dict) -> None:
        queue.put((n, phases))

    with open_writer(config, shard_path(Path(out), start, stop), start) as writer:
        totals = render_range(config, writer, start, stop, threads=threads, progress=report)
    return start, stop, totals


def render_dataset(
    config: RenderConfig,
    out: str | os.PathLike,
    *,
    workers: int = 1,
    progress: ProgressFn | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> RenderSummary:
    """Render ``config.scenes`` scenes into ``out``, resuming what is there. ``on_start(done, total)``
    is called once the file is open, before rendering."""
    config.validate()
    out = Path(out)
    if workers < 1:
        raise ValueError(f"workers = {workers}: expected a positive integer")
    t0 = time.perf_counter()
    writer = open_writer(config, out)
    try:
        if workers > 1 or existing_shards(out):
            merge_shards(writer, out, config.scenes)
        done = len(writer)
        if on_start:
            on_start(min(done, config.scenes), config.scenes)
        totals: dict[str, float] = {}
        if workers == 1 and not existing_shards(out):
            totals = render_range(config, writer, 0, config.scenes, progress=progress)
        else:
            tasks = plan_tasks(done, config.scenes, workers, existing_shards(out))
            if tasks:
                shard_folder(out).mkdir(exist_ok=True)
                totals = _run_workers(config, out, tasks, workers, progress)
            merge_shards(writer, out, config.scenes)
        rendered = len(writer) - done
        return RenderSummary(out, len(writer), rendered, time.perf_counter() - t0, totals)
    finally:
        writer.close()


def _run_workers(config: RenderConfig, out: Path, tasks, workers: int, progress: ProgressFn | None) -> dict:
    # Blender is not fork-safe: each worker is a fresh interpreter with its own bpy.
    ctx = mp.get_context("spawn")
    n_proc = min(workers, len(tasks))
    threads = max(1, (os.cpu_count() or 1) // n_proc)
    totals: dict[str, float] = {}
    with ctx.Manager() as manager:
        queue = manager.Queue()
        with ctx.Pool(n_proc) as pool:
            jobs = [(config.to_dict(), str(out), a, b, threads, queue) for a, b in tasks]
            result = pool.map_async(_worker_task, jobs, chunksize=1)
            while not result.ready() or not queue.empty():
                try:
                    n, phases = queue.get(timeout=0.2)
                except Exception:  # queue.Empty through the manager proxy
                    continue
                for k, v in phases.items():
                    totals[k] = totals.get(k, 0.0) + v
                if progress:
                    progress(n, phases)
            result.get()  # re-raises a worker's exception here
    return totals
