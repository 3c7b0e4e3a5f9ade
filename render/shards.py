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
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from queue import Empty

import h5py
import numpy as np

from focalstack.dataset import FocalStackFile, FocalStackWriter
from focalstack.dataset.cliutil import one_line
from focalstack.dataset.reader import is_locked, open_error_text
from focalstack.dataset.schema import DatasetError

from .config import ConfigError, RenderConfig
from .pipeline import ProgressFn, RenderError, add_phases, finished_scenes, open_writer, render_range

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


def shard_progress(config: RenderConfig, out: Path) -> list[tuple[int, int, int]]:
    """Each shard an earlier run left beside ``out``, as (start, stop, complete scenes), checked read-only as a
    file to resume is (settings, sampler, sizes, seeds): a shard of other settings is refused before anything
    of it is merged, so one file never mixes two configurations. DatasetError or ConfigError naming the shard."""
    found = []
    for start, stop, path in existing_shards(out):
        try:
            h5py.File(path, "r").close()
        except OSError as exc:
            if is_locked(exc):  # a worker of a run whose main process was killed, still rendering
                raise DatasetError(
                    f"{path}: {open_error_text(exc)}: a worker of an earlier --workers run, whose main process was "
                    "killed, may still be rendering into it; wait for it to end, or stop it"
                ) from None
            raise DatasetError(
                f"{path}: {open_error_text(exc)}: a shard that an earlier --workers run left; remove that file and its "
                "scenes render again"
            ) from None
        try:
            complete = finished_scenes(config, path, first_index=start)
        except (DatasetError, ConfigError) as exc:
            raise type(exc)(
                f"{one_line(exc)} (a shard that an earlier --workers run left in {shard_folder(out)}: rerun with that "
                "run's settings, or remove the folder to start these scenes again)"
            ) from None
        found.append((start, stop, complete))
    return found


def plan_tasks(done: int, total: int, workers: int, shards: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """What is still to render for scenes ``done``..``total - 1``, as (start, stop, end): scenes up to ``end`` into
    the shard named for ``start``..``stop``. ``shards``: the leftover shards' (start, stop, complete scenes).
    A leftover shard keeps its name and resumes, up to ``total`` (a rerun may ask for fewer scenes than the run
    that made it) and only where it lacks scenes; the gaps are split into about ``workers`` new shards."""
    tasks: list[tuple[int, int, int]] = []
    covered = []
    for start, stop, complete in shards:
        if stop <= done or start >= total:  # merged already, or beyond the scenes asked for
            continue
        end = min(stop, total)
        covered.append((start, end))
        if start + complete < end:
            tasks.append((start, stop, end))
    gaps, cursor = [], done
    for start, end in sorted(covered):
        if start > cursor:
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < total:
        gaps.append((cursor, total))
    gap_total = sum(b - a for a, b in gaps)
    for a, b in gaps:
        pieces = max(1, round(workers * (b - a) / max(gap_total, 1)))
        edges = np.linspace(a, b, pieces + 1).round().astype(int)
        tasks.extend((int(lo), int(hi), int(hi)) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo)
    return sorted(set(tasks))


def merge_shards(writer: FocalStackWriter, out: Path, total: int) -> None:
    """Append shard scenes that continue ``writer`` in index order. A shard is deleted once its scenes are in
    ``writer`` and it has none left to render below ``total`` (a rerun that asks for fewer scenes keeps the
    ones rendered past it, as a file that holds more scenes than asked keeps them)."""
    for start, stop, path in existing_shards(out):
        if len(writer) >= stop:
            path.unlink()
            continue
        if start > len(writer):
            break
        with FocalStackFile(path) as shard:
            for row in range(len(writer) - start, len(shard)):
                writer.append(shard[row])
            reached = start + len(shard)
        if reached < len(writer):  # the file went on past it (a --ray run): what it holds is in the file
            path.unlink()
            continue
        if reached >= min(stop, total):
            path.unlink()
        if reached < stop:
            break
    folder = shard_folder(out)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


_PROGRESS = None  # in a worker process: the queue its scenes' progress goes to (set by _start_worker)


def _start_worker(main_pid: int, progress, gpus) -> None:
    """Executor initializer, in each worker process: where progress goes; with ``gpus`` (a queue of GPU ids),
    one GPU for this process, before it imports bpy. The worker ends with the main process ``main_pid``."""
    global _PROGRESS
    _PROGRESS = progress
    # Ctrl-C reaches the whole process group: the main process stops the workers (an idle worker would print
    # a traceback of the executor's own loop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def end_with_parent() -> None:  # the main process killed (SIGKILL), even before this one started: end too
        while os.getppid() == main_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=end_with_parent, daemon=True).start()
    if gpus is not None:
        gpu = gpus.get(timeout=60)
        os.environ["CUDA_VISIBLE_DEVICES"] = os.environ["HIP_VISIBLE_DEVICES"] = str(gpu)


