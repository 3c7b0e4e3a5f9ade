"""The asset catalogue: mesh files, texture images and environment maps, from the package and user folders.

``load_catalogue(dirs)`` scans the package's own files (``assets/data/``, made by ``make_bundled.py``)
and every user folder (the render CLI's ``--assets DIR``) recursively and returns an ``AssetCatalogue``:

- meshes: ``.obj .ply .stl .gltf .glb`` (loaded with trimesh, triangulated, normalised to [-1, 1]^3);
- texture images: ``.png .jpg .jpeg .exr``;
- environment maps: ``.hdr .exr`` (equirectangular).

An ``.exr`` is an environment map when it sits under a folder named ``envmaps``/``envmap``/``hdri``/
``hdris`` or when it is twice as wide as high, a texture otherwise; any file under a folder named
``meshes``/``textures``/``envmaps`` (and the like, see ``KIND_FOLDERS``) must be of that kind. Files with
other extensions (``.mtl``, ``.bin``, notes) are ignored. A file that cannot be read is skipped with an
``AssetWarning`` naming it; a folder without any usable file is an error (``ValueError`` naming it).

Train/test split: every file is assigned by its content, ``asset_split(sha256)``: the first 64 bits of
the SHA-256 of its bytes, read as a fraction of 2**64, below ``TEST_FRACTION`` (a quarter) -> 'test',
else 'train'. The same bytes land in the same split wherever they are stored and whatever they are called,
and a preset with ``split = "test"`` draws only test files, one with ``split = "train"`` only train files,
so a held-out test set never sees a training asset. The fraction is a constant on purpose: presets with
different fractions would overlap. A ``.gltf`` file's hash covers the external buffers it names too
(its geometry is there): ``content_sha256``.

Files are listed in order of (kind, sha256), not of path, so that sampling draws the same files from the
same folder contents wherever the folders are. Scenes name the files they use by path and sha256, and
``check_unchanged`` (which ``load_mesh_arrays`` and the renderer call) refuses a file whose content changed since.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import unquote

import numpy as np

KINDS = ("mesh", "texture", "envmap")
SPLITS = ("train", "test")
TEST_FRACTION = 0.25  # of files (by content hash) held out for test presets
MESH_EXTENSIONS = (".obj", ".ply", ".stl", ".gltf", ".glb")
TEXTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".exr")
ENVMAP_EXTENSIONS = (".hdr", ".exr")
MESH_MAX_TRIANGLES = 200_000  # larger meshes are skipped (decimate them first)
KIND_FOLDERS = {
    "meshes": "mesh", "mesh": "mesh", "models": "mesh",
    "textures": "texture", "texture": "texture", "images": "texture",
    "envmaps": "envmap", "envmap": "envmap", "hdri": "envmap", "hdris": "envmap",
}  # fmt: skip
MESH_FILE_FAMILY = "mesh_file"  # ShapeSpec family of a catalogue mesh: params {'path', 'sha256'}


class AssetWarning(UserWarning):
    """An asset file was skipped; the message names it and why."""


class AssetChanged(ValueError):
    """A file a scene was drawn with is gone, or its content changed since: the scene cannot render again."""


def asset_split(sha256: str) -> str:
    """'test' for about TEST_FRACTION of all contents, 'train' for the rest, by the hash alone."""
    return "test" if int(sha256[:16], 16) < TEST_FRACTION * 2**64 else "train"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _gltf_buffers(path: Path) -> list[Path]:
    """The external files that a .gltf's buffers name, in order (its geometry lives there; ``data:`` URIs are
    inside it). [] for a file that does not read as glTF JSON: the mesh loader says why."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    buffers = doc.get("buffers", []) if isinstance(doc, dict) else []
    uris = [b.get("uri") for b in buffers if isinstance(b, dict)] if isinstance(buffers, list) else []
    return [path.parent / unquote(u) for u in uris if isinstance(u, str) and u and not u.startswith("data:")]


def _content_files(path: Path) -> list[Path]:
    """The files whose bytes make an asset's content: the file, and a .gltf's external buffers."""
    return [path, *(_gltf_buffers(path) if path.suffix.lower() == ".gltf" else [])]


