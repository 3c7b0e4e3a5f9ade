"""Salvage: the intact scenes of a damaged file (cut short by a full disk or a power loss, or with damaged
chunks), copied into a new file.

A scene is kept only when every chunk that holds part of it lies wholly inside the bytes the file still has
and, where the file was written with checksums (Fletcher-32, every file since they were added: ``storage``),
verifies; its scene description must still be JSON. A file cut short is first copied and extended with
zeros to the length its superblock records, so that HDF5 opens it; nothing read from the zeros is trusted,
because each chunk's place in the file is checked against the length that survived (a zero-filled chunk
would even pass Fletcher-32, whose checksum of zeros is zero). The new file has the source's attributes and
layout; when the kept scenes are the first ones, in order, ``focalstack-render`` resumes it like any file.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .files import atomic_path
from .schema import DatasetError

SIGNATURE = b"\x89HDF\r\n\x1a\n"
UNDEFINED = 0xFFFFFFFFFFFFFFFF


@dataclass
class SalvageReport:
    source: Path
    out: Path
    complete: int  # complete scenes the source claimed
    kept: list[int] = field(default_factory=list)  # their indices among the complete scenes
    kept_rows: list[int] = field(default_factory=list)  # the source's rows they were
    dropped: list[tuple[int, str]] = field(default_factory=list)  # (index, why)
    missing_bytes: int = 0  # how much shorter the source is than its superblock says
    checksums: bool = False  # whether the source's chunks carry Fletcher-32 checksums

    @property
    def resumable(self) -> bool:
        """Whether the kept scenes are the source's first rows, in order: a render resumes only such a file
        (row k is the scene of seed start + k)."""
        return self.kept_rows == list(range(len(self.kept_rows)))


def recorded_length(path: Path) -> int | None:
    """The end-of-file address an HDF5 superblock records (absolute), or None when there is none to read."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    at = 0
    while at + 8 <= len(head) and head[at : at + 8] != SIGNATURE:
        at = 512 if at == 0 else at * 2  # the superblock sits at 0, 512, 1024, 2048, ...
    if at + 9 > len(head):
        return None
    version = head[at + 8]
    if version in (0, 1):
        size = head[at + 13]
        first = at + (24 if version == 0 else 28)  # base address, then free-space, then end of file
    elif version in (2, 3):
        size = head[at + 9]
        first = at + 12  # base address, superblock extension, then end of file
    else:
        return None
    fmt = {2: "<H", 4: "<I", 8: "<Q"}.get(size)
    if fmt is None or first + 3 * size > len(head):
        return None
    base = struct.unpack_from(fmt, head, first)[0]
    eof = struct.unpack_from(fmt, head, first + 2 * size)[0]
    if eof in (UNDEFINED, 0):
        return None
    return (at if base in (0, UNDEFINED) else base) + eof


