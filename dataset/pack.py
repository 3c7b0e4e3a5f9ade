"""Transport packs: a focalstack file made small for carrying to a machine that trains but cannot render,
and made back into the same file there.

A pack is an HDF5 file (``NAME.pack.h5``) that h5py alone reads. It holds every dataset of the source
file, for its complete scenes, with the source's layout (dtype, chunks, filters) and attributes written
beside it, so that ``unpack_file`` writes a file with the same datasets, attributes and layout:

- colour images (``uint8`` arrays ending in H x W x 3: the slices and the all-in-focus image): one WebP
  lossless image each (OpenCV), about 22 % smaller than the source's szip planes and bit-exact, with the
  CRC-32 of each image's pixels in ``checksums/NAME`` (a damaged WebP can decode to other pixels without a
  word, and variable-length data has no HDF5 checksum; every other dataset has HDF5's fletcher32);
- floating-point per-pixel arrays named in ``float16`` (by default none): half floats, as FoD500 itself
  stores depth; the error this costs is measured while packing (``PackStats.float16_error``) and a value
  that a half float cannot hold is refused;
- strings (the scene descriptions): one LZMA-compressed JSON list (HDF5 does not compress
  variable-length strings, and these are a large part of a small file). With ``brief_descriptions`` the
  descriptions lose their object and light lists (``BRIEF_OMITS``; at 64 px a fifth of a fod500 pack, and
  nothing a trainer reads) and say so in ``omitted_for_transport``: the one change a pack may make to a file,
  for a machine that trains and does not render;
- everything else: as it is, gzip 9 with shuffle.

Nothing about which datasets exist is written here: the pack copies what the file holds, so datasets a
later schema adds travel too.
"""

from __future__ import annotations

import json
import lzma
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np

from . import provenance, schema
from .files import atomic_path
from .groundtruth import stored_defocus_maps
from .optics import DEFOCUS_MODELS
from .reader import declaration_of
from .schema import DatasetError
from .validate import validate_file

PACK_FORMAT = "focalstack-pack"
PACK_VERSION = 1
SUFFIX = ".pack.h5"
_LAYOUT = "__pack__"  # attribute of each packed dataset: its codec and the source's layout
_CHECKSUMS = "checksums"  # group of the CRC-32 of every WebP image's pixels, one dataset per image dataset
_WEBP_LOSSLESS = [cv2.IMWRITE_WEBP_QUALITY, 101]  # quality above 100 selects WebP's lossless mode
_GZIP9 = {"compression": "gzip", "compression_opts": 9, "shuffle": True, "fletcher32": True}  # checked on arrival
FLOAT16_MAX = float(np.finfo(np.float16).max)
BRIEF_OMITS = ("objects", "lights")  # the bulk of a scene description; rendering again from the seed restores them


@dataclass
class PackStats:
    source: Path
    pack: Path
    scenes: int
    source_bytes: int
    pack_bytes: int
    codecs: dict[str, str] = field(default_factory=dict)  # dataset -> codec
    float16_error: dict[str, dict] = field(default_factory=dict)  # dataset -> max abs / rel error of finite values
    rederived_change: dict[str, float] = field(default_factory=dict)  # derived dataset -> max abs change (computed again)
    brief_descriptions: bool = False  # the scene descriptions lost BRIEF_OMITS

    def to_dict(self) -> dict:
        return {
            "source": self.source.name,
            "pack": self.pack.name,
            "scenes": self.scenes,
            "source_bytes": self.source_bytes,
            "pack_bytes": self.pack_bytes,
            "codecs": self.codecs,
            "float16_error": self.float16_error,
            "rederived_change": self.rederived_change,
            "brief_descriptions": self.brief_descriptions,
        }


def pack_name(source: str | os.PathLike) -> str:
    return Path(source).stem + SUFFIX


def _is_colour_image(ds: h5py.Dataset) -> bool:
    return ds.dtype == np.uint8 and ds.ndim >= 4 and ds.shape[-1] == 3


