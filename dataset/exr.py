"""OpenEXR files (FoD500's depth maps) through the ``OpenEXR`` package, imported only when needed.

OpenCV can read EXR only when the environment variable OPENCV_IO_ENABLE_OPENEXR is set before cv2 is
first imported, which a library cannot arrange; the ``OpenEXR`` package (a base dependency, 5 MB) reads
half and float channels by name, which is what FoD500 needs (depth in channel R).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .schema import DatasetError

_QUIET = threading.Lock()  # the descriptors are the whole process's: one swap at a time


def _high_dup(fd: int) -> int:
    """A copy of ``fd`` numbered 3 or above: where 2 is closed, a plain dup of 1 would take 2's place and be
    overwritten by the swap."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return os.dup(fd)
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


@contextlib.contextmanager
def _quiet_library_output() -> Iterator[None]:
    """OpenEXR prints its own messages: its C library to file descriptor 2 before raising, its Python binding
    warnings such as 'Warning: Exception raised reading pixel data' to sys.stdout. Ours is the one line that
    counts, and a command's standard output is its result, so the library's are swallowed, at both levels."""
    with _QUIET:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()  # what Python wrote before belongs to the terminal
        _flush_c_stdio()  # and what C buffered before
        opened = os.open(os.devnull, os.O_WRONLY)
        null = _high_dup(opened)
        os.close(opened)  # it may have taken a closed 1 or 2: closed again
        saved: list[tuple[int, int | None]] = []  # (descriptor, its copy; None where it was closed)
        try:
            for fd in (1, 2):
                try:
                    saved.append((fd, _high_dup(fd)))
                except OSError:
                    saved.append((fd, None))
                os.dup2(null, fd)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                try:
                    yield
                finally:
                    _flush_c_stdio()  # the library's buffered lines go to /dev/null, not to the restored descriptors
        finally:
            for fd, copy in saved:
                if copy is None:
                    os.close(fd)
                else:
                    os.dup2(copy, fd)
                    os.close(copy)
            os.close(null)


def _flush_c_stdio() -> None:
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


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
        with _quiet_library_output():
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
        with _quiet_library_output():
            openexr.File(header, data).write(str(path))
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: cannot write EXR file ({' '.join(str(exc).split())})") from None
