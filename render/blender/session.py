"""The Blender session of a process: whether bpy can run here, its devices, its log lines kept off stdout."""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

from ..config import DEVICES  # what --device accepts: configuration, not Blender's


class BlenderError(RuntimeError):
    """Blender could not build or render a scene; the message says which part."""


def check_blender() -> None:
    """BlenderError (one line) unless bpy can render in this interpreter: the bpy 5.0.1 wheel exists for
    Python 3.11 only and needs numpy < 2 (docs/design.md). Checked before any output file is created."""
    import importlib.util

    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if sys.version_info[:2] != (3, 11):
        raise BlenderError(
            f"rendering needs Blender's bpy 5.0.1, which exists for Python 3.11 only (this is Python {version}): "
            "run focalstack-render in a Python 3.11 environment with pip install 'focalstack[render]'"
        )
    if importlib.util.find_spec("bpy") is None:
        raise BlenderError("cannot import bpy: install the render extra, pip install 'focalstack[render]'")
    if int(np.__version__.split(".")[0]) >= 2:
        raise BlenderError(f"bpy 5.0 needs numpy < 2, this environment has numpy {np.__version__}: pip install 'numpy<2'")


@contextlib.contextmanager
def quiet_stdout():
    """Silence Blender's per-render log lines ('Saved: ...'), which it writes to file descriptor 1
    from C code, so they don't scramble progress bars. Errors still surface as exceptions."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI")


def enable_device(device: str) -> str:
    """Make Cycles render on ``device`` in this process; return what it renders on ('CPU' or e.g.
    'OPTIX: NVIDIA H200'). The bpy module starts from factory settings, so every process sets the Cycles
    preferences itself: backend, refreshed device list, which devices to use, and the scene's device.
    BlenderError naming what Cycles does see when the backend has no device."""
    import bpy

    if device not in DEVICES:
        raise BlenderError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")
    scene = bpy.context.scene
    if device == "cpu":
        scene.cycles.device = "CPU"
        return "CPU"
    prefs = bpy.context.preferences.addons["cycles"].preferences
    seen: dict[str, str] = {}
    for backend in GPU_BACKENDS if device == "gpu" else (device.upper(),):
        with quiet_stdout():
            prefs.compute_device_type = backend
            prefs.refresh_devices()
        found = [d for d in prefs.devices if d.type == backend]
        seen.update({f"{d.name} ({d.type})": "" for d in prefs.devices})
        if found:
            for d in prefs.devices:
                d.use = d.type == backend
            scene.cycles.device = "GPU"
            return f"{backend}: {', '.join(d.name for d in found)}"
    wanted = "GPU" if device == "gpu" else device.upper()
    raise BlenderError(f"--device {device}: Cycles sees no {wanted} device (it sees: {', '.join(seen) or 'nothing'})")
