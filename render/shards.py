"""Rendering in several processes: scene ranges rendered into shard files, merged into the output in order.

With ``workers > 1`` the remaining scene indices are split into contiguous ranges, each rendered by a
separate process (each its own Blender) into a shard file ``<out>.parts/shard-<start>-<end>.h5``, itself a
resumable focalstack file. Shards are appended to the output in index order at the end, record by record
(every dataset the schema has), and shards left by a killed run are resumed, or merged where they
continue the output.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
from pathlib import Path

import numpy as np

from focalstack.dataset import FocalStackFile, FocalStackWriter

from .config import RenderConfig
from .pipeline import ProgressFn, add_phases, open_writer, render_range

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
        # no notice: the main process stops at once and ends its workers with it (their shards resume)
        totals = render_range(config, writer, start, stop, threads=threads, progress=report, stop_notice=None)
    return start, stop, totals


def _pin_gpu(gpus) -> None:
    """Pool initializer: this worker process sees one GPU only (before it imports bpy)."""
    gpu = gpus.get()
    os.environ["CUDA_VISIBLE_DEVICES"] = os.environ["HIP_VISIBLE_DEVICES"] = str(gpu)


def run_workers(
    config: RenderConfig,
    out: Path,
    tasks,
    workers: int,
    progress: ProgressFn | None,
    threads: int | None = None,
    gpus: list[str] | None = None,
) -> dict:
    """Render ``tasks`` (index ranges) into their shards in ``workers`` processes; ``threads`` Cycles
    threads each (None: the machine's cores shared out); ``gpus``: worker i sees only GPU gpus[i % len]."""
    # Blender is not fork-safe: each worker is a fresh interpreter with its own bpy.
    ctx = mp.get_context("spawn")
    n_proc = min(workers, len(tasks))
    threads = threads or max(1, (os.cpu_count() or 1) // n_proc)
    totals: dict[str, float] = {}
    with ctx.Manager() as manager:
        queue = manager.Queue()
        pin = {}
        if gpus:
            gpu_queue = manager.Queue()
            for i in range(n_proc):
                gpu_queue.put(gpus[i % len(gpus)])
            pin = {"initializer": _pin_gpu, "initargs": (gpu_queue,)}
        with ctx.Pool(n_proc, **pin) as pool:
            jobs = [(config.to_dict(), str(out), a, b, threads, queue) for a, b in tasks]
            result = pool.map_async(_worker_task, jobs, chunksize=1)
            while not result.ready() or not queue.empty():
                try:
                    n, phases = queue.get(timeout=0.2)
                except Exception:  # queue.Empty through the manager proxy
                    continue
                add_phases(totals, phases)
                if progress:
                    progress(n, phases)
            result.get()  # re-raises a worker's exception here
            pool.close()  # let the workers exit (not terminate them) so that their exit handlers run
            pool.join()
    return totals


def _probe(device: str) -> str:
    from .blender import BlenderRenderer

    with BlenderRenderer(samples=1, denoise=False, device=device) as renderer:
        return renderer.device_used


def probe_device(device: str) -> str:
    """What Cycles would render on for ``device``, asked in a fresh process (so that this one need not
    import Blender); raises the renderer's BlenderError naming what Cycles sees."""
    with mp.get_context("spawn").Pool(1) as pool:
        used = pool.apply(_probe, (device,))
        pool.close()
        pool.join()
    return used
