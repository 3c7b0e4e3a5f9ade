"""Miniature FoD500 folders and DDFF-12 files in their documented layouts, written here from scratch
(TIFF with cv2, half-float EXR with the OpenEXR package, HDF5 keys and shapes with h5py), and a FoD500
loader that knows nothing but FoD500's documented naming. Plain module: ``import interop_fixtures``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import OpenEXR

FOD_SIZE = 256


def write_tif(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])), path


def write_exr(path: Path, channels: dict[str, np.ndarray]) -> None:
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {k: np.ascontiguousarray(v) for k, v in channels.items()}).write(str(path))


def fod500_scene(rng: np.random.Generator, size: int = FOD_SIZE, holes: int = 0) -> dict:
    """Random slices, an AiF image and a half-float depth map in (0.1, 3) m with ``holes`` zero pixels."""
    depth = rng.uniform(0.1, 3.0, (size, size)).astype(np.float16)
    if holes:
        depth.reshape(-1)[rng.choice(size * size, holes, replace=False)] = 0
    return {
        "stack": rng.integers(0, 256, (5, size, size, 3), dtype=np.uint8),
        "aif": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "depth": depth,
    }


def write_fod500_folder(folder: Path, indices, *, seed: int = 0, aif: bool = False, holes: int = 0) -> dict:
    """Scenes ``indices`` as FoD500 files in ``folder`` (created); returns index -> the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for i in indices:
        sc = fod500_scene(rng, holes=holes)
        for j, img in enumerate(sc["stack"]):
            write_tif(folder / f"{i:06d}_{j:02d}All.tif", img)
        d = sc["depth"]
        write_exr(folder / f"{i:06d}Dpt.exr", {"R": d, "G": d, "B": d})
        if aif:
            write_tif(folder / f"{i:06d}Aif.tif", sc["aif"])
        written[i] = sc
    (folder / "readme.txt").write_text("not a scene file\n")  # ignored: no FoD500 ending
    return written


def load_fod500_folder(folder: Path) -> dict:
    """A loader written from FoD500's documented naming alone: match the endings All.tif and Dpt.exr,
    the scene index is the first six characters, slices sort by name; depth is channel R of the EXR."""
    scenes: dict[str, dict] = {}
    for p in sorted(folder.iterdir()):
        if p.name.endswith("All.tif"):
            scenes.setdefault(p.name[:6], {"slices": []})["slices"].append(p)
        elif p.name.endswith("Dpt.exr"):
            scenes.setdefault(p.name[:6], {"slices": []})["depth"] = p
    out = {}
    for key, files in sorted(scenes.items()):
        stack = np.stack([cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1] for p in sorted(files["slices"])])
        depth = OpenEXR.File(str(files["depth"]), separate_channels=True).channels()["R"].pixels
        out[int(key)] = {"stack": stack, "depth": np.asarray(depth, np.float32)}
    return out


def write_ddff12_file(
    path: Path, n_train: int = 3, n_val: int = 2, *, size=(24, 36), seed: int = 0, zeros: int = 10, disp_dtype=np.float32
) -> dict:
    """A DDFF-12 trainval file: stack_<split> (N, 10, H, W, 3) uint8 and disp_<split> (N, H, W) float
    in DDFF's range (0.02 to 0.283 px), ``zeros`` pixels per stack without ground truth (0)."""
    rng = np.random.default_rng(seed)
    h, w = size
    written = {}
    with h5py.File(path, "w") as f:
        for split, n in (("train", n_train), ("val", n_val)):
            stack = rng.integers(0, 256, (n, 10, h, w, 3), dtype=np.uint8)
            disp = rng.uniform(0.020, 0.283, (n, h, w)).astype(disp_dtype)
            for k in range(n):
                disp[k].reshape(-1)[rng.choice(h * w, zeros, replace=False)] = 0
            f.create_dataset(f"stack_{split}", data=stack, chunks=(1, 10, h, w, 3))
            f.create_dataset(f"disp_{split}", data=disp, chunks=(1, h, w))
            written[split] = {"stack": stack, "disp": disp}
    return written
