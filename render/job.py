"""Render a whole dataset into one file: resume what is there, render the rest in this process or in
worker processes (``shards``), and report what was done."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path
from typing import Callable

from focalstack.dataset import FocalStackFile
from focalstack.dataset.files import exclusive_lock
from focalstack.dataset.schema import DatasetError

from .blender import check_blender
from .cluster import RaySettings, ray_session, render_range_with_ray
from .config import RenderConfig
from .pipeline import (
    ProgressFn,
    RenderSummary,
    finished_scenes,
    open_writer,
    render_range,
    slices_for_device,
    with_file_settings,
)
from .shards import existing_shards, merge_shards, plan_tasks, probe_device, run_workers, shard_folder, shard_progress


def render_dataset(
    config: RenderConfig,
    out: str | os.PathLike,
    *,
    workers: int = 1,
    threads: int | None = None,
    gpus: list[str] | None = None,
    ray: RaySettings | None = None,
    progress: ProgressFn | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> RenderSummary:
    """Render ``config.scenes`` scenes into ``out``, resuming what is there: in this process, in ``workers``
    processes (shards merged in order), or on Ray (``ray``; the driver needs no Blender). ``threads`` caps
    Cycles' threads per process (None: all cores, shared out among workers); ``gpus`` pins worker i to GPU
    gpus[i % len]. ``on_start(done, total)`` is called once the file is open, before rendering."""
    config.validate()
    out = Path(out)
    if workers < 1:
        raise ValueError(f"workers = {workers}: expected a positive integer")
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: folder {out.parent} does not exist")
    with exclusive_lock(out):  # first: a second writer is told so whatever else is wrong
        dropped = drop_empty_leftover(out)
        if dropped:
            warnings.warn(dropped)
        used = config.device  # Ray's tasks render on their own machines: what was asked is all we know
        if ray is None:  # before the output file exists
            check_blender()
            used = probe_device(config.device) if config.device != "cpu" else "CPU"
        config, change = slices_for_device(config, used, out)
        if change:
            warnings.warn(change)
        config, kept = with_file_settings(config, out)
        if kept:
            warnings.warn(kept)
        with ray_session(ray) if ray is not None else _nothing():
            return _render_locked(config, out, workers, threads, gpus, ray, progress, on_start)


def drop_empty_leftover(out: Path) -> str | None:
    """Remove ``out`` when it is what a render killed outright (SIGKILL, a power cut) before its first scene
    leaves: a rendered focalstack file of no complete scene and at most the one row begun, with no shards
    waiting to merge into it. It is no dataset, and its settings would otherwise refuse a rerun with other
    ones, or bind one with today's defaults. Returns a line saying so, or None. The caller holds ``out``'s
    lock; any other file (imported, of other rows, or that does not read) is left for the writer to judge."""
    if not out.exists() or existing_shards(out):
        return None
    try:
        with FocalStackFile(out) as f:
            if len(f) or f.ground_truth["aif"].source != "rendered" or len(f.dataset("complete")) > 1:
                return None
    except (OSError, DatasetError, KeyError):
        return None
    out.unlink()
    return f"{out}: held no complete scene (a run stopped before its first one): starting it again"


@contextlib.contextmanager
def _nothing():
    yield


def _render_locked(config, out: Path, workers, threads, gpus, ray, progress, on_start) -> RenderSummary:
    """``render_dataset`` once this process holds the file's lock (and Ray, if asked, is up)."""
    t0 = time.perf_counter()
    if out.exists() and not existing_shards(out):
        done = finished_scenes(config, out)
        if done >= config.scenes:  # nothing to render: confirmed read-only, the file is not opened for writing
            if on_start:
                on_start(config.scenes, config.scenes)
            return RenderSummary(out, done, 0, time.perf_counter() - t0, {})
    shards = shard_progress(config, out)  # before the output is opened: a shard of other settings merges nowhere
    created = not out.exists()
    writer = open_writer(config, out)
    try:
        if workers > 1 or ray is not None or shards:
            merge_shards(writer, out, config.scenes)
        done = len(writer)
        left = shard_progress(config, out) if ray is None and existing_shards(out) else []  # after the merge
        if on_start:  # scenes that wait in shards to be merged are done too (Ray renders past them)
            on_start(min(done + _ready_in_shards(left, done, config.scenes), config.scenes), config.scenes)
        totals: dict[str, float] = {}
        if ray is not None:
            totals = render_range_with_ray(config, writer, config.scenes, ray, progress)
            rendered = len(writer) - done
            merge_shards(writer, out, config.scenes)  # an earlier --workers run's shards, now covered
        elif workers == 1 and not existing_shards(out):
            totals = render_range(config, writer, 0, config.scenes, threads=threads or 0, progress=progress)
            rendered = len(writer) - done
        else:
            # a killed --workers run's shard scenes, merged now, were not rendered now: the workers count theirs
            tasks = plan_tasks(done, config.scenes, workers, left)
            rendered = 0
            if tasks:
                shard_folder(out).mkdir(exist_ok=True)
                totals, rendered = run_workers(config, out, tasks, workers, progress, threads, gpus)
            merge_shards(writer, out, config.scenes)
        waiting = existing_shards(out)
        if waiting:
            warnings.warn(
                f"{shard_folder(out)}: {len(waiting)} shard(s) of an earlier run hold scenes past the "
                f"{len(writer)} in {out.name}; a run that asks for them merges them"
            )
        return RenderSummary(out, len(writer), rendered, time.perf_counter() - t0, totals)
    except BaseException:
        # A file this run made that holds no scene is no dataset: leave nothing under the name asked for
        # (shards of a --workers run hold its progress, and keep the file they merge into).
        try:
            empty = created and len(writer) == 0 and not existing_shards(out)
        except Exception:  # noqa: BLE001 - a broken handle: keep the file, and the error that broke it
            empty = False
        if empty:
            writer.close()
            out.unlink(missing_ok=True)
        raise
    finally:
        writer.close()


def _ready_in_shards(shards: list[tuple[int, int, int]], done: int, total: int) -> int:
    """Complete scenes from index ``done`` up to ``total`` that shards (``shard_progress``) hold already."""
    return sum(max(0, min(start + complete, total) - max(start, done)) for start, _, complete in shards)
