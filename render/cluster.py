"""Rendering on a Ray cluster: tasks render ranges of scenes, the driver alone writes the file, in order.

Each task renders a contiguous range of scene indices in its own worker process with its own Blender
(``max_calls=1``: a fresh process per task, as Blender wants) and returns the finished records through
Ray's object store, so no shared file system is needed. The driver is the only writer of the output file
and appends records strictly in index order, holding finished ranges that arrive early until the ones
before them are in. The file therefore stays the ledger exactly as in one process: a killed driver
resumes at the first incomplete scene when run again, and a task whose worker dies is retried by Ray
(``max_retries``) and renders the same scenes (they follow from their seeds).

Resources per task: ``threads`` CPUs (Cycles' threads) and ``gpus`` GPUs (Ray sets CUDA_VISIBLE_DEVICES;
the task's renderer uses the configuration's ``device``). Nodes need focalstack[render] installed, and any user ``--assets``
folder at the same path; the bundled assets come with the package.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

from focalstack.dataset import FocalStackWriter

from .config import ConfigError, RenderConfig
from .interrupt import held_signals
from .pipeline import ProgressFn, add_phases

# Ray retries a task whose worker process died this many times before the run fails.
TASK_RETRIES = 3


@dataclass(frozen=True)
class RaySettings:
    address: str | None = None  # None: start a Ray instance on this machine; else a cluster's address
    threads: int = 2  # CPUs (Cycles threads) per task
    gpus: float = 0.0  # GPUs per task
    scenes_per_task: int = 4
    tasks_in_flight: int = 0  # 0: twice the cluster's CPUs / threads; bounds the driver's memory
    connect_timeout: float = 30.0  # seconds to reach the cluster's address before giving up, in one line


def render_scene_range(config_dict: dict, start: int, stop: int, threads: int, assets: dict | None = None) -> tuple[int, list]:
    """A Ray task: scenes ``start``..``stop - 1`` as (record, phase seconds) pairs, in index order. ``assets``:
    the driver's ``asset_fingerprint``; a node whose asset files differ would draw other scenes (ConfigError)."""
    from .pipeline import open_renderer, render_scene
    from .sampling import asset_fingerprint, scene_params

    config = RenderConfig.from_dict(config_dict)
    here = asset_fingerprint(scene_params(config.scene))
    if here != assets:
        import socket

        raise ConfigError(
            f"Ray node {socket.gethostname()}: its asset files differ from the driver's ({here} here, {assets} "
            "there): every node needs the same files in the --assets folders, at the same paths"
        )
    out = []
    with open_renderer(config, threads) as renderer:
        for index in range(start, stop):
            out.append(render_scene(config, renderer, index))
    return start, out


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'focalstack[cluster]'") from None
    return ray


def check_ray_address(address: str, timeout: float) -> None:
    """ConfigError in one line, within about ``timeout`` seconds, unless ``address`` (HOST:PORT, or
    ray://HOST:PORT) answers a TCP connection: Ray's own connect retries for minutes, or raises a traceback."""
    import socket
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as Timeout

    where = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = where.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
        raise ConfigError(f"--ray {address!r}: expected HOST:PORT (e.g. 10.0.0.1:6379) or ray://HOST:PORT")
    pool = ThreadPoolExecutor(max_workers=1)  # getaddrinfo has no timeout of its own
    try:
        pool.submit(socket.create_connection, (host, int(port)), timeout).result(timeout=timeout + 1).close()
    except Timeout:
        raise ConfigError(
            f"--ray {address}: no answer from {host}:{port} within {timeout:g} s "
            "(is the cluster's head running there? see --ray-timeout)"
        ) from None
    except socket.gaierror as exc:
        raise ConfigError(f"--ray {address}: cannot resolve host {host!r} ({exc.strerror})") from None
    except OSError as exc:
        raise ConfigError(f"--ray {address}: cannot connect to {host}:{port} ({exc.strerror or exc})") from None
    finally:
        pool.shutdown(wait=False)
    _import_ray()  # the one-line "install the cluster extra" before anything else
    # Something answers there; whether it is a Ray cluster only Ray can say, and ray.init retries an answer
    # that is not Ray's (a proxy, another service) for minutes: ask it in a process that can be stopped.
    import subprocess
    import sys

    probe = "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); ray.shutdown()"
    try:
        done = subprocess.run([sys.executable, "-c", probe, address], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"--ray {address}: no Ray cluster answered there within {timeout:g} s "
            "(is the cluster's head running there? see --ray-timeout)"
        ) from None
    if done.returncode != 0:
        last = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise ConfigError(f"--ray {address}: Ray could not connect ({last[-1][:200] if last else done.returncode})")