def content_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 that names an asset's content: of its bytes; for a .gltf with external buffers, of the
    file's and its buffers' hashes in order (a changed .bin changes the geometry). OSError if one is missing."""
    files = _content_files(Path(path))
    if len(files) == 1:
        return file_sha256(files[0])
    h = hashlib.sha256()
    for f in files:
        h.update(bytes.fromhex(file_sha256(f)))
    return h.hexdigest()


def _content_key(path: Path) -> tuple:
    """(path, and each content file's modification time and size): what the caches of a file's hash and
    description are keyed by, so that a changed buffer of a .gltf is seen too. OSError if one is missing."""
    return (str(path), *((st.st_mtime_ns, st.st_size) for st in (f.stat() for f in _content_files(path))))


def cached_sha256(path: str | os.PathLike) -> str:
    """``content_sha256``, computed once per content (files are read again when they change)."""
    return _sha_cached(_content_key(Path(path)))


def check_unchanged(kind: str, path: str, sha256: str) -> None:
    """ValueError unless the asset at ``path`` still has the content (``sha256``) a scene was sampled with:
    a scene renders again from its description only with the files it was drawn with."""
    p = Path(path)
    if not p.is_file():
        raise AssetChanged(f"{kind} file {path}: not found")
    try:
        digest = cached_sha256(p)
    except OSError as exc:
        raise AssetChanged(f"{kind} file {path}: {exc.strerror or exc}: {exc.filename}") from None
    if digest != sha256:
        if p.suffix.lower() == ".gltf" and file_sha256(p) == sha256:  # named before its buffers were hashed too
            warnings.warn(
                f"assets: {path}: the scene names it by the hash of its text alone (focalstack 0.3.0 and before): "
                "its buffers cannot be checked",
                AssetWarning,
                stacklevel=2,
            )
            return
        raise AssetChanged(
            f"{kind} file {path}: its content changed since the scene was sampled "
            f"(sha256 {digest[:12]}..., expected {sha256[:12]}...)"
        )


@dataclass
class AssetFile:
    kind: str  # 'mesh', 'texture' or 'envmap'
    path: str  # absolute
    sha256: str
    split: str  # 'train' or 'test'
    # mesh: vertices, triangles; texture: width, height, luminance_range (3rd-97th percentile of linear
    # luminance, what the renderer's image factor spans); envmap: width, height, mean_luminance
    info: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.path).name

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AssetCatalogue:
    files: list[AssetFile]  # sorted by (kind, sha256); one per distinct content
    folders: list[str]  # the user folders scanned (the bundled folder is not listed)
    bundled: bool
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def select(self, kind: str, split: str | None = None) -> list[AssetFile]:
        if kind not in KINDS:
            raise ValueError(f"asset kind {kind!r}: expected one of {', '.join(KINDS)}")
        if split is not None and split not in SPLITS:
            raise ValueError(f"asset split {split!r}: expected one of {', '.join(SPLITS)}")
        return [a for a in self.files if a.kind == kind and (split is None or a.split == split)]

    def by_sha256(self, sha256: str) -> AssetFile:
        for a in self.files:
            if a.sha256 == sha256:
                return a
        raise KeyError(sha256)

    def __len__(self) -> int:
        return len(self.files)

    def summary(self) -> str:
        parts = []
        for kind in KINDS:
            counts = {s: len(self.select(kind, s)) for s in SPLITS}
            parts.append(f"{kind}: {counts['train']} train + {counts['test']} test")
        return "; ".join(parts)


def bundled_folder() -> Path:
    """The package's own asset files (assets/data), made by assets/make_bundled.py."""
    return Path(str(resources.files("focalstack.assets") / "data"))


# --------------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------------


def _linear_luminance(rgb: np.ndarray) -> np.ndarray:
    return 0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) float32 scene-linear RGB of a PNG/JPG (sRGB-decoded), Radiance HDR or OpenEXR file.

    Raises ValueError when the file cannot be decoded.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".exr":
        try:
            import OpenEXR
        except ImportError:
            raise ValueError("reading EXR needs the OpenEXR package (pip install OpenEXR)") from None
        try:
            with OpenEXR.File(str(path)) as exr:
                channels = exr.parts[0].channels
                if "RGB" in channels or "RGBA" in channels:
                    px = np.asarray(channels["RGBA" if "RGBA" in channels else "RGB"].pixels, np.float32)[..., :3]
                else:
                    named = {k.split(".")[-1]: np.asarray(v.pixels, np.float32) for k, v in channels.items()}
                    if all(c in named for c in "RGB"):
                        px = np.stack([named["R"], named["G"], named["B"]], -1)
                    elif "Y" in named:
                        px = np.repeat(named["Y"][..., None], 3, -1)
                    else:
                        raise ValueError(f"no RGB or Y channels (found {', '.join(sorted(named)) or 'none'})")
        except ValueError:
            raise
        except Exception as exc:  # OpenEXR raises RuntimeError/OSError for damaged files
            raise ValueError(f"not a readable OpenEXR file ({exc})") from None
        return _checked_image(px)

    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ValueError("not a readable image (decoding failed)")
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] == 2:  # grey + alpha
        img = img[..., :1]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img[..., :3][..., ::-1]  # BGR(A) -> RGB
    if ext == ".hdr" or img.dtype == np.float32:
        return _checked_image(np.ascontiguousarray(img, dtype=np.float32))
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    from focalstack.dataset.colour import srgb_to_linear

    return _checked_image(np.asarray(srgb_to_linear(img.astype(np.float64) / scale), np.float32))