def _chunk_coords(ds: h5py.Dataset, row: int):
    """Chunk coordinates (offsets) of every chunk that holds part of ``row`` of a chunked dataset."""
    shape, chunks = ds.shape, ds.chunks
    first = (row // chunks[0]) * chunks[0]
    axes = [range(0, n, c) for n, c in zip(shape[1:], chunks[1:])]
    for rest in itertools.product(*axes):
        yield (first, *rest)


def _row_is_intact(ds: h5py.Dataset, row: int, valid: int) -> str | None:
    """None if every chunk of ``row`` lies within the first ``valid`` bytes and reads (checksums verified);
    else why not."""
    name = ds.name.lstrip("/")
    try:  # the chunk index itself may lie in the lost part: then so does the row
        if ds.chunks is None:
            offset = ds.id.get_offset()
            if offset is not None and offset + ds.id.get_storage_size() > valid:
                return f"{name}: beyond the end of the file"
        else:
            for coord in _chunk_coords(ds, row):
                info = ds.id.get_chunk_info_by_coord(coord)
                if info.byte_offset is None or info.byte_offset + info.size > valid:
                    return f"{name}: chunk {coord} beyond the end of the file"
        value = ds[row]
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        return f"{name}: {' '.join(str(exc).split())[:100]}"
    if h5py.check_string_dtype(ds.dtype) is not None:
        try:
            json.loads(value.decode() if isinstance(value, bytes) else value)
        except (ValueError, TypeError, UnicodeDecodeError):
            return f"{name}: not JSON (its text is damaged)"
    return None


def salvage(source: str | os.PathLike, out: str | os.PathLike) -> SalvageReport:
    """Copy the intact complete scenes of ``source`` into ``out`` (written atomically; see the module)."""
    source, out = Path(source), Path(out)
    size = source.stat().st_size
    length = recorded_length(source)
    if length is None:
        raise DatasetError(f"{source}: no HDF5 superblock found; nothing to salvage")
    report = SalvageReport(source, out, 0, missing_bytes=max(0, length - size))
    with atomic_path(out) as scratch:
        if report.missing_bytes:  # HDF5 refuses a file shorter than it says: open a zero-extended copy
            shutil.copyfile(source, scratch)
            with open(scratch, "r+b") as fh:
                fh.truncate(length)
            opened = scratch.with_name(scratch.name + ".src")
            scratch.rename(opened)
            try:
                _refuse_a_header_hdf5_cannot_finish(opened, source)
            except BaseException:
                opened.unlink(missing_ok=True)
                raise
        else:
            opened = source
        try:
            _copy_intact(opened, size, scratch, report)
        # damaged metadata the per-scene checks do not reach (root attributes, the dataset headers, the global
        # heap of the strings): h5py raises any of these, naming neither the file nor what it was reading
        except (KeyError, OSError, RuntimeError, ValueError) as exc:
            raise DatasetError(
                f"{source}: HDF5 cannot read what salvage needs of it ({' '.join(str(exc).split())[:120]}); nothing salvaged"
            ) from None
        finally:
            if opened != source:
                opened.unlink(missing_ok=True)
        _refuse_useless(report, scratch)  # before the scratch file replaces anything at ``out``
    return report


# Reads every attribute and dataset header of a file, as _copy_intact will (a child process: HDF5's C code can
# loop for ever on metadata read from the zeros of an extended file, and Python cannot interrupt it).
_READ_HEADER = """
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    dict(f.attrs)
    for name, ds in f.items():
        dict(ds.attrs), ds.shape, ds.dtype, ds.chunks
"""
HEADER_SECONDS = 60  # a sound header of any size is read in well under a second


def _refuse_a_header_hdf5_cannot_finish(extended: Path, source: Path) -> None:
    """DatasetError when HDF5 does not finish reading the header of the zero-extended copy of a file cut
    short (cut inside its header, which the zeros replaced)."""
    import subprocess
    import sys

    try:
        subprocess.run([sys.executable, "-c", _READ_HEADER, str(extended)], capture_output=True, timeout=HEADER_SECONDS)
    except subprocess.TimeoutExpired:
        raise DatasetError(
            f"{source}: HDF5 does not finish reading its header within {HEADER_SECONDS} s (the file was cut inside "
            "its header): nothing salvaged"
        ) from None


@contextlib.contextmanager
def _writing(report: SalvageReport):
    """Errors writing the rescue (a full disk, say) name the output: the source is not to blame for them."""
    try:
        yield
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise DatasetError(f"{report.out}: cannot write the salvaged file ({' '.join(str(exc).split())[:120]})") from None


def _refuse_useless(report: SalvageReport, scratch: Path) -> None:
    """No file of no scenes, nor one whose header or datasets are not a focalstack file's, is handed out as a rescue."""
    from .validate import validate_file  # validate reads files through the reader: import when salvaging

    if not report.kept:
        why = (
            f"scene {report.dropped[0][0]}: {report.dropped[0][1]}"
            if report.dropped
            else "none is recorded complete where the file is intact"
        )
        raise DatasetError(f"{report.source}: no complete scene is intact ({why}); nothing salvaged")
    check = validate_file(scratch)
    if not check.readable:  # its structure; a scene's content (a bad camera, say) is validate's to report
        raise DatasetError(f"{report.source}: its intact scenes do not make a valid file ({check.problems[0]}); nothing salvaged")


def _copy_intact(path: Path, valid: int, scratch: Path, report: SalvageReport) -> None:
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(
            f"{report.source}: HDF5 cannot open it even extended to its recorded length "
            f"({' '.join(str(exc).split())[:120]}): its header is lost"
        ) from None
    with f:
        if f.attrs.get("format") != "focalstack" or "complete" not in f:
            raise DatasetError(f"{report.source}: not a focalstack file (or its header is lost)")
        names = [n for n, d in f.items() if isinstance(d, h5py.Dataset)]
        complete_ds = f["complete"]
        rows = []
        for row in range(complete_ds.shape[0]):
            why = _row_is_intact(complete_ds, row, valid)
            if why is None and bool(complete_ds[row]):
                rows.append(row)
            elif why is not None:
                break  # completeness itself is lost from here on: nothing after can be trusted as complete
        report.complete = len(rows)
        report.checksums = all(f[n].fletcher32 for n in names if h5py.check_string_dtype(f[n].dtype) is None)
        for index, row in enumerate(rows):
            why = next((w for w in (_row_is_intact(f[n], row, valid) for n in names) if w), None)
            if why is None:
                report.kept.append(index)
            else:
                report.dropped.append((index, why))
        keep = report.kept_rows = [rows[i] for i in report.kept]
        with _writing(report):
            g = h5py.File(scratch, "w")
        try:
            attrs = dict(f.attrs)
            with _writing(report):
                for key, value in attrs.items():
                    g.attrs[key] = value
            for name in names:
                ds = f[name]
                filters = {
                    k: v
                    for k, v in (
                        ("compression", ds.compression),
                        ("compression_opts", ds.compression_opts),
                        ("shuffle", ds.shuffle),
                        ("fletcher32", ds.fletcher32),
                        ("scaleoffset", ds.scaleoffset),
                    )
                    if v is not None and v is not False
                }
                ds_attrs = dict(ds.attrs)
                with _writing(report):
                    new = g.create_dataset(
                        name, shape=(len(keep), *ds.shape[1:]), maxshape=ds.maxshape, chunks=ds.chunks, dtype=ds.dtype, **filters
                    )
                    for key, value in ds_attrs.items():
                        new.attrs[key] = value
                for k, row in enumerate(keep):
                    value = ds[row] if name != "complete" else np.True_
                    with _writing(report):
                        new[k] = value
        finally:
            with _writing(report):
                g.close()
