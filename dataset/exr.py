"""OpenEXR files (FoD500's depth maps) through the ``OpenEXR`` package, imported only when needed.

OpenCV can read EXR only when the environment variable OPENCV_IO_ENABLE_OPENEXR is set before cv2 is
first imported, which a library cannot arrange; the ``OpenEXR`` package (a base dependency, 5 MB) reads
half and float channels by name, which is what FoD500 needs (depth in channel R).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from .schema import DatasetError


@contextlib.contextmanager
def _quiet_stderr():
    """OpenEXR's C library prints its own message to file descriptor 2 before raising; ours is the one
    line that counts, so the library's is swallowed."""
    try:
        fd = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


def _openexr():
    try:
        import OpenEXR
    except ImportError:
        raise DatasetError("reading and writing EXR files needs the OpenEXR package: pip install OpenEXR") from None
    return OpenEXR


def read_channels(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every channel of a scan-line or tiled EXR file, by name, as 2-D arrays (float16/float32 as stored).
    DatasetError naming the file if it is missing or not a readable EXR."""
    path = Path(path)
    openexr = _openexr()
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        with _quiet_stderr():
            exr = openexr.File(str(path), separate_channels=True)
            channels = {name: np.asarray(ch.pixels) for name, ch in exr.channels().items()}
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: not a readable EXR file ({' '.join(str(exc).split())})") from None
    return channels


def write_channels(path: str | os.PathLike, channels: dict[str, np.ndarray]) -> None:
    """Write 2-D float16 or float32 arrays as the named channels of a ZIP-compressed scan-line EXR."""
    openexr = _openexr()
    header = {"compression": openexr.ZIP_COMPRESSION, "type": openexr.scanlineimage}
    data = {name: np.ascontiguousarray(a) for name, a in channels.items()}
    try:
        with _quiet_stderr():
            openexr.File(header, data).write(str(path))
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: cannot write EXR file ({' '.join(str(exc).split())})") from None
