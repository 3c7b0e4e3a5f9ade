"""The image files of one real focal stack: which files a folder holds, in what order, and their pixels as
viewers show them.

OpenCV reads the pixels (8 and 16 bits, float); Pillow (which matplotlib already brings) reads what OpenCV does
not act on alike for every format: the EXIF orientation (OpenCV applies it to JPEG and PNG, ignores it in WebP,
and fails on a TIFF turned by 90 degrees), the number of pages or frames, and whether a JPEG ends before its
last byte (libjpeg fills the rest with grey and only prints a warning).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
JPEG_EXTENSIONS = (".jpg", ".jpeg")
TIFF_EXTENSIONS = (".tif", ".tiff")
FLOAT_SLACK = 1e-3  # a float image's rounding beyond [0, 1] that is still clipped, not refused
LOW_16BIT = 4096  # a 16-bit image whose brightest value is below this holds 12-bit data, or is very dark
_ORIENTATION_TAG = 0x0112
_PILLOW_LIMIT = threading.Lock()


def natural_key(path: Path) -> tuple:
    """Sort key that orders 'img2' before 'img10' (digits compared as numbers), as file browsers and camera
    software number a stack; the name itself breaks ties ('img02' and 'img2')."""
    parts = re.split(r"(\d+)", path.name)
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), path.name


def collect_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Image files from files and folders. A folder contributes its image files in natural order ('img2' before
    'img10'), leaving out hidden files ('.name': thumbnails, macOS '._' copies). A file given twice is refused."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS]
            found = [q for q in found if not q.name.startswith(".")]
            if not found:
                raise ValueError(f"{p}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            natural = sorted(found, key=natural_key)
            if natural != sorted(found, key=lambda q: (q.name.casefold(), q.name)):  # numbers ordered otherwise than 0.3.0 did
                warnings.warn(
                    f"{p}: its files are taken in natural order ({listing(natural, 4)}; img2 before img10), not plain "
                    "name order: check that the focus distances follow it (prediction.json records the pairs)"
                )
            out.extend(natural)
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(f"{p}: no such file or folder")
    if not out:
        raise ValueError("no images given")
    seen: dict[Path, Path] = {}
    for p in out:
        first = seen.setdefault(p.resolve(), p)
        if first is not p:
            raise ValueError(f"{p}: given twice (as {first}); one image per focus distance")
    return out


def listing(files: list[Path], most: int = 12) -> str:
    """'a.png, b.png, ...' for messages: the first ``most`` names and how many more."""
    names = [p.name for p in files[:most]]
    return ", ".join(names) + (f" and {len(files) - most} more" if len(files) > most else "")


def read_image(path: Path) -> np.ndarray:
    """An image file as float32 RGB (H, W, 3) in [0, 1]: 8- or 16-bit, or float in [0, 1]; grey, RGB or
    RGBA (alpha dropped); turned upright as its EXIF orientation says, as viewers show it. ValueError for
    a float image with values outside [0, 1] (HDR or another scale, which clipping would whiten), a file of
    several pages or frames, and a JPEG that ends early. Warns of a 16-bit image that uses a sixteenth of
    its range (12-bit data stored in 16 bits reads as nearly black)."""
    orientation, frames = _metadata(path)
    if frames > 1:
        raise ValueError(f"{path}: holds {frames} pages or frames; give one image per focus distance (one file each)")
    if path.suffix.lower() in JPEG_EXTENSIONS:
        _refuse_truncated_jpeg(path)
    img, turned = None, False
    if orientation != 1 and path.suffix.lower() in TIFF_EXTENSIONS:
        # Both readers turn a TIFF's pixels themselves, whatever the flags say; OpenCV fails or leaves them as
        # stored for orientations 5 to 8: Pillow's pixels where they are exact, else OpenCV's for 2 to 4 only
        img = _exact_tiff_pixels(path, orientation)
        if img is None and orientation > 4:
            raise ValueError(
                f"{path}: a TIFF stored turned by 90 degrees (EXIF orientation {orientation}) in a form (16-bit "
                "colour, grey, or with alpha) that neither OpenCV nor Pillow turns upright; save it upright"
            )
        turned = True
    if img is None:
        # Not IMREAD_UNCHANGED first: it reads 16-bit and float data alike, but not every TIFF; orientation is ours.
        with _quiet_opencv():
            img = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR | cv2.IMREAD_IGNORE_ORIENTATION)
            if img is None:  # OpenCV reads a float RGBA TIFF only as it is
                img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{path}: not a readable image")
    if img.dtype == np.uint16 and int(img.max()) < LOW_16BIT:
        warnings.warn(
            f"{path}: a 16-bit image whose brightest value is {int(img.max())} of 65535: 12-bit data stored in 16 "
            "bits reads as nearly black; scale it to the full range"
        )
    if img.dtype in (np.uint8, np.uint16):
        img = img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)
    else:
        img = img.astype(np.float32)
        lo, hi = float(np.min(img)), float(np.max(img))
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= -FLOAT_SLACK and hi <= 1 + FLOAT_SLACK):
            raise ValueError(
                f"{path}: float image with values from {lo:g} to {hi:g}, expected 0 to 1: convert it to 8 or "
                "16 bits, or scale it to [0, 1]"
            )
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(upright(np.clip(img, 0, 1), 1 if turned else orientation))


def upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """``img`` (H, W, ...) as stored, turned as EXIF orientation ``orientation`` (1 to 8) says to show it."""
    turns = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],  # mirrored left to right
        3: lambda a: a[::-1, ::-1],  # upside down
        4: lambda a: a[::-1],  # mirrored top to bottom
        5: lambda a: a.swapaxes(0, 1),  # transposed
        6: lambda a: np.rot90(a, -1),  # stored turned a quarter anticlockwise: turn it clockwise
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],  # transposed across the other diagonal
        8: lambda a: np.rot90(a, 1),
    }
    return turns.get(orientation, turns[1])(img)


def _metadata(path: Path) -> tuple[int, int]:
    """(EXIF orientation, pages or frames) as Pillow reads them from the header; (1, 1) for a file Pillow does
    not know (OpenCV may still read it, and says so if not)."""
    try:
        with _opened(path) as im:
            orientation = im.getexif().get(_ORIENTATION_TAG, 1)
            # a JPEG's further images (MPF: a camera's preview, a phone's HDR gain map) are not slices
            frames = 1 if im.format == "MPO" else getattr(im, "n_frames", 1)
    except (OSError, ValueError, SyntaxError):
        return 1, 1
    return (orientation if orientation in range(1, 9) else 1), int(frames)


def _exact_tiff_pixels(path: Path, orientation: int) -> np.ndarray | None:
    """A TIFF's pixels, upright (Pillow's TIFF reader turns them as the file says), in OpenCV's channel order
    (BGR), where Pillow reads them exactly: 8-bit grey or colour, 16-bit or float grey, and of those only 8-bit
    colour and float grey where ``orientation`` turns them by 90 degrees (5 to 8). None otherwise (Pillow reads
    16-bit colour as 8 bits)."""
    try:
        with _opened(path) as im:
            bits = im.tag_v2.get(258, 8) if hasattr(im, "tag_v2") else 8  # BitsPerSample
            bits = set(bits) if isinstance(bits, tuple) else {bits}
            if im.mode not in ("L", "LA", "RGB", "RGBA", "I;16", "F") or (im.mode in ("L", "LA", "RGB", "RGBA") and bits != {8}):
                return None
            if orientation > 4 and im.mode not in ("RGB", "F"):  # Pillow scrambles the others turned by 90 degrees
                return None
            pixels = np.asarray(im)
    except (OSError, ValueError, SyntaxError):
        return None
    if pixels.dtype not in (np.uint8, np.uint16, np.float32):
        return None
    if pixels.ndim == 3 and pixels.shape[2] == 2:  # grey and alpha
        pixels = pixels[..., 0]
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        pixels = pixels[..., [2, 1, 0, 3][: pixels.shape[2]]]
    return pixels


def _refuse_truncated_jpeg(path: Path) -> None:
    """ValueError for a JPEG whose data ends early (a copy cut short): libjpeg would fill the rest with grey."""
    # A file missing only its 2-byte end marker is refused too: with the marker added, libjpeg decodes a file
    # cut anywhere without a word, so the two cannot be told apart here.
    try:
        with _opened(path) as im:
            im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))  # decodes every block, at 1/8 size
            im.load()
    except OSError as exc:
        if "truncated" in str(exc):
            raise ValueError(
                f"{path}: the JPEG data ends early (a damaged or partly copied file, or one without its end marker)"
            ) from None
    except (ValueError, SyntaxError):
        pass  # left for OpenCV, which reads what it can read and names what it cannot


@contextlib.contextmanager
def _opened(source):
    """Pillow's image of ``source`` (a path or a file object), without Pillow's size limit: a 200-megapixel
    photo is no attack here, and over the limit Pillow would refuse to say its orientation."""
    with _PILLOW_LIMIT:  # Pillow's limit is one global: threads reading at once would restore each other's
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(source) as im:
                    yield im
        finally:
            Image.MAX_IMAGE_PIXELS = limit


@contextlib.contextmanager
def _quiet_opencv():
    """OpenCV logs a multi-line dump on stderr for a file it cannot decode; the caller's error says it in one."""
    if not (hasattr(cv2, "getLogLevel") and hasattr(cv2, "setLogLevel")):  # not in every build
        yield
        return
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)  # LOG_LEVEL_SILENT
    try:
        yield
    finally:
        cv2.setLogLevel(level)
