"""Make the package's own asset files (assets/data/): small meshes, texture images and environment maps.

Everything is generated here from fixed seeds with numpy and OpenCV, so the files are the project's own
and the default catalogue works offline. The outputs are committed; rerun after changing this script:

    python -m focalstack.assets.make_bundled            # writes into the package's assets/data
    python -m focalstack.assets.make_bundled --out DIR  # elsewhere

Each file is then assigned to the 'train' or 'test' split by the hash of its bytes (catalogue.py); the
script prints the split of every file, and there are enough of each kind for both splits to hold some.
Meshes are written in every supported format (OBJ, PLY, STL, glTF binary) so that each loader is used.
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np

from .shapes import build_mesh


class _Shape:  # the ShapeSpec interface build_mesh reads, without importing focalstack.render
    def __init__(self, family: str, params: dict | None = None):
        self.family, self.params = family, dict(params or {})


# --------------------------------------------------------------------------------------------------
# Meshes: objects made of procedural parts (boxes, cylinders, spheres, lathes), each part closed
# --------------------------------------------------------------------------------------------------


def _part(family: str, centre, half, params=None, rotate=None):
    v, f = build_mesh(_Shape(family, params))
    v = v.astype(np.float64) * np.asarray(half, float)
    if rotate is not None:
        v = v @ np.asarray(rotate, float).T
    return v + np.asarray(centre, float), f.astype(np.int64)


def _combine(*parts):
    verts, faces, n = [], [], 0
    for v, f in parts:
        verts.append(v)
        faces.append(f + n)
        n += len(v)
    return np.concatenate(verts), np.concatenate(faces)


_RX = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)  # Z axis -> -Y... rotates +90 deg about X
_RY = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float)  # +90 deg about Y: Z axis -> X
CYL = {"segments": 20}


def _table():
    legs = [_part("cylinder", (x, y, -0.45), (0.06, 0.06, 0.45), CYL) for x in (-0.8, 0.8) for y in (-0.45, 0.45)]
    return _combine(_part("rounded_box", (0, 0, 0.05), (1.0, 0.6, 0.05), {"radius": 0.3, "segments": 16, "rings": 8}), *legs)


def _chair():
    legs = [_part("cube", (x, y, -0.5), (0.05, 0.05, 0.5)) for x in (-0.45, 0.45) for y in (-0.45, 0.45)]
    seat = _part("cube", (0, 0, 0.04), (0.5, 0.5, 0.04))
    back = _part("cube", (0, 0.46, 0.6), (0.5, 0.04, 0.55))
    return _combine(seat, back, *legs)


def _mug():
    # a cup with walls: the lathe profile goes out, up, in over the rim and down inside
    r = np.array([0.0, 0.8, 0.8, 0.7, 0.7, 0.0])
    z = np.array([-1.0, -1.0, 1.0, 1.0, -0.85, -0.85])
    from .shapes import _lathe

    body = _lathe(r, z, 28)
    handle = _part(
        "torus", (0.95, 0, 0.05), (0.45, 0.45, 0.45), {"minor_ratio": 0.18, "major_segments": 20, "minor_segments": 8}, rotate=_RX
    )
    return _combine(body, handle)


def _arch():
    pillars = [_part("cube", (x, 0, -0.4), (0.2, 0.25, 0.6)) for x in (-0.8, 0.8)]
    # a half ring: a torus cut in half is open, so use boxes along a semicircle instead
    blocks = []
    for k in range(7):
        a = np.pi * (k + 0.5) / 7
        rot = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
        blocks.append(_part("cube", (0.8 * np.cos(a), 0, 0.2 + 0.8 * np.sin(a)), (0.2, 0.25, 0.19), rotate=rot))
    return _combine(*pillars, *blocks)


def _stairs():
    return _combine(*[_part("cube", (0, -0.6 + 0.3 * k, -0.8 + 0.2 * k), (0.7, 0.15, 0.1 + 0.2 * k / 2 + 0.1)) for k in range(5)])


def _dumbbell():
    ico = {"kind": "ico", "subdivisions": 2}
    bar = _part("cylinder", (0, 0, 0), (0.12, 0.12, 0.8), CYL, rotate=_RY)
    return _combine(bar, _part("sphere", (-0.8, 0, 0), (0.35,) * 3, ico), _part("sphere", (0.8, 0, 0), (0.35,) * 3, ico))


def _lamp():
    base = _part("cylinder", (0, 0, -0.95), (0.45, 0.45, 0.05), {"segments": 24})
    pole = _part("cylinder", (0, 0, -0.2), (0.04, 0.04, 0.75), {"segments": 12})
    shade = _part("cone", (0, 0, 0.65), (0.5, 0.5, 0.3), {"top_ratio": 0.5, "segments": 24})
    return _combine(base, pole, shade)


def _jack():
    caps = {"length_ratio": 2.0, "segments": 12, "rings": 4}
    rz = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    arms = [_part("capsule", (0, 0, 0), (0.12, 0.12, 0.9), caps, rotate=r) for r in (rz, _RX, _RY)]
    return _combine(*arms)


def _bottle():
    t = np.linspace(0, 1, 14)
    r = np.where(t < 0.6, 0.45, 0.45 - (0.45 - 0.15) * np.clip((t - 0.6) / 0.2, 0, 1))
    from .shapes import _lathe

    return _lathe(np.r_[0.0, r, 0.0], np.r_[-1.0, -1 + 2 * t, 1.0], 24)


def _mushroom():
    stem = _part("cylinder", (0, 0, -0.45), (0.18, 0.18, 0.5), CYL)
    cap = _part("sphere", (0, 0, 0.15), (0.7, 0.7, 0.35), {"kind": "uv", "segments": 24, "rings": 10})
    return _combine(stem, cap)


def _bench():
    slats = [_part("cube", (0, y, 0.0), (1.0, 0.07, 0.03)) for y in (-0.2, 0.0, 0.2)]
    legs = [_part("cube", (x, 0, -0.3), (0.04, 0.28, 0.28)) for x in (-0.8, 0.8)]
    return _combine(*slats, *legs)


def _letter_t():
    return _combine(_part("cube", (0, 0.6, 0), (0.7, 0.15, 0.15)), _part("cube", (0, -0.15, 0), (0.15, 0.65, 0.15)))


def _snowman():
    ico = {"kind": "ico", "subdivisions": 2}
    return _combine(
        _part("sphere", (0, 0, -0.55), (0.5,) * 3, ico),
        _part("sphere", (0, 0, 0.15), (0.35,) * 3, ico),
        _part("sphere", (0, 0, 0.6), (0.22,) * 3, ico),
        _part("cone", (0, -0.3, 0.6), (0.05, 0.05, 0.15), {"segments": 8}, rotate=_RX),
    )


MESHES = {
    "table.obj": _table, "chair.ply": _chair, "mug.glb": _mug, "arch.stl": _arch, "stairs.obj": _stairs,
    "dumbbell.ply": _dumbbell, "lamp.glb": _lamp, "jack.stl": _jack, "bottle.obj": _bottle,
    "mushroom.ply": _mushroom, "bench.stl": _bench, "letter_t.glb": _letter_t, "snowman.obj": _snowman,
}  # fmt: skip


def write_obj(path: Path, v: np.ndarray, f: np.ndarray) -> None:
    lines = ["# made by focalstack.assets.make_bundled"]
    lines += [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in v]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def write_ply(path: Path, v: np.ndarray, f: np.ndarray) -> None:
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment made by focalstack.assets.make_bundled\n"
        f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    faces = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", 3)])
    faces["n"], faces["i"] = 3, f
    path.write_bytes(header.encode("ascii") + v.astype("<f4").tobytes() + faces.tobytes())


def write_stl(path: Path, v: np.ndarray, f: np.ndarray) -> None:
    tri = v[f].astype(np.float64)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    rec = np.zeros(len(f), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    rec["n"], rec["v"] = n, tri
    header = b"made by focalstack.assets.make_bundled".ljust(80, b" ")
    path.write_bytes(header + struct.pack("<I", len(f)) + rec.tobytes())


def write_glb(path: Path, v: np.ndarray, f: np.ndarray) -> None:
    pos = v.astype("<f4").tobytes()
    idx = f.astype("<u4").tobytes()
    gltf = {
        "asset": {"version": "2.0", "generator": "focalstack.assets.make_bundled"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 4}]}],
        "buffers": [{"byteLength": len(pos) + len(idx)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(pos), "target": 34962},
                        {"buffer": 0, "byteOffset": len(pos), "byteLength": len(idx), "target": 34963}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": len(v), "type": "VEC3",
                       "min": [float(x) for x in v.min(0)], "max": [float(x) for x in v.max(0)]},
                      {"bufferView": 1, "componentType": 5125, "count": f.size, "type": "SCALAR"}],
    }  # fmt: skip
    text = json.dumps(gltf, separators=(",", ":")).encode("ascii")
    text += b" " * (-len(text) % 4)
    binary = pos + idx
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(binary), 0x004E4942) + binary
    path.write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body)


WRITERS = {".obj": write_obj, ".ply": write_ply, ".stl": write_stl, ".glb": write_glb}


# --------------------------------------------------------------------------------------------------
# Textures: tileable grey patterns, 64 x 64 (the renderer tints them with two colours)
# --------------------------------------------------------------------------------------------------

N = 64


def _grid():
    y, x = np.meshgrid(np.arange(N) / N, np.arange(N) / N, indexing="ij")
    return x, y


def _periodic_noise(g: np.random.Generator, falloff: float = 2.0, cutoff: int = 12) -> np.ndarray:
    """Tileable noise: random phases on a 1/f**falloff spectrum, via the inverse FFT."""
    k = np.fft.fftfreq(N) * N
    kk = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    amp = np.where((kk > 0) & (kk <= cutoff), 1.0 / np.maximum(kk, 1) ** falloff, 0.0)
    spec = amp * np.exp(2j * np.pi * g.random((N, N)))
    img = np.real(np.fft.ifft2(spec))
    return (img - img.min()) / (img.max() - img.min() + 1e-12)


def _torus_dist(x, y, px, py):
    dx = np.abs(x[..., None] - px) % 1.0
    dy = np.abs(y[..., None] - py) % 1.0
    return np.hypot(np.minimum(dx, 1 - dx), np.minimum(dy, 1 - dy))


def _stripes(g):
    x, y = _grid()
    a, b = g.integers(1, 5, 2)
    return 0.5 + 0.5 * np.tanh(4 * np.sin(2 * np.pi * (a * x + b * y)))


def _dots(g):
    x, y = _grid()
    n = int(g.integers(3, 7))
    d = np.hypot((x * n) % 1 - 0.5, (y * n + 0.5 * (np.floor(x * n) % 2)) % 1 - 0.5)
    return (d > g.uniform(0.2, 0.4)).astype(float)


def _plaid(g):
    x, y = _grid()
    a, b = g.integers(2, 6, 2)
    return 0.5 * (0.5 + 0.5 * np.sin(2 * np.pi * a * x)) + 0.5 * (0.5 + 0.5 * np.sin(2 * np.pi * b * y)) ** 3


def _marble(g):
    x, y = _grid()
    n = _periodic_noise(g, 1.5)
    return 0.5 + 0.5 * np.sin(2 * np.pi * (int(g.integers(1, 4)) * x + 3.0 * n))


def _cells(g):
    x, y = _grid()
    pts = g.random((2, int(g.integers(6, 16))))
    d = np.sort(_torus_dist(x, y, pts[0], pts[1]), axis=-1)
    return np.clip((d[..., 1] - d[..., 0]) * 8, 0, 1)  # dark cracks between cells


def _rings(g):
    x, y = _grid()
    d = _torus_dist(x, y, np.array([0.5]), np.array([0.5]))[..., 0]
    return 0.5 + 0.5 * np.sin(2 * np.pi * (int(g.integers(4, 9)) * d * 2 + 0.5 * _periodic_noise(g)))


def _checks_noise(g):
    x, y = _grid()
    n = int(g.integers(2, 5))
    return 0.6 * ((np.floor(x * 2 * n) + np.floor(y * 2 * n)) % 2) + 0.4 * _periodic_noise(g, 1.0, 24)


def _weave(g):
    x, y = _grid()
    n = int(g.integers(3, 6))
    cx, cy = np.floor(x * n), np.floor(y * n)
    horiz = (cx + cy) % 2 == 0
    fx, fy = (x * n) % 1, (y * n) % 1
    return np.where(horiz, np.sin(np.pi * fy) ** 0.5, np.sin(np.pi * fx) ** 0.5) * (0.7 + 0.3 * _periodic_noise(g, 1.0, 30))


def _chevron(g):
    x, y = _grid()
    a, b = (int(k) for k in g.integers(2, 9, 2))
    return ((np.abs((x * a) % 1 - 0.5) * 2 + y * b) % 1 > g.uniform(0.3, 0.7)).astype(float)


def _clouds(g):
    return _periodic_noise(g, float(g.uniform(1.0, 2.5)), 24)


def _scales(g):
    x, y = _grid()
    n = int(g.integers(3, 7))
    row = np.floor(y * n)
    fx, fy = (x * n + 0.5 * (row % 2)) % 1 - 0.5, (y * n) % 1
    return np.clip(1.2 - np.hypot(fx, fy) * 1.6, 0, 1)


def _glyphs(g):
    img = np.ones((N, N))
    cell = N // 8
    for i in range(8):
        for j in range(8):
            for _ in range(int(g.integers(1, 4))):
                y0, x0 = i * cell + g.integers(1, cell - 2), j * cell + g.integers(1, cell - 2)
                img[y0 : y0 + int(g.integers(1, 3)), x0 : x0 + int(g.integers(1, cell - 2))] = 0.1
                img[y0 : y0 + int(g.integers(1, cell - 2)), x0 : x0 + 1] = 0.1
    return img


TEXTURES = {
    "stripes": _stripes, "dots": _dots, "plaid": _plaid, "marble": _marble, "cells": _cells, "rings": _rings,
    "checks_noise": _checks_noise, "weave": _weave, "chevron": _chevron, "clouds": _clouds, "scales": _scales,
    "glyphs": _glyphs,
}  # fmt: skip
TEXTURE_VARIANTS = 2  # of each pattern, from different seeds
JPEG_PATTERNS = ("marble", "clouds", "rings")  # photographic-looking ones as JPEG


# --------------------------------------------------------------------------------------------------
# Environment maps: equirectangular 64 x 32 Radiance HDR (linear RGB), rows from zenith to nadir
# --------------------------------------------------------------------------------------------------


def _equirect_dirs(w: int = 64, h: int = 32) -> np.ndarray:
    lon = (np.arange(w) + 0.5) / w * 2 * np.pi - np.pi
    lat = np.pi / 2 - (np.arange(h) + 0.5) / h * np.pi
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], -1)  # Z up


def _blob(d, centre, width):
    c = np.asarray(centre, float) / np.linalg.norm(centre)
    return np.exp((d @ c - 1.0) / width)


def _env_sky(g):
    d = _equirect_dirs()
    up = np.clip(d[..., 2], 0, 1)[..., None]
    sky = (1 - up) * np.array([0.8, 0.85, 0.9]) + up * np.array([0.25, 0.45, 0.9])
    ground = np.array([0.25, 0.22, 0.18])
    img = np.where(d[..., 2:3] >= 0, sky, ground)
    sun_dir = [np.cos(g.uniform(0, 6.28)), np.sin(g.uniform(0, 6.28)), g.uniform(0.3, 0.9)]
    return img + 40.0 * _blob(d, sun_dir, 0.002)[..., None] * np.array([1.0, 0.95, 0.85])


def _env_studio(g):
    d = _equirect_dirs()
    img = np.full(d.shape, 0.05) + 0.05 * np.clip(d[..., 2:3], 0, 1)
    for _ in range(3):
        c = [g.normal(), g.normal(), abs(g.normal()) + 0.3]
        img = img + g.uniform(3, 8) * _blob(d, c, 0.03)[..., None]
    return img


def _env_room(g):
    d = _equirect_dirs()
    wall = np.array([0.6, 0.55, 0.5]) * 0.3
    img = np.broadcast_to(wall, d.shape).copy()
    img[d[..., 2] < -0.3] = np.array([0.25, 0.18, 0.12])  # floor
    az = g.uniform(0, 2 * np.pi)
    lon = np.arctan2(d[..., 1], d[..., 0])
    window = (np.abs(np.angle(np.exp(1j * (lon - az)))) < 0.5) & (d[..., 2] > -0.1) & (d[..., 2] < 0.5)
    img[window] = np.array([4.0, 4.3, 5.0])
    return img


ENVMAPS = {"sky_a": _env_sky, "sky_b": _env_sky, "studio": _env_studio, "room": _env_room}


# --------------------------------------------------------------------------------------------------


def default_out() -> Path:
    return Path(__file__).resolve().parent / "data"


def make_all(out: Path) -> list[Path]:
    import cv2

    written = []
    for sub in ("meshes", "textures", "envmaps"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for name, fn in MESHES.items():
        v, f = fn()
        path = out / "meshes" / name
        WRITERS[path.suffix](path, v, f)
        written.append(path)
    for k, (name, fn) in enumerate(TEXTURES.items()):
        for variant in range(TEXTURE_VARIANTS):
            img = fn(np.random.default_rng([k, variant, 0xA55E7]))
            img8 = np.clip(np.round(255 * (0.1 + 0.8 * img)), 0, 255).astype(np.uint8)
            if name in JPEG_PATTERNS:
                path = out / "textures" / f"{name}_{variant}.jpg"
                ok, data = cv2.imencode(".jpg", img8, [cv2.IMWRITE_JPEG_QUALITY, 90])
            else:
                path = out / "textures" / f"{name}_{variant}.png"
                ok, data = cv2.imencode(".png", img8, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            assert ok
            path.write_bytes(data.tobytes())
            written.append(path)
    for k, (name, fn) in enumerate(ENVMAPS.items()):
        img = fn(np.random.default_rng([k, 0xE4F]))
        ok, data = cv2.imencode(".hdr", np.ascontiguousarray(img[..., ::-1], dtype=np.float32))
        assert ok
        path = out / "envmaps" / f"{name}.hdr"
        path.write_bytes(data.tobytes())
        written.append(path)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_out(), help="folder to write (default: the package's assets/data)")
    args = parser.parse_args(argv)
    from .catalogue import asset_split, file_sha256

    total = 0
    for path in make_all(args.out):
        size = path.stat().st_size
        total += size
        print(f"{asset_split(file_sha256(path)):5s}  {size:7d} B  {path.relative_to(args.out)}")
    print(f"{total} bytes in all")


if __name__ == "__main__":
    main()
