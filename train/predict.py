"""Run a trained checkpoint on one focal stack of ordinary image files (real photos, or renders).

The images may come in any order (the networks do not depend on it) and have any size: they are
padded to the networks' multiple of 16, and images larger than ``tile`` are processed tile by tile, each
with enough of the image around it that the result is the whole image's (``run_tiled``), in memory that
does not grow with the image. Written to ``out``:

- ``depth.npy`` (float32 metres), ``depth.png`` (16-bit, millimetres), ``depth_color.png`` (turbo map)
- ``defocus.npy`` (float32 (S, H, W) pixels, in the order the images were given) and one colour map
  ``defocus_<i>_<name>.png`` per image
- ``aif.png`` and ``edges.png`` (models with an AiF branch)
- ``refocus_<dist>m.png`` per ``refocus`` distance: the predicted AiF image re-blurred, pixel by pixel,
  with the blur-circle diameter that the predicted depth gives at that focus distance, for the
  checkpoint's camera unless overridden (needs a model with an AiF branch)
- ``prediction.json``: inputs, focus distances, camera, checkpoint, units, the files written

Everything is written to a hidden scratch folder inside ``out`` first and moved in at the end, so a failure
leaves ``out`` as it was. A folder holding an earlier prediction is replaced only with ``overwrite`` (once the
new files are in, the old ones the new run did not write are removed), and never the folder of the input
images (a later run would read the outputs as slices). A folder without an earlier prediction loses no file.

With ``width`` the network sees the images resized to that width (blur in pixels shrinks with the image, so
this matches a stack's blur to what the weights learnt), and its outputs come back at the images' size:
depth and the AiF image interpolated, defocus interpolated and scaled back to the images' pixels.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from focalstack.dataset.numbers import is_finite_number
from focalstack.dataset.optics import beyond_focal_length, blur_diameter_px

from .checkpoint import load_checkpoint, model_from_checkpoint
from .device import autocast, resolve_amp, resolve_device
from .image_files import collect_images, listing, read_image

FLOAT32_MAX = float(np.finfo(np.float32).max)


def disk_kernel(diameter: float) -> np.ndarray:
    """Normalised anti-aliased disk (uniform blur circle) of ``diameter`` pixels; a delta below 1 px."""
    d = abs(float(diameter))
    if d < 1.0:
        return np.ones((1, 1), np.float32)
    r, sub = d / 2, 4
    n = 2 * int(math.ceil(r)) + 1
    c = (np.arange(n * sub) + 0.5) / sub - n / 2
    yy, xx = np.meshgrid(c, c, indexing="ij")
    k = (xx**2 + yy**2 <= r * r).astype(np.float32).reshape(n, sub, n, sub).mean(axis=(1, 3))
    return k / k.sum()


def refocus(image: np.ndarray, blur_px: np.ndarray, step: float = 0.5, max_blur: float | None = None) -> np.ndarray:
    """Blur each pixel of ``image`` (H, W, C) with a disk of its own diameter ``blur_px`` (H, W).

    The image is blurred at diameters 0, step, 2 step, ... and each pixel interpolates linearly between
    the two nearest; memory stays O(H W). Occlusion edges are not modelled (a gather, not a scatter).
    Diameters are capped at ``max_blur`` (default: a quarter of the larger image side).
    """
    cap = max(image.shape[:2]) / 4 if max_blur is None else max_blur
    c = np.clip(np.abs(np.nan_to_num(blur_px, nan=0.0, posinf=cap, neginf=cap)), 0.0, cap)
    out = np.zeros_like(image, dtype=np.float32)
    for level in np.arange(0.0, float(c.max()) + step, step):
        w = np.clip(1.0 - np.abs(c - level) / step, 0.0, None).astype(np.float32)
        if not w.any():
            continue
        blurred = cv2.filter2D(image.astype(np.float32), -1, disk_kernel(level), borderType=cv2.BORDER_REFLECT)
        out += w[..., None] * blurred.reshape(out.shape)
    return out


def _run(model, stack: torch.Tensor, focus: torch.Tensor, device, amp_dtype) -> dict[str, np.ndarray]:
    with torch.no_grad(), autocast(device, amp_dtype):
        out = model(stack.to(device), focus.to(device))
    return {k: v[0].float().cpu().numpy() for k, v in out.items()}


# Context around each tile: the networks' outputs change by less than 1e-6 (normalised depth) per unit
# change of an input pixel 96 px away (measured: DepthNet's four pooling levels see far), so a tile computed
# with this much of the image around it equals the whole image's result to float rounding (tested).
TILE_MARGIN = 96
TILE_ALIGN = 16  # the networks pool four times: tiles start on multiples of 16 so that pooling cells agree


def run_tiled(model, stack, focus, device, amp_dtype, tile: int, margin: int = TILE_MARGIN) -> dict[str, np.ndarray]:
    """Outputs of ``model`` over (1, S, 3, H, W), computed tile by tile: each ``tile`` x ``tile`` core (rounded
    up to a multiple of 16) is computed from a window with ``margin`` pixels of the image around it, and only
    the core is kept. Memory grows with (tile + 2 margin)^2, not with the image; time by the windows' overlap."""
    h, w = stack.shape[-2:]
    tile = -(-tile // TILE_ALIGN) * TILE_ALIGN
    margin = -(-margin // TILE_ALIGN) * TILE_ALIGN
    if tile <= 0 or h * w <= (tile + 2 * margin) ** 2:  # no larger than one window: at once, as fast
        return _run(model, stack, focus, device, amp_dtype)
    acc: dict[str, np.ndarray] = {}
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            y0, x0 = max(0, y - margin), max(0, x - margin)
            y1, x1 = min(h, y + tile + margin), min(w, x + tile + margin)
            part = _run(model, stack[..., y0:y1, x0:x1], focus, device, amp_dtype)
            th, tw = min(tile, h - y), min(tile, w - x)
            for name, arr in part.items():
                if name not in acc:
                    acc[name] = np.zeros(arr.shape[:-2] + (h, w), np.float32)
                acc[name][..., y : y + th, x : x + tw] = arr[..., y - y0 : y - y0 + th, x - x0 : x - x0 + tw]
    return acc


def resize_stack(stack: np.ndarray, width: int) -> np.ndarray:
    """(S, 3, H, W) images resized by area to ``width`` (the height keeping the aspect, at least 1 px)."""
    h, w = stack.shape[-2:]
    height = max(1, round(h * width / w))
    if (height, width) == (h, w):
        return stack
    try:
        frames = [cv2.resize(im.transpose(1, 2, 0), (width, height), interpolation=cv2.INTER_AREA) for im in stack]
        return np.stack(frames).transpose(0, 3, 1, 2).copy()
    except (cv2.error, MemoryError) as exc:
        if isinstance(exc, cv2.error) and "Insufficient memory" not in str(exc):  # OpenCV's own failed allocation
            raise
        raise ValueError(
            f"--width {width}: {len(stack)} images of {width} x {height} px do not fit in memory (the images are {w} px wide)"
        ) from None


def outputs_at_size(out: dict[str, np.ndarray], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Network outputs computed on resized images, brought to ``size`` (H, W): every map interpolated
    bilinearly, and defocus (a length in the network's pixels) multiplied by the ratio of the widths."""
    h, w = size
    resized = {}
    for name, arr in out.items():
        if arr.shape[-2:] == (h, w):
            resized[name] = arr
            continue
        flat = arr.reshape(-1, *arr.shape[-2:])
        up = np.stack([cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR) for a in flat]).reshape(*arr.shape[:-2], h, w)
        resized[name] = up * (w / arr.shape[-1]) if name == "defocus" else up
    return resized


def _colour(values: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """(H, W) values -> BGR uint8 turbo colour map between lo and hi (default: 1st/99th percentile)."""
    v = np.nan_to_num(values.astype(np.float32))
    lo = float(np.percentile(v, 1)) if lo is None else lo
    hi = float(np.percentile(v, 99)) if hi is None else hi
    u8 = np.clip((v - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(u8, cv2.COLORMAP_TURBO)


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise ValueError(f"{path}: could not write")


def _rgb8(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB float in [0, 1] -> BGR uint8 for cv2.imwrite."""
    return cv2.cvtColor(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)


def _check_arguments(focus_distances, refocus_distances, tile, camera, width=None) -> None:
    """ValueError naming the option of the first value that is not a finite number > 0."""
    for value in focus_distances or ():  # the network computes in float32: 1e39 m would be inf there
        if not (is_finite_number(value) and 0 < value <= FLOAT32_MAX):
            raise ValueError(f"--focus-distances {value!r}: expected finite distances > 0 in metres")
    for value in refocus_distances:
        if not (is_finite_number(value) and 0 < value <= FLOAT32_MAX):
            raise ValueError(f"--refocus {value!r}: expected a finite distance > 0 in metres")
    repeated = [v for i, v in enumerate(refocus_distances) if v in refocus_distances[:i]]
    if repeated:
        raise ValueError(f"--refocus {repeated[0]:g}: given twice")
    for name, value in (camera or {}).items():
        if value is not None and not (is_finite_number(value) and value > 0):
            raise ValueError(f"--{name.replace('_', '-')} {value!r}: expected a finite number > 0")
        if value is not None and not refocus_distances:  # else ignored, yet recorded as the camera used
            raise ValueError(
                f"--{name.replace('_', '-')}: the camera is --refocus's alone (the network reads only images and "
                "focus distances); add --refocus DIST or leave it out"
            )
    if not (isinstance(tile, int) and tile >= 0):
        raise ValueError(f"--tile {tile!r}: expected 0 or a number of pixels")
    if width is not None and not (isinstance(width, int) and width >= 8):
        raise ValueError(f"--width {width!r}: expected a number of pixels, at least 8")


def _check_beyond_the_lens(focus_distances, refocus_distances, focal_length_mm: float | None) -> None:
    """ValueError naming the option of a distance no lens of the camera's focal length focuses at (the
    checkpoint's own focus distances are not checked: --focal-length-mm is the refocusing camera's)."""
    if focal_length_mm is None:  # a camera without a model (DDFF-12's): nothing to compare with
        return
    for option, values in (("--focus-distances", focus_distances), ("--refocus", refocus_distances)):
        for value in values:
            if not beyond_focal_length(value, focal_length_mm):
                raise ValueError(
                    f"{option} {value:g}: within the camera's focal length ({focal_length_mm:g} mm); "
                    "expected a distance beyond it, in metres"
                )


def _read_stack(files: list[Path], focus_distances: list[float] | None, trained: dict) -> tuple[np.ndarray, list]:
    """The images as (S, 3, H, W) float32 and one focus distance per image (the checkpoint's by default)."""
    if focus_distances is None:
        known = trained.get("focus_distances") or []
        if len(known) != len(files):
            raise ValueError(
                f"{len(files)} images but no --focus-distances (the checkpoint's camera has {len(known)} focus "
                f"distances; images: {listing(files)})"
            )
        focus_distances = list(known)
    if len(focus_distances) != len(files):
        raise ValueError(
            f"{len(files)} images but {len(focus_distances)} focus distances: give one per image (images: {listing(files)})"
        )
    if len(set(focus_distances)) < 2:  # one blur level says nothing of depth: a network would still answer
        raise ValueError(
            f"focus distances {', '.join(f'{d:g}' for d in focus_distances)}: depth from defocus needs images at two "
            "or more focus distances"
        )
    _warn_beyond_training(focus_distances, trained.get("focus_distances") or [])
    imgs = [read_image(p) for p in files]
    if len({im.shape[:2] for im in imgs}) > 1:
        sizes = ", ".join(f"{p.name} is {im.shape[0]}x{im.shape[1]}" for p, im in zip(files, imgs))
        raise ValueError(f"images of different sizes in one stack ({sizes})")
    return np.stack(imgs).transpose(0, 3, 1, 2).copy(), list(focus_distances)


def _warn_beyond_training(focus_distances: list[float], trained: list[float], factor: float = 10.0) -> None:
    """Warn when the distances reach ``factor`` times beyond the checkpoint's own (millimetres typed as metres,
    say): what the network answers there is no measurement."""
    if not trained:
        return
    lo, hi = min(trained), max(trained)
    if max(focus_distances) > factor * hi or min(focus_distances) < lo / factor:
        warnings.warn(
            f"focus distances from {min(focus_distances):g} to {max(focus_distances):g} m, far beyond the "
            f"{lo:g} to {hi:g} m this checkpoint was trained at: its depth there is a guess (are they in metres?)"
        )


def predict(
    checkpoint: str | os.PathLike,
    images: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    focus_distances: list[float] | None = None,
    refocus_distances: list[float] = (),
    device: str = "auto",
    amp: str = "auto",
    tile: int = 192,
    camera: dict | None = None,
    width: int | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Predict depth, defocus (and AiF, edges) for one focal stack; returns the files written. With
    ``width``, the network runs on the images resized to that width; ``overwrite`` replaces an earlier
    prediction in ``out_dir`` (module docstring)."""
    _check_arguments(focus_distances, refocus_distances, tile, camera, width)
    ckpt = load_checkpoint(checkpoint)
    model, norm = model_from_checkpoint(ckpt, checkpoint)
    dev = resolve_device(device)
    amp_dtype = resolve_amp(amp, dev)
    model.to(dev).eval()
    files = collect_images(images)
    trained = dict(ckpt.get("camera", {}))
    cam = {k: trained.get(k) for k in ("f_number", "focal_length_mm", "sensor_width_mm")}
    cam.update({k: v for k, v in (camera or {}).items() if v is not None})
    has_aif = bool(getattr(model, "has_aif", False))
    if refocus_distances and not has_aif:  # before the network runs, which may take minutes
        raise ValueError(f"--refocus needs a model with an AiF branch; {checkpoint} is {ckpt['arch']!r}")
    missing = [k for k, v in cam.items() if v is None]
    if refocus_distances and missing:
        raise ValueError(f"--refocus needs the camera: the checkpoint lacks {', '.join(missing)}; pass it")
    od = Path(out_dir)
    _check_out_dir(od, files, overwrite, output_names(files, has_aif, refocus_distances))
    given = focus_distances is not None
    stack, focus_distances = _read_stack(files, focus_distances, trained)
    _check_beyond_the_lens(focus_distances if given else (), refocus_distances, cam["focal_length_mm"])
    h, w = stack.shape[-2:]
    focus = norm.focus(torch.tensor(focus_distances, dtype=torch.float32)[None])
    work = stack if width is None else resize_stack(stack, width)
    out = outputs_at_size(run_tiled(model, torch.from_numpy(work)[None], focus, dev, amp_dtype, tile), (h, w))
    bad = [k for k, v in out.items() if not np.isfinite(v).all()]
    if bad:  # written as they are, NaN depth reads as a 0 mm depth.png and exit 0
        raise FloatingPointError(f"the network's {bad[0]} holds non-finite values for this stack; nothing written")

    replacing = (od / "prediction.json").exists()  # _check_out_dir let it through: overwrite was given
    created = not od.exists()
    od.mkdir(parents=True, exist_ok=True)
    # Inside od: one file system whatever od links to, and no write needed in od's parent.
    scratch = Path(tempfile.mkdtemp(prefix=".prediction-", suffix=".tmp", dir=od))
    done = False
    try:
        written = _write_outputs(scratch, out, norm, files, refocus_distances, cam)
        meta = {
            "checkpoint": str(checkpoint),
            "arch": ckpt["arch"],
            "images": [str(p) for p in files],
            "focus_distances_m": list(map(float, focus_distances)),
            "size": [h, w],
            "network_size": list(work.shape[-2:]),
            "camera": cam,
            "refocus_m": list(map(float, refocus_distances)),
            "units": {"depth.npy": "metres", "depth.png": "millimetres (uint16)", "defocus.npy": "pixels"},
            "files": sorted([p.name for p in written.values()] + ["prediction.json"]),
        }
        (scratch / "prediction.json").write_text(json.dumps(meta, indent=2) + "\n")
        written["json"] = scratch / "prediction.json"
        _move_in(scratch, od, replacing)
        done = True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if created and not done and not any(od.iterdir()):
            od.rmdir()
    return {key: od / path.name for key, path in written.items()}


def output_names(files: list[Path], has_aif: bool, refocus_distances) -> list[str]:
    """The names of the files a prediction writes (``_write_outputs``), known before it runs."""
    names = ["prediction.json", "depth.npy", "depth.png", "depth_color.png", "defocus.npy"]
    names += [_defocus_png_name(i, p) for i, p in enumerate(files)]
    if has_aif:
        names += ["aif.png", "edges.png", *(_refocus_name(d) for d in refocus_distances)]
    return names


def _defocus_png_name(index: int, image: Path) -> str:
    return f"defocus_{index:02d}_{image.stem}.png"


def _refocus_name(distance: float) -> str:
    """'refocus_0.5m.png'; with every digit where ``:g`` would round (0.5000001 is not 0.5)."""
    text = f"{distance:g}" if float(f"{distance:g}") == distance else repr(float(distance))
    return f"refocus_{text}m.png"


def _check_out_dir(od: Path, images: list[Path], overwrite: bool, names: list[str]) -> None:
    """ValueError for an output folder that is a file, holds the input images, an earlier prediction, or (unless
    ``overwrite``) a file of one of the ``names`` the prediction writes: a file of the user's, not ours."""
    if od.exists() and not od.is_dir():
        raise ValueError(f"-o {od}: is a file; expected a folder")
    if any(p.absolute().parent.resolve() == od.resolve() for p in images):  # the image's folder, not its link target's
        raise ValueError(f"-o {od}: holds the input images (a later run would read the outputs as slices); choose another folder")
    if (od / "prediction.json").exists() and not overwrite:
        raise ValueError(f"-o {od}: holds an earlier prediction (prediction.json); pass --force to replace it")
    taken = [n for n in names if (od / n).is_file()]
    if taken and not overwrite:
        raise ValueError(f"-o {od}: holds {taken[0]}, a file the prediction writes; pass --force to replace it")


# What an earlier prediction may have written (prediction.json lists its files since it says so).
_OUTPUT_PATTERNS = ("prediction.json", "depth.npy", "depth.png", "depth_color.png", "defocus.npy", "defocus_*.png")
_OUTPUT_PATTERNS += ("aif.png", "edges.png", "refocus_*m.png")


def _move_in(scratch: Path, od: Path, replacing: bool) -> None:
    """Move the files in ``scratch`` into ``od``; when ``replacing`` an earlier prediction, then remove its files
    that the new one did not write (no file is removed from a folder without a prediction in it)."""
    new = sorted(p.name for p in scratch.iterdir())
    blocked = [n for n in new if (od / n).is_dir()]
    if blocked:
        raise ValueError(f"-o {od}: {blocked[0]} is a folder; the prediction writes a file of that name")
    old: list = []
    if replacing:
        try:
            listed = json.loads((od / "prediction.json").read_text()).get("files")
        except (OSError, ValueError, AttributeError):
            listed = None
        old = listed if isinstance(listed, list) else [p.name for pattern in _OUTPUT_PATTERNS for p in od.glob(pattern)]
    (od / "prediction.json").unlink(missing_ok=True)  # moved in last: it says the folder holds a whole prediction
    for name in new:
        if name != "prediction.json":
            os.replace(scratch / name, od / name)
    for name in {str(n) for n in old} - set(new):
        if Path(name).name == name and (od / name).is_file():  # a bare file name inside od, nothing else
            (od / name).unlink()
    os.replace(scratch / "prediction.json", od / "prediction.json")


def _write_outputs(od: Path, out: dict, norm, files: list[Path], refocus_distances, cam: dict) -> dict[str, Path]:
    pred = norm.physical(out)
    depth = np.clip(pred["depth_m"], 0.0, None).astype(np.float32)  # early networks go below 0
    defocus = pred["defocus_px"].astype(np.float32)
    if not norm.signed_defocus:  # a blur-circle size, as depth a distance: below 0 is the network's error
        defocus = np.clip(defocus, 0.0, None)
    written = _write_depth_and_defocus(od, depth, defocus, files, norm.signed_defocus)
    if "aif" in out:
        written.update(_write_aif(od, out, depth, refocus_distances, cam))
    return written


def _write_depth_and_defocus(
    od: Path, depth: np.ndarray, defocus: np.ndarray, files: list[Path], signed: bool
) -> dict[str, Path]:
    np.save(od / "depth.npy", depth)
    _write_png(od / "depth.png", np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16))
    _write_png(od / "depth_color.png", _colour(depth))
    np.save(od / "defocus.npy", defocus)
    written = {
        "depth_npy": od / "depth.npy",
        "depth_png": od / "depth.png",
        "depth_color": od / "depth_color.png",
        "defocus_npy": od / "defocus.npy",
    }
    hi = float(np.percentile(np.abs(defocus), 99)) or 1.0
    for i, (p, d) in enumerate(zip(files, defocus)):
        name = _defocus_png_name(i, p)
        _write_png(od / name, _colour(d, -hi if signed else 0.0, hi))
        written[name] = od / name
    return written


def _write_aif(od: Path, out: dict, depth: np.ndarray, refocus_distances, cam: dict) -> dict[str, Path]:
    """aif.png, edges.png and one refocused image per distance (the AiF image blurred by predicted depth)."""
    aif = out["aif"].transpose(1, 2, 0)
    _write_png(od / "aif.png", _rgb8(aif))
    edges = 1.0 / (1.0 + np.exp(-out["edges"]))
    _write_png(od / "edges.png", np.round(edges * 255).astype(np.uint8))
    written = {"aif": od / "aif.png", "edges": od / "edges.png"}
    near = max(0.01, 1.05 * cam["focal_length_mm"] * 1e-3) if refocus_distances else 0.0  # not within the lens
    for dist in refocus_distances:
        blur = blur_diameter_px(
            np.maximum(depth, near), float(dist), cam["f_number"], cam["focal_length_mm"], cam["sensor_width_mm"], depth.shape[1]
        )
        name = _refocus_name(dist)
        _write_png(od / name, _rgb8(refocus(np.clip(aif, 0, 1), blur)))
        written[name] = od / name
    return written