def _checked_image(px: np.ndarray) -> np.ndarray:
    if px.ndim != 3 or px.shape[0] < 1 or px.shape[1] < 1:
        raise ValueError(f"image of shape {px.shape}: expected H x W x channels")
    if not np.all(np.isfinite(px)):
        raise ValueError("image holds NaN or infinite values")
    return px


def _load_trimesh(path: Path):
    try:
        import trimesh
    except ImportError:
        raise ValueError("reading mesh files needs the trimesh package (pip install trimesh)") from None
    import logging

    logging.getLogger("trimesh").setLevel(logging.ERROR)  # its own parse chatter; we warn ourselves
    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh raises many kinds for bad files
        raise ValueError(f"not a readable mesh ({type(exc).__name__}: {exc})") from None
    vertices = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), dtype=np.int64)
    return vertices, faces


def mesh_arrays_from_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(vertices float32 (V, 3), faces int32 (F, 3)) of a mesh file, cleaned and normalised like the
    procedural families: coincident vertices merged, degenerate triangles and unused vertices dropped,
    centred on the bounding box with the largest half-extent exactly 1. ValueError if unusable."""
    v, f = _load_trimesh(Path(path))
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or len(v) == 0:
        raise ValueError("no triangles")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError("faces index missing vertices")
    if not np.all(np.isfinite(v)):
        raise ValueError("vertices hold NaN or infinite values")
    if len(f) > MESH_MAX_TRIANGLES:
        raise ValueError(f"{len(f)} triangles, more than {MESH_MAX_TRIANGLES}: decimate it first")
    lo, hi = v.min(axis=0), v.max(axis=0)
    half = float((hi - lo).max()) / 2
    if not half > 0:
        raise ValueError("all vertices coincide")
    v = (v - (hi + lo) / 2) / half
    # merge vertices that coincide (files split them by normal or UV): smooth shading needs shared ones
    key = np.round(v / 1e-6).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    v, f = v[first], inverse.reshape(-1)[f]
    area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    f = f[(area > 1e-12) & (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]
    if len(f) == 0:
        raise ValueError("only degenerate triangles")
    used = np.unique(f)
    remap = np.full(len(v), -1, np.int64)
    remap[used] = np.arange(len(used))
    v, f = v[used], remap[f]
    lo, hi = v.min(axis=0), v.max(axis=0)
    v = (v - (hi + lo) / 2) / (float((hi - lo).max()) / 2)
    return v.astype(np.float32), np.ascontiguousarray(f, dtype=np.int32)


@functools.lru_cache(maxsize=64)
def _mesh_cached(key: tuple):
    return mesh_arrays_from_file(key[0])


def load_mesh_arrays(path: str, sha256: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The normalised mesh of a catalogue file (cached); with ``sha256``, check the content is still that."""
    p = Path(path)
    if not p.is_file():
        raise AssetChanged(f"mesh file {path}: not found")
    if sha256 is not None:
        check_unchanged("mesh", path, sha256)
    v, f = _mesh_cached(_content_key(p))
    return v.copy(), f.copy()


@functools.lru_cache(maxsize=4096)
def _sha_cached(key: tuple) -> str:
    return content_sha256(key[0])


# --------------------------------------------------------------------------------------------------
# Scanning folders
# --------------------------------------------------------------------------------------------------


def _kind_of(path: Path, root: Path) -> str | None:
    """The asset kind a file is taken as, or None to ignore it (unknown extension)."""
    ext = path.suffix.lower()
    folder_kind = None
    for part in reversed(path.relative_to(root).parts[:-1]):
        if part.lower() in KIND_FOLDERS:
            folder_kind = KIND_FOLDERS[part.lower()]
            break
    exts = {"mesh": MESH_EXTENSIONS, "texture": TEXTURE_EXTENSIONS, "envmap": ENVMAP_EXTENSIONS}
    if folder_kind is not None:
        return folder_kind if ext in exts[folder_kind] else None
    if ext in MESH_EXTENSIONS:
        return "mesh"
    if ext == ".hdr":
        return "envmap"
    if ext in TEXTURE_EXTENSIONS:
        return "texture" if ext != ".exr" else "exr?"  # decided by its shape once read
    return None


