"""Small schema-valid focal-stack files for the trainer's tests, made without Blender.

A synthetic scene is a textured background plane with two or three textured fronto-parallel rectangles
in front of it, each at its own depth. Every slice is the all-in-focus layers blurred with a disk of the
blur-circle diameter that ``focalstack.dataset.optics`` gives for the layer's depth and the slice's
focus distance, composited far to near. So defocus really does encode depth, and a network can learn it.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from focalstack.dataset import FocalStackWriter, SceneRecord, canny_edges, defocus_maps
from focalstack.train.predict import disk_kernel  # the uniform blur circle, as refocus uses it

FOCUS = (0.1, 0.15, 0.3, 0.7, 1.5)
# f_px = 2.9 / 0.5 * 32 = 186 px at 32 px width: blur diameters up to ~5 px in these tiny images.
CAMERA = {"f_number": 1.0, "focal_length_mm": 2.9, "sensor_width_mm": 0.5}


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    fine = rng.random((size, size, 3))
    coarse = cv2.resize(rng.random((4, 4, 3)), (size, size), interpolation=cv2.INTER_CUBIC)
    base = rng.random(3)
    return np.clip(0.45 * fine + 0.35 * coarse + 0.2 * base, 0, 1).astype(np.float32)


def synthetic_scene(rng: np.random.Generator, size: int, focus=FOCUS, camera=CAMERA, depth_range=(0.12, 2.9)) -> SceneRecord:
    n_rect = int(rng.integers(2, 4))
    # uniform in inverse depth (as defocus is); background first (farthest)
    near, far = depth_range
    depths = np.sort(1.0 / rng.uniform(1 / far, 1 / near, size=n_rect + 1))[::-1]
    layers = []  # (mask, texture, depth), far to near
    for i, z in enumerate(depths):
        mask = np.zeros((size, size), bool)
        if i == 0:
            mask[:] = True
        else:
            h, w = rng.integers(size // 4, size * 3 // 4, size=2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            mask[y : y + h, x : x + w] = True
        layers.append((mask, _texture(rng, size), float(z)))
    depth = np.zeros((size, size), np.float32)
    aif = np.zeros((size, size, 3), np.float32)
    for mask, tex, z in layers:
        depth[mask] = z
        aif[mask] = tex[mask]
    defocus = defocus_maps(depth, focus, camera["f_number"], camera["focal_length_mm"], camera["sensor_width_mm"])
    stack = []
    for s in focus:
        img = np.zeros((size, size, 3), np.float32)
        for mask, tex, z in layers:
            c = defocus_maps(
                np.full((1, 1), z, np.float32), [s], camera["f_number"], camera["focal_length_mm"], camera["sensor_width_mm"]
            )
            # the blur diameter is in pixels of an image as wide as `size`
            c = float(c[0, 0, 0]) * size
            blurred = cv2.filter2D(tex, -1, disk_kernel(c), borderType=cv2.BORDER_REFLECT)
            img[mask] = blurred[mask]
        stack.append(img)
    to8 = lambda a: np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    aif8 = to8(aif)
    return SceneRecord(
        stack=to8(np.stack(stack)),
        aif=aif8,
        depth=depth,
        defocus=defocus,
        edges=canny_edges(aif8),
        focus_distance=np.asarray(focus, np.float32),
        f_number=camera["f_number"],
        focal_length_mm=camera["focal_length_mm"],
        sensor_width_mm=camera["sensor_width_mm"],
        seed=0,
        scene=json.dumps({"synthetic": "planes", "depths": [float(z) for z in depths]}),
    )


def write_synthetic(
    path, n_scenes: int = 6, size: int = 32, focus=FOCUS, seed: int = 0, camera=CAMERA, depth_range=(0.12, 2.9)
) -> Path:
    """Write ``n_scenes`` synthetic scenes of ``size`` x ``size`` pixels to a new schema-v1 file."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    attrs = {
        "generator_version": "tests",
        "blender_version": "none",
        "created_utc": "2000-01-01T00:00:00Z",
        "preset": "synthetic-planes",
        "config": {
            "synthetic": True,
            "size": size,
            "focus": list(focus),
            "generator_seed": seed,  # not a render's "seed": these files stand in for an experiment's renders
            "depth_range": list(depth_range),
            **camera,
        },
        "defocus_model": "cycles",
    }
    with FocalStackWriter.create_or_resume(path, n_slices=len(focus), height=size, width=size, attrs=attrs) as w:
        for i in range(n_scenes):
            rec = synthetic_scene(rng, size, focus, camera, depth_range)
            rec.seed = seed * 100000 + i
            w.append(rec)
    return path