@contextmanager
def ray_session(settings: RaySettings):
    """Ray initialised for the render (the cluster at ``settings.address``, checked first, or a local
    instance) and shut down after; nothing is written before it is up."""
    if settings.address is not None:
        check_ray_address(settings.address, settings.connect_timeout)
    ray = _import_ray()
    if ray.is_initialized():
        yield
        return
    local = settings.address is None
    on_sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(
        address=settings.address,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
        num_cpus=(os.cpu_count() or 1) if local else None,
    )
    if threading.current_thread() is threading.main_thread() and on_sigterm is not None:
        # ray.init installs its own SIGTERM handler (exit status 1, no word): SIGTERM stops the render as Ctrl-C does
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        check_task_fits(ray, settings, local)
        yield
    finally:
        ray.shutdown()


def check_task_fits(ray, settings: RaySettings, local: bool) -> None:
    """A task asks one node for ``threads`` CPUs and ``gpus`` GPUs together; where no node has both, Ray waits
    for ever without a word. On this machine's own Ray that is a ConfigError; on a cluster a warning (an
    autoscaler may still add a node that has them)."""
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    have = [(float(res.get("CPU", 0)), float(res.get("GPU", 0))) for res in nodes]
    if any(cpus >= settings.threads and gpus >= settings.gpus for cpus, gpus in have):
        return
    asked = f"--threads {settings.threads:g}" + (f" --ray-gpus-per-task {settings.gpus:g}" if settings.gpus else "")
    largest = ", ".join(f"{c:g} CPUs" + (f" and {g:g} GPUs" if settings.gpus else "") for c, g in sorted(set(have))[-3:])
    if local:
        raise ConfigError(
            f"{asked}: each task asks one node for {settings.threads:g} CPUs"
            + (f" and {settings.gpus:g} GPUs" if settings.gpus else "")
            + f", and this machine's Ray has {largest or 'none'} (ask for less)"
        )
    warnings.warn(
        f"{asked}: no node of the Ray cluster has that much now (nodes: {largest or 'none'}); the tasks wait "
        "until a node that has it joins"
    )


def render_range_with_ray(
    config: RenderConfig,
    writer: FocalStackWriter,
    stop: int,
    settings: RaySettings,
    progress: ProgressFn | None = None,
) -> dict:
    """Render scenes ``len(writer)``..``stop - 1`` on Ray into ``writer`` (dataset index = row). Returns the
    phase seconds summed over the scenes rendered."""
    ray = _import_ray()
    begin = len(writer)
    totals: dict[str, float] = {}
    if begin >= stop:
        return totals
    with ray_session(settings):
        task = ray.remote(max_calls=1)(render_scene_range).options(
            num_cpus=settings.threads,
            num_gpus=settings.gpus,
            max_retries=TASK_RETRIES,
            retry_exceptions=False,
        )
        n = settings.scenes_per_task
        ranges = [(a, min(a + n, stop)) for a in range(begin, stop, n)]
        limit = settings.tasks_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)) // settings.threads)
        config_dict = config.to_dict()
        from .sampling import asset_fingerprint, scene_params

        assets = asset_fingerprint(scene_params(config.scene))
        pending, arrived, cursor = [], {}, begin
        queue = list(reversed(ranges))
        while queue or pending:
            while queue and len(pending) < limit:
                a, b = queue.pop()
                pending.append(task.remote(config_dict, a, b, settings.threads, assets))
            ready, pending = ray.wait(pending, num_returns=1)
            start, results = _get(ray, ready[0])
            arrived[start] = results
            while cursor in arrived:  # write in index order only
                for record, phases in arrived.pop(cursor):
                    with held_signals():  # a scene's append is finished before Ctrl-C or SIGTERM stops the driver
                        writer.append(record)
                    add_phases(totals, phases)
                    if progress:
                        progress(1, phases)
                    cursor += 1
    return totals


def _get(ray, ref):
    """The task's result; a task that failed in Python (after Ray's retries for dead workers) re-raises
    its own exception, so the user sees the scene's error, not Ray's wrapper."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        raise cause from None