def _describe(path: Path, kind: str) -> tuple[str, dict]:
    """(kind, info) of a readable file; ValueError saying why it is not usable."""
    if kind == "mesh":
        v, f = mesh_arrays_from_file(path)
        return kind, {"vertices": int(len(v)), "triangles": int(len(f))}
    img = read_image(path)
    h, w = img.shape[:2]
    if kind == "exr?":
        kind = "envmap" if w == 2 * h else "texture"
    lum = _linear_luminance(img)
    if kind == "envmap":
        mean = float(lum.mean())
        if not mean > 0:
            raise ValueError("environment map is black")
        return kind, {"width": int(w), "height": int(h), "mean_luminance": mean}
    lo, hi = (float(x) for x in np.percentile(lum, [3.0, 97.0]))
    if hi - lo < 0.02:  # flat image: no contrast to stretch
        lo, hi = 0.0, 1.0
    return kind, {"width": int(w), "height": int(h), "luminance_range": [lo, hi]}


@functools.lru_cache(maxsize=4096)
def _scan_file(key: tuple, kind: str) -> tuple[AssetFile | None, str]:
    path = key[0]
    p = Path(path)
    try:
        digest = _sha_cached(key)
        kind, info = _describe(p, kind)
    except (ValueError, OSError) as exc:
        return None, str(exc)
    except Exception as exc:  # a loader's unexpected failure on a damaged file: skip it, say why
        return None, f"{type(exc).__name__}: {exc}"
    return AssetFile(kind, path, digest, asset_split(digest), info), ""


def _scan_folder(folder: Path, *, warn: bool) -> tuple[list[AssetFile], list[tuple[str, str]]]:
    found, skipped = [], []
    seen = set()  # folders walked, by device and inode: a link back up the tree is walked once, not for ever
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            kind = _kind_of(path, folder)
            if kind is None:
                continue
            try:
                key = _content_key(path.resolve())
            except (OSError, RuntimeError) as exc:  # RuntimeError: a loop of file links (Python 3.11's resolve)
                reason = f"{exc.strerror or exc}: {exc.filename}" if isinstance(exc, OSError) else str(exc)
                skipped.append((str(path), reason))
                if warn:
                    warnings.warn(f"assets: skipping {path}: {skipped[-1][1]}", AssetWarning, stacklevel=3)
                continue
            asset, reason = _scan_file(key, kind)
            if asset is None:
                skipped.append((str(path), reason))
                if warn:
                    warnings.warn(f"assets: skipping {path}: {reason}", AssetWarning, stacklevel=3)
            else:
                found.append(asset)
    return found, skipped


def load_catalogue(dirs=(), *, bundled: bool = True) -> AssetCatalogue:
    """Scan ``dirs`` (user folders) and, with ``bundled``, the package's own files into a catalogue.

    Broken files are skipped with an ``AssetWarning`` naming each; a user folder that does not exist or
    holds no usable file raises ``ValueError`` naming it. Files with the same content are listed once.
    """
    files: list[AssetFile] = []
    skipped: list[tuple[str, str]] = []
    folders = []
    if bundled:
        found, bad = _scan_folder(bundled_folder(), warn=True)
        files += found
        skipped += bad
    for d in dirs:
        folder = Path(d).expanduser()
        if not folder.exists():
            raise ValueError(f"assets folder {folder}: not found")
        if not folder.is_dir():
            raise ValueError(f"assets folder {folder}: not a folder")
        found, bad = _scan_folder(folder, warn=True)
        if not found:
            exts = " ".join(sorted(set(MESH_EXTENSIONS + TEXTURE_EXTENSIONS + ENVMAP_EXTENSIONS)))
            why = f"; skipped {len(bad)} unusable: " + "; ".join(f"{Path(p).name} ({r})" for p, r in bad[:5]) if bad else ""
            raise ValueError(f"assets folder {folder}: no usable mesh, texture image or environment map ({exts}){why}")
        files += found
        skipped += bad
        folders.append(str(folder.resolve()))
    unique: dict[str, AssetFile] = {}
    for a in files:
        unique.setdefault(a.sha256, a)
    ordered = sorted(unique.values(), key=lambda a: (KINDS.index(a.kind), a.sha256))
    return AssetCatalogue(ordered, folders, bundled, skipped)


@functools.lru_cache(maxsize=16)
def cached_catalogue(dirs: tuple[str, ...], bundled: bool = True) -> AssetCatalogue:
    """``load_catalogue`` once per process for the same folders (scene sampling calls it per scene)."""
    return load_catalogue(list(dirs), bundled=bundled)