# -- pytest helpers shared by tests/test_train_*.py (import them into a test module to use them) ----

import functools  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402

TINY = {"width": 4, "aif_width": 4, "aif_blocks": 1}  # the real architecture, narrow, for fast tests


@pytest.fixture(autouse=True)
def single_torch_thread():
    """One torch thread: on 2 shared cores, OpenMP threads that spin while other processes run make
    small convolutions 10-50x slower; one thread is both faster and steadier here."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.lru_cache(maxsize=None)
def shared_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="focalstack-train-tests-"))


@functools.lru_cache(maxsize=None)
def synthetic_file(
    name: str, n_scenes: int = 6, size: int = 32, seed: int = 0, n_slices: int = 5, depth_range=(0.12, 2.9)
) -> Path:
    """A synthetic file cached for the test session (do not modify it)."""
    focus = FOCUS if n_slices == 5 else tuple(np.geomspace(0.1, 1.5, n_slices))
    return write_synthetic(shared_dir() / f"{name}.h5", n_scenes, size, focus=focus, seed=seed, depth_range=depth_range)


@functools.lru_cache(maxsize=None)
def tiny_run(arch: str = "fod") -> Path:
    """A run folder with a checkpoint trained one short epoch on a synthetic file."""
    import torch

    from focalstack.train.config import TrainConfig
    from focalstack.train.trainer import fit

    kwargs = dict(TINY) if arch != "fod-depth" else {"width": TINY["width"]}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = fit(
            TrainConfig(
                data=[str(synthetic_file("tiny-train", 6, 32, 11))],
                out=str(shared_dir() / f"run-{arch}"),
                arch=arch,
                arch_kwargs=kwargs,
                epochs=1,
                batch_size=2,
                lr=1e-3,
                progress=False,
                tensorboard=False,
            )
        )
    finally:
        torch.set_num_threads(threads)
    return result.out


def experiment_with_synthetic_data(folder: Path, text: str, scale: str = "tiny"):
    """The experiment file ``text`` (written to ``folder``/exp.toml) loaded at ``scale``, and ``folder``/data
    holding a synthetic 32 px file for each of its datasets (a seed each): (experiment, data folder)."""
    from focalstack.train.experiments import load_experiment

    path = Path(folder) / "exp.toml"
    path.write_text(text)
    exp = load_experiment(str(path), scale)
    data = Path(folder) / "data"
    data.mkdir()
    for i, ds in enumerate(exp.datasets.values()):
        write_synthetic(data / ds.file_name(), ds.scenes, 32, seed=i)
    return exp, data


def tiny_fit_config(tmp_path: Path, name: str = "run", **kw):
    """A TrainConfig of the narrow network on the shared synthetic training file, two short epochs; ``kw``
    overrides any field."""
    from focalstack.train.config import TrainConfig

    base = dict(
        data=[str(synthetic_file("fit-train", 6, 32, 21))],
        out=str(tmp_path / name),
        arch="fod",
        arch_kwargs=dict(TINY),
        epochs=2,
        batch_size=2,
        lr=1e-3,
        progress=False,
        tensorboard=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module, freshly executed (tests patch its attributes)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