def _worker_task(args) -> int:
    """One task in a worker process: scenes up to ``end`` into the shard for ``start``..``stop``; the number
    rendered (a resumed shard holds some already)."""
    config_dict, out, start, stop, end, threads = args
    config = RenderConfig.from_dict(config_dict)

    def report(n: int, phases: dict) -> None:
        _PROGRESS.put((n, phases))

    with open_writer(config, shard_path(Path(out), start, stop), start) as writer:
        before = len(writer)
        # no notice: the main process stops at once and ends its workers with it (their shards resume)
        render_range(config, writer, start, end, threads=threads, progress=report, stop_notice=None)
        return len(writer) - before


def run_workers(
    config: RenderConfig,
    out: Path,
    tasks,
    workers: int,
    progress: ProgressFn | None,
    threads: int | None = None,
    gpus: list[str] | None = None,
    task: Callable | None = None,
) -> tuple[dict, int]:
    """Render ``tasks`` (``plan_tasks``' triples) into their shards in ``workers`` processes; ``threads`` Cycles
    threads each (None: the machine's cores shared out); ``gpus``: worker i sees only GPU gpus[i % len]. Returns
    the phase seconds summed over the scenes rendered, and their number. The first task to fail ends the run
    at once with its own error (the other workers are stopped; their shards resume); a worker that dies
    (killed, out of memory) ends it with a RenderError. ``task``: what a worker runs per task (tests)."""
    # Blender is not fork-safe: each worker is a fresh interpreter with its own bpy. Queues, not a manager
    # process, and workers that end with this process: nothing is left running when it is killed.
    ctx = mp.get_context("spawn")
    n_proc = min(workers, len(tasks))
    threads = threads or max(1, (os.cpu_count() or 1) // n_proc)
    totals: dict[str, float] = {}
    progress_queue, gpu_queue = ctx.Queue(), None
    if gpus:
        gpu_queue = ctx.Queue()
        for i in range(n_proc):
            gpu_queue.put(gpus[i % len(gpus)])
    others = set(mp.active_children())
    # concurrent.futures, not multiprocessing.Pool: a Pool replaces a worker that dies and waits for its task for
    # ever; an executor fails every task of a pool that lost one.
    pool = ProcessPoolExecutor(
        n_proc, mp_context=ctx, initializer=_start_worker, initargs=(os.getpid(), progress_queue, gpu_queue)
    )
    try:
        jobs = [pool.submit(task or _worker_task, (config.to_dict(), str(out), a, b, e, threads)) for a, b, e in tasks]
        pending, received = set(jobs), 0
        while pending:
            done, pending = wait(pending, timeout=0, return_when=FIRST_EXCEPTION)
            failed = next((job for job in done if job.exception() is not None), None)
            if failed is not None:
                failed.result()  # its own error, now: not after the other workers' ranges
            received += _take_progress(progress_queue, totals, progress)
        rendered = sum(job.result() for job in jobs)
        deadline = time.monotonic() + 10  # the last reports may still be on their way through the queue's pipe
        while received < rendered and time.monotonic() < deadline:
            received += _take_progress(progress_queue, totals, progress)
    except BaseException as exc:  # Ctrl-C, SIGTERM, a scene's error: stop the workers now (their shards resume)
        for process in set(mp.active_children()) - others:
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        if isinstance(exc, BrokenProcessPool):  # a worker died
            raise RenderError(
                f"{out}: a --workers process died (killed, or out of memory?); the scenes finished are kept in "
                f"{shard_folder(out)}: run the same command again to resume"
            ) from None
        raise
    pool.shutdown(wait=True)  # the workers exit (are not terminated), so that their exit handlers run
    return totals, rendered


def _take_progress(queue, totals: dict, progress: ProgressFn | None) -> int:
    """One progress report from the workers, added to ``totals`` and passed on; the scenes it counts (0 when
    none came within a fifth of a second)."""
    try:
        n, phases = queue.get(timeout=0.2)
    except Empty:
        return 0
    add_phases(totals, phases)
    if progress:
        progress(n, phases)
    return n


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
