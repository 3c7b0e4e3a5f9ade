"""EXR files between Cycles and us: the passes a render writes, and the files Cycles' standalone denoiser
reads and writes (the OpenEXR package, part by part: cv2 and imageio do not read multi-part files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_exr_passes(path: Path) -> dict[str, np.ndarray]:
    """Passes of a Blender multi-layer EXR, top row first: {'Combined': (H, W, 4), 'Depth': (H, W),
    'Denoising Normal': (H, W, 3), ...}."""
    import OpenEXR

    out: dict[str, np.ndarray] = {}
    split: dict[str, dict[str, np.ndarray]] = {}
    with OpenEXR.File(str(path)) as exr:
        for part in exr.parts:
            for name, channel in part.channels.items():
                # 'ViewLayer.Combined' (RGBA packed by OpenEXR), 'ViewLayer.Depth.Z' or the three channels
                # 'ViewLayer.Denoising Normal.X', '.Y', '.Z' of one pass.
                pieces = name.split(".")
                key = pieces[1] if len(pieces) > 1 else pieces[0]
                pixels = np.array(channel.pixels, dtype=np.float32)
                if len(pieces) > 2:
                    split.setdefault(key, {})[pieces[2]] = pixels
                else:
                    out[key] = pixels
    for key, channels in split.items():
        names = [c for c in "RGBAXYZW" if c in channels] or sorted(channels)
        out[key] = channels[names[0]] if len(names) == 1 else np.stack([channels[c] for c in names], axis=-1)
    return out


def write_denoiser_exr(path: Path, layer: str, rgb: np.ndarray, albedo: np.ndarray, normal: np.ndarray, samples: int) -> None:
    """One single-part EXR in the layout Cycles' standalone denoiser reads: <layer>.Combined.RGB,
    .Denoising Albedo.RGB, .Denoising Normal.XYZ, .Vector.XYZW (unused, zero) and the sample count."""
    import OpenEXR

    channels = {}
    for i, c in enumerate("RGB"):
        channels[f"{layer}.Combined.{c}"] = np.ascontiguousarray(rgb[..., i], dtype=np.float32)
        channels[f"{layer}.Denoising Albedo.{c}"] = np.ascontiguousarray(albedo[..., i], dtype=np.float32)
    for i, c in enumerate("XYZ"):
        channels[f"{layer}.Denoising Normal.{c}"] = np.ascontiguousarray(normal[..., i], dtype=np.float32)
    zero = np.zeros(rgb.shape[:2], dtype=np.float32)
    for c in "XYZW":
        channels[f"{layer}.Vector.{c}"] = zero
    header = {"compression": OpenEXR.NO_COMPRESSION, "type": OpenEXR.scanlineimage, f"cycles.{layer}.samples": str(int(samples))}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))


def read_denoised(path: Path, layer: str) -> np.ndarray:
    import OpenEXR

    with OpenEXR.File(str(path)) as exr:
        channels = exr.channels()
        if f"{layer}.Combined" in channels:
            return np.array(channels[f"{layer}.Combined"].pixels, dtype=np.float32)[..., :3]
        return np.stack([np.array(channels[f"{layer}.Combined.{c}"].pixels, dtype=np.float32) for c in "RGB"], axis=-1)
