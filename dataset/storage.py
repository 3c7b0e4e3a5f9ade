"""How each dataset is laid out on disk: chunk shape and h5py filters (``STORAGE``), and the fast way to
read one scene of a dataset whose colour channels are chunked apart (``read_row``).

Every chunk holds part of one scene only (axis 0 is chunked by 1 for per-pixel arrays): appending and
resuming touch only the new scene's chunks, and reading scene i touches only its own. Colour images
(``stack``, ``aif``) are chunked one colour channel per chunk ("planar"), because deflate and szip
find far more redundancy in a plane of one channel than in interleaved RGB; the arrays themselves keep
the schema's (..., H, W, 3) shape, so any HDF5 reader sees the same data. All filters are h5py's own
(gzip, szip, shuffle, lzf): no plugin is needed to read a file.

The figures behind the choice are printed by ``benchmarks/compression_bench.py`` (and quoted in the
docs/data.md): see ``STORAGE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h5py
import numpy as np

from . import schema


@dataclass(frozen=True)
class Storage:
    filters: dict = field(default_factory=dict)  # create_dataset keywords: compression, compression_opts, shuffle
    planar: bool = False  # one chunk per colour channel (arrays whose last axis is '3')


GZIP6_SHUFFLE = {"compression": "gzip", "compression_opts": 6, "shuffle": True}

# Schema v1's layout: every per-pixel array gzip 6 + shuffle, one chunk per scene (kept to compare).
V1_STORAGE = {spec.name: Storage(GZIP6_SHUFFLE) for spec in schema.WRITTEN_ARRAYS if spec.per_pixel}

# Every chunk of a new file carries a Fletcher-32 checksum (HDF5's own filter; h5py verifies it on every read):
# a damaged or zero-filled chunk is found, and ``salvage`` keeps only scenes whose chunks verify. Its cost is
# measured by benchmarks/compression_bench.py (docs/data.md, "Checksums and salvage").
CHECKSUM = {"fletcher32": True}

# Schema v2's layout, chosen by benchmarks/compression_bench.py on real renders (fod500 and walls, 256
# px, 5 slices; figures in docs/data.md): images planar under szip with nearest-neighbour prediction,
# 8 pixels per block (fod500 stack 549 kB per scene against 687 kB planar gzip 6 and 763 kB interleaved
# gzip 6 + shuffle; 16 or 32 pixels per block decode ~5% faster for 1-3% more bytes). Depth and edges
# stay gzip 6 + shuffle: szip is larger on float depth (155 kB against 130 kB) and on edges.
SZIP_NN8 = {"compression": "szip", "compression_opts": ("nn", 8)}
UNCHECKED_STORAGE = {  # the layout before checksums (kept to measure what they cost)
    **V1_STORAGE,
    "stack": Storage(SZIP_NN8, planar=True),
    "aif": Storage(SZIP_NN8, planar=True),
}
STORAGE = {name: Storage({**st.filters, **CHECKSUM}, st.planar) for name, st in UNCHECKED_STORAGE.items()}
SMALL_STORAGE = Storage(CHECKSUM)  # the small per-scene arrays of a new file: uncompressed, checksummed


def storage_for(name: str, table: dict | None = None) -> Storage:
    """The layout of dataset ``name``: per-pixel arrays by ``table`` (default ``STORAGE``); the small
    per-scene arrays are stored uncompressed (checksummed under the default table)."""
    if table is None:
        spec = schema.SPECS.get(name)
        if spec is not None and spec.dtype == "str":
            return Storage()  # HDF5 filters cannot apply to variable-length strings (they live in a heap)
        return STORAGE.get(name, SMALL_STORAGE)
    return table.get(name, Storage())


def chunk_shape(spec: schema.ArraySpec, shape: tuple[int, ...], storage: Storage, small_chunk: int) -> tuple[int, ...]:
    """Chunks of dataset ``spec`` with per-scene shape ``shape``: one scene (or one channel of one
    scene) for per-pixel arrays, ``small_chunk`` scenes for the small per-scene ones."""
    if not spec.per_pixel:
        return (small_chunk, *shape)
    if storage.planar and spec.trailing[-1:] == ("3",):
        return (1, *shape[:-1], 1)
    return (1, *shape)


def check_decodable(ds: h5py.Dataset) -> None:
    """DatasetError naming the dataset when this HDF5 build lacks a filter it was written with (szip is
    in h5py's wheels, conda-forge's and HDF Group's builds, but h5py warns that not every build has it)."""
    if ds.compression == "szip" and not h5py.h5z.filter_avail(h5py.h5z.FILTER_SZIP):
        raise schema.DatasetError(
            f"dataset {ds.name.lstrip('/')!r} is szip-compressed, which this HDF5 build cannot decode; "
            "install h5py's wheels from PyPI (they include libaec) or an HDF5 built with szip"
        )


def is_planar(ds: h5py.Dataset) -> bool:
    """True when each chunk of ``ds`` holds one channel of its last axis."""
    return ds.chunks is not None and ds.ndim >= 2 and ds.chunks[-1] == 1 and ds.shape[-1] > 1


def read_row(ds: h5py.Dataset, row: int) -> np.ndarray:
    """Scene ``row`` of ``ds``. For planar-chunked images each channel is read straight into a plane
    of its own and interleaved by numpy, which is several times faster than letting HDF5 scatter a
    chunk into every third byte."""
    if not is_planar(ds):
        return ds[row]
    shape = ds.shape[1:]
    out = np.empty(shape, dtype=ds.dtype)
    plane = np.empty((1, *shape[:-1], 1), dtype=ds.dtype)
    memory = h5py.h5s.create_simple(plane.shape)
    for c in range(shape[-1]):
        space = ds.id.get_space()
        space.select_hyperslab((row, *(0,) * (len(shape) - 1), c), plane.shape)
        ds.id.read(memory, space, plane)
        out[..., c] = plane[0, ..., 0]
    return out