def _codec(ds: h5py.Dataset, float16: tuple[str, ...]) -> str:
    name = ds.name.lstrip("/")
    if name in float16:  # first: images and strings would otherwise take their own codec without a word
        if ds.dtype.kind != "f":
            kind = "strings" if h5py.check_string_dtype(ds.dtype) is not None else ds.dtype
            raise DatasetError(f"dataset {name!r} is {kind}, not floating point: cannot pack it as float16")
        return "float16"
    if h5py.check_string_dtype(ds.dtype) is not None:
        return "json-lzma"
    if _is_colour_image(ds):
        return "webp"
    return "raw"


def _layout(ds: h5py.Dataset, codec: str) -> str:
    return json.dumps(
        {
            "codec": codec,
            "dtype": ds.dtype.str if h5py.check_string_dtype(ds.dtype) is None else "str",
            "shape": list(ds.shape[1:]),
            "chunks": list(ds.chunks) if ds.chunks else None,
            "maxshape": [None if m is None else int(m) for m in (ds.maxshape or ds.shape)],
            "compression": ds.compression,
            "compression_opts": ds.compression_opts,
            "shuffle": bool(ds.shuffle),
            "fletcher32": bool(ds.fletcher32),
            "scaleoffset": ds.scaleoffset,
        }
    )


def _copy_attrs(src, dst, skip: tuple[str, ...] = ()) -> None:
    for key, value in src.attrs.items():
        if key not in skip:
            dst.attrs[key] = value


def _encode_webp(image: np.ndarray, where: str) -> np.ndarray:
    ok, buf = cv2.imencode(".webp", np.ascontiguousarray(image), _WEBP_LOSSLESS)
    if not ok:
        raise DatasetError(f"{where}: OpenCV could not encode it as WebP")
    return buf.ravel()


def pack_file(
    source: str | os.PathLike, out: str | os.PathLike, float16: tuple[str, ...] = (), brief_descriptions: bool = False
) -> PackStats:
    """Pack the complete scenes of ``source`` into ``out`` (written atomically). ``float16`` names the
    floating-point datasets stored as half floats (lossy; e.g. ``("depth",)``); ``brief_descriptions`` leaves
    the scene descriptions' ``BRIEF_OMITS`` out."""
    source, out = Path(source), Path(out)
    if source.resolve() == out.resolve():
        raise DatasetError(f"{out}: is the file being packed; choose another output")
    try:
        f = h5py.File(source, "r")
    except OSError as exc:
        raise DatasetError(f"{source}: not a readable HDF5 file ({exc})") from None
    with f:
        if "complete" not in f or f.attrs.get("format") != "focalstack":
            raise DatasetError(f"{source}: not a focalstack file (no 'format' attribute 'focalstack' or no 'complete')")
        unknown = [n for n in float16 if n not in f]
        if unknown:
            raise DatasetError(f"{source}: --float16 names {', '.join(unknown)}, which the file does not hold")
        declared = declaration_of(f, source) if float16 else None
        rederive = declared is not None and _defocus_rederived(declared, float16, source)
        rows = np.flatnonzero(f["complete"][...])
        stats = PackStats(source, out, len(rows), source.stat().st_size, 0, brief_descriptions=brief_descriptions)
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as p:
            p.attrs["pack_format"] = PACK_FORMAT
            p.attrs["pack_version"] = PACK_VERSION
            p.attrs["source_name"] = source.name
            p.attrs["scenes"] = len(rows)
            _copy_attrs(f, p.create_group("attrs"))
            data = p.create_group("data")
            order = []
            for name, ds in f.items():
                if not isinstance(ds, h5py.Dataset) or ds.ndim == 0 or ds.shape[0] != len(f["complete"]):
                    raise DatasetError(f"{source}: {name!r} is not a per-scene dataset; not a file this packs")
                codec = _codec(ds, float16)
                stats.codecs[name] = codec
                order.append(name)
                brief = brief_descriptions and name == "scene"
                if name == "defocus" and rederive and declared is not None:
                    packed = _pack_rederived_defocus(f, rows, declared, float16, data, f"{source}: {name!r}", stats)
                else:
                    packed = _pack_dataset(ds, rows, codec, data, f"{source}: {name!r}", stats, brief)
                _copy_attrs(ds, packed)
                packed.attrs[_LAYOUT] = _layout(ds, codec)
            p.attrs["order"] = json.dumps(order)
            # unpack checks the file it writes as validate does: a source that fails would be refused there, too
            # late (on the machine it was carried to); after packing, which names damaged data better
            report = validate_file(source)
            if not report.valid:
                raise DatasetError(f"{source}: fails validation ({report.problems[0]}); a pack of it would not unpack")
        stats.pack_bytes = out.stat().st_size
    return stats


def _defocus_rederived(declared: provenance.Declaration, float16: tuple[str, ...], source: Path) -> bool:
    """What half floats of the ``float16`` datasets do to the ground truth derived from them, which must
    still agree with them once unpacked (``validate`` checks defocus against depth to 0.001 px; a half-float
    depth moves the maps by about that much). Stored defocus maps derived by an optics model are computed
    again from the half floats: returns whether there are such maps to compute. Any
    other stored derivation that a named dataset takes part in (depth from disparity, say) is refused."""
    for name, gt in declared.items():
        if gt.source != "derived" or not gt.stored:
            continue
        inputs = [n for n in gt.derived_from if n in float16]
        if name in float16 and any(declared.get(n, provenance.ABSENT).stored for n in gt.derived_from):
            raise DatasetError(
                f"{source}: --float16 {name}: {name!r} is derived from {', '.join(gt.derived_from)} by {gt.method}, "
                f"and half floats of it would no longer agree with them; pack it exactly"
            )
        if inputs and not (name == "defocus" and gt.method in DEFOCUS_MODELS):
            raise DatasetError(
                f"{source}: --float16 {inputs[0]}: the file stores {name!r} derived from it "
                f"by {gt.method or 'an unnamed method'}, which half floats of {inputs[0]!r} would no longer agree with; "
                f"pack it exactly"
            )
    defocus = declared["defocus"]
    return defocus.stored and defocus.source == "derived" and bool(set(defocus.derived_from) & set(float16))


def _pack_rederived_defocus(
    f: h5py.File,
    rows: np.ndarray,
    declared: provenance.Declaration,
    float16: tuple[str, ...],
    data: h5py.Group,
    where: str,
    stats: PackStats,
) -> h5py.Dataset:
    """The file's defocus maps, computed again by its model from the values the pack carries of their
    sources (half floats where ``float16`` says); how far they moved is ``stats.rederived_change``."""
    ds = f["defocus"]
    model, no_data = declared["defocus"].method, declared["depth"].no_data

    def carried(name: str, row: int) -> np.ndarray:
        value = _read(f[name], row, f"{Path(f.filename)}: {name!r}")
        if name not in float16:
            return value
        _check_half_float_range(value, name, f"{Path(f.filename)}: {name!r}")  # before the maps divide by it
        return value.astype(np.float16).astype(value.dtype)

    maps = np.zeros((len(rows), *ds.shape[1:]), ds.dtype)
    change = 0.0
    for k, row in enumerate(rows):
        maps[k] = _defocus_of_row(carried, row, model, no_data)
        with np.errstate(invalid="ignore"):
            moved = np.abs(maps[k].astype(np.float64) - _read(ds, row, where))
        change = max(change, float(np.nanmax(moved, initial=0.0)))
    stats.rederived_change["defocus"] = change
    chunks = (1, *ds.shape[1:]) if len(rows) else None
    return data.create_dataset("defocus", data=maps, chunks=chunks, **(_GZIP9 if len(rows) else {}))


def _defocus_of_row(value, row: int, model: str, no_data) -> np.ndarray:
    """Scene ``row``'s defocus maps by ``model`` from ``value(name, row)`` of depth, focus and camera."""
    names = ("depth", "focus_distance", *schema.CAMERA_NAMES)
    depth, focus, f_number, focal_length, sensor_width = (value(n, row) for n in names)
    return stored_defocus_maps(depth, focus, f_number, focal_length, sensor_width, model, no_data)


def _brief(text: str, where: str) -> str:
    """A scene description without ``BRIEF_OMITS``, naming what it lost."""
    try:
        description = json.loads(text)
    except ValueError as exc:
        raise DatasetError(f"{where}: not a JSON scene description ({exc})") from None
    if not isinstance(description, dict):
        raise DatasetError(f"{where}: not a JSON scene description (a {type(description).__name__}, not an object)")
    omitted = [key for key in BRIEF_OMITS if key in description]
    if not omitted:
        return text  # nothing to leave out (an import's description, or a brief file packed again): as it is
    for key in omitted:
        del description[key]
    description["omitted_for_transport"] = omitted
    return json.dumps(description)


def _read(ds: h5py.Dataset, selection, where: str) -> np.ndarray:
    """``ds[selection]``; a chunk that fails its checksum or cannot be decoded is a DatasetError naming it
    (only reads: an error writing the pack, a full disk say, is not the source's damage)."""
    try:
        return ds[selection]
    except OSError as exc:
        raise DatasetError(
            f"{where} cannot be read: damaged ({' '.join(str(exc).split())}); `focalstack-data salvage` copies the intact scenes"
        ) from None


def _pack_dataset(
    ds: h5py.Dataset, rows: np.ndarray, codec: str, data: h5py.Group, where: str, stats: PackStats, brief: bool = False
) -> h5py.Dataset:
    name = ds.name.lstrip("/")
    if codec == "json-lzma":
        texts = [v.decode() if isinstance(v, bytes) else str(v) for v in _read(ds, rows, where)] if len(rows) else []
        if brief:
            texts = [_brief(t, f"{where} scene {row}") for t, row in zip(texts, rows)]
        blob = np.frombuffer(lzma.compress(json.dumps(texts).encode()), dtype=np.uint8)
        return data.create_dataset(name, data=blob, chunks=(max(1, len(blob)),), fletcher32=True)
    if codec == "webp":
        middle = ds.shape[1:-3]
        out = data.create_dataset(name, shape=(len(rows), *middle), dtype=h5py.vlen_dtype(np.uint8))
        crc = np.zeros((len(rows), *middle), np.uint32)
        for k, row in enumerate(rows):
            scene = _read(ds, row, where)
            for index in np.ndindex(*middle):
                out[(k, *index)] = _encode_webp(scene[index], f"{where} scene {row}")
                crc[(k, *index)] = zlib.crc32(np.ascontiguousarray(scene[index]).tobytes())
        data.parent.require_group(_CHECKSUMS).create_dataset(
            name, data=crc, fletcher32=bool(crc.size), chunks=True if crc.size else None
        )
        return out
    chunks = (1, *ds.shape[1:]) if ds.ndim > 1 else None
    if codec == "float16":
        values = _read(ds, rows, where) if len(rows) else np.zeros((0, *ds.shape[1:]), ds.dtype)
        finite = np.isfinite(values)
        _check_half_float_range(values, name, where)
        half = values.astype(np.float16)
        err = np.abs(half.astype(np.float64) - values)[finite]
        rel = err / np.maximum(np.abs(values[finite]), np.finfo(np.float32).tiny)
        stats.float16_error[name] = {"max_abs": float(err.max(initial=0.0)), "max_rel": float(rel.max(initial=0.0))}
        return data.create_dataset(name, data=half, chunks=chunks if len(rows) else None, **(_GZIP9 if len(rows) else {}))
    values = _read(ds, rows, where) if len(rows) else np.zeros((0, *ds.shape[1:]), ds.dtype)
    return data.create_dataset(
        name, data=values, chunks=chunks if len(rows) and ds.ndim > 1 else None, **(_GZIP9 if len(rows) else {})
    )


def _check_half_float_range(values: np.ndarray, name: str, where: str) -> None:
    finite = np.isfinite(values)
    if finite.any() and np.abs(values[finite]).max() > FLOAT16_MAX:
        raise DatasetError(
            f"{where}: values up to {np.abs(values[finite]).max():.3g} exceed what a half "
            f"float holds ({FLOAT16_MAX:g}); pack it exactly (without --float16 {name})"
        )


def _szip_encodes() -> bool:
    if not h5py.h5z.filter_avail(h5py.h5z.FILTER_SZIP):
        return False
    return bool(h5py.h5z.get_filter_info(h5py.h5z.FILTER_SZIP) & h5py.h5z.FILTER_CONFIG_ENCODE_ENABLED)


def read_pack_header(p: h5py.File, path: Path) -> int:
    if p.attrs.get("pack_format") != PACK_FORMAT:
        raise DatasetError(f"{path}: not a focalstack pack (no 'pack_format' attribute {PACK_FORMAT!r})")
    if p.attrs.get("pack_version") != PACK_VERSION:
        raise DatasetError(f"{path}: pack version {p.attrs.get('pack_version')!r}, this reads {PACK_VERSION}")
    return int(p.attrs["scenes"])


def unpack_file(pack: str | os.PathLike, out: str | os.PathLike) -> tuple[Path, list[str]]:
    """Write the focalstack file that ``pack`` holds to ``out`` (atomically). Returns the path and notes
    (a filter this HDF5 build cannot encode is replaced by gzip 6 with shuffle, and said so). A damaged pack
    is a DatasetError naming it."""
    try:
        return _unpack_file(Path(pack), Path(out))
    # JSONDecodeError is a ValueError; IndexError: a 'scenes' attribute beyond the packed scenes
    except (KeyError, ValueError, TypeError, IndexError, lzma.LZMAError) as exc:
        raise DatasetError(f"{pack}: damaged or not a pack this reads ({' '.join(str(exc).split())[:120]})") from None


def _unpack_file(pack: Path, out: Path) -> tuple[Path, list[str]]:
    notes: list[str] = []
    try:
        p = h5py.File(pack, "r")
    except OSError as exc:
        raise DatasetError(f"{pack}: not a readable HDF5 file ({exc})") from None
    with p:
        n = read_pack_header(p, pack)
        with atomic_path(out) as tmp:
            _write_unpacked(p, tmp, n, pack, notes)
            _rederive_after_float16(p, tmp, notes)
            # the checksums cover the pixels, not the layout the pack records (a dtype edited by hand, say):
            # the file is checked as any file is before it takes ``out``'s place
            report = validate_file(tmp)
            if not report.valid:
                raise DatasetError(f"{pack}: what it unpacks to fails validation ({report.problems[0]}); the pack is damaged")
    return out, notes


def _rederive_after_float16(p: h5py.File, tmp: Path, notes: list[str]) -> None:
    """Stored defocus maps computed again from the half floats their sources travelled as: a pack made before
    ``pack`` did so itself carries the maps of the exact depth, which disagree with the half-float depth by
    about 0.001 px, past what ``validate`` allows. A pack that did changes nothing here."""
    codecs = {name: json.loads(p["data"][name].attrs[_LAYOUT])["codec"] for name in json.loads(p.attrs["order"])}
    if "defocus" not in codecs or not any(codecs.get(n) == "float16" for n in provenance.RECOMPUTABLE["defocus"]):
        return
    with h5py.File(tmp, "r+") as f:
        declared = declaration_of(f, tmp)
        gt = declared["defocus"]
        if not (gt.stored and gt.source == "derived" and gt.method in DEFOCUS_MODELS):
            return
        moved = 0
        for row in range(len(f["defocus"])):
            maps = _defocus_of_row(lambda name, r: f[name][r], row, gt.method, declared["depth"].no_data)
            if not np.array_equal(maps, f["defocus"][row], equal_nan=True):
                f["defocus"][row] = maps
                moved += 1
    if moved:
        notes.append(f"defocus: computed again from the half-float depth in {moved} scene(s) (a pack made before pack did so)")


def _write_unpacked(p: h5py.File, tmp: Path, n: int, pack: Path, notes: list[str]) -> None:
    with h5py.File(tmp, "w") as f:
        _copy_attrs(p["attrs"], f)
        for name in json.loads(p.attrs["order"]):
            src = p["data"][name]
            layout = json.loads(src.attrs[_LAYOUT])
            filters = {
                "compression": layout["compression"],
                "compression_opts": _opts(layout["compression_opts"]),
                "shuffle": layout["shuffle"],
            }
            if layout["compression"] == "szip" and not _szip_encodes():
                filters = {"compression": "gzip", "compression_opts": 6, "shuffle": True}
                notes.append(f"{name}: this HDF5 build cannot write szip; stored with gzip 6 + shuffle")
            if layout["compression"] is None:
                filters = {"shuffle": layout["shuffle"]} if layout["shuffle"] else {}
            if layout.get("fletcher32"):
                filters["fletcher32"] = True
            if layout.get("scaleoffset") is not None:  # packs made before it was recorded have no such key
                filters["scaleoffset"] = layout["scaleoffset"]
            dtype = h5py.string_dtype("utf-8") if layout["dtype"] == "str" else np.dtype(layout["dtype"])
            maxshape = tuple(layout["maxshape"])
            chunks = tuple(layout["chunks"]) if layout["chunks"] else None
            ds = f.create_dataset(name, shape=(n, *layout["shape"]), maxshape=maxshape, chunks=chunks, dtype=dtype, **filters)
            _unpack_into(src, ds, layout["codec"], n, f"{pack}: {name!r}")
            _copy_attrs(src, ds, skip=(_LAYOUT,))


def _opts(value):
    return tuple(value) if isinstance(value, list) else value


def _unpack_into(src: h5py.Dataset, ds: h5py.Dataset, codec: str, n: int, where: str) -> None:
    if codec == "json-lzma":
        texts = json.loads(lzma.decompress(src[...].tobytes()))
        if len(texts) != n:
            raise DatasetError(f"{where}: {len(texts)} strings for {n} scenes")
        if n:
            ds[...] = np.array(texts, dtype=object)
        return
    if codec == "webp":
        middle = ds.shape[1:-3]
        name = src.name.rsplit("/", 1)[-1]
        checksums = src.file.get(f"{_CHECKSUMS}/{name}")  # packs made before checksums have none
        crc = checksums[...] if checksums is not None else None
        for k in range(n):
            scene = np.empty(ds.shape[1:], dtype=np.uint8)
            for index in np.ndindex(*middle):
                image = cv2.imdecode(src[(k, *index)], cv2.IMREAD_UNCHANGED)
                if image is None or image.shape != scene.shape[len(middle) :]:
                    raise DatasetError(f"{where}: scene {k} image {index} does not decode to {scene.shape[len(middle) :]}")
                if crc is not None and zlib.crc32(np.ascontiguousarray(image).tobytes()) != int(crc[(k, *index)]):
                    raise DatasetError(
                        f"{where}: scene {k} image {', '.join(map(str, index))} is damaged (its pixels fail their "
                        "checksum); pack the source again"
                    )
                scene[index] = image
            ds[k] = scene
        return
    if codec not in ("float16", "raw"):
        raise DatasetError(f"{where}: unknown codec {codec!r}")
    step = max(1, (64 << 20) // max(1, src.dtype.itemsize * int(np.prod(src.shape[1:]))))  # ~64 MB at a time
    for k in range(0, n, step):
        ds[k : k + step] = src[k : k + step].astype(ds.dtype)
