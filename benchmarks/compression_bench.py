"""HDF5 compression for schema-v1 files: size, write time and read time per scene.

Writes realistic synthetic scenes (256 x 256, 5 slices, the FoD500 camera) with the writer's layout
(one scene per chunk) under each of h5py's built-in filter settings and prints, per kind of array
(uint8 images: stack + aif; float32 maps: depth + defocus; uint8 edges), the stored kB per scene, the
compression ratio, and the milliseconds to write and to read one scene. Read times are from the page
cache (the file was just written), so they measure decompression, which is what a trainer pays per
sample once the data set is cached.

The synthetic scenes stand in for renders: a tilted back wall and 25 objects (ellipses with curved
depth, rectangles with tilted planes) painted back to front, each textured with noise blurred at
several scales, stripes or a checker, with shading and 8-bit render noise; slices blur the AiF image
by each pixel's defocus (layered Gaussian blurs), and defocus and edges come from dataset/ as in
rendering.

    python benchmarks/compression_bench.py [--scenes 12] [--repeat 3] [--size 256] [--slices 5]
    python benchmarks/compression_bench.py --from data/train.h5   # real renders instead
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np

from focalstack.dataset import optics
from focalstack.dataset.colour import linear_to_srgb8
from focalstack.dataset.groundtruth import canny_edges
from focalstack.dataset.writer import COMPRESSION

FOCUS = (0.1, 0.15, 0.3, 0.7, 1.5)
CAMERA = dict(f_number=1.0, focal_length_mm=2.9, sensor_width_mm=3.1)

SETTINGS = {
    "none": {},
    "lzf": {"compression": "lzf"},
    "lzf+shuffle": {"compression": "lzf", "shuffle": True},
    "gzip1": {"compression": "gzip", "compression_opts": 1},
    "gzip1+shuffle": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
    "gzip4": {"compression": "gzip", "compression_opts": 4},
    "gzip4+shuffle": {"compression": "gzip", "compression_opts": 4, "shuffle": True},
    "gzip6": {"compression": "gzip", "compression_opts": 6},
    "gzip6+shuffle": {"compression": "gzip", "compression_opts": 6, "shuffle": True},
}
GROUPS = {"images u8": ("stack", "aif"), "maps f32": ("depth", "defocus"), "edges u8": ("edges",)}


# -- synthetic scenes ---------------------------------------------------------------------------------
def _noise(rng, h, w, sigmas=(0.7, 1.5, 3, 6, 12, 24)) -> np.ndarray:
    """Texture: white noise blurred at several scales, random weights, zero mean, unit-ish range."""
    out = np.zeros((h, w))
    for s in sigmas:
        layer = cv2.GaussianBlur(rng.standard_normal((h, w)), (0, 0), s)
        out += rng.uniform(0, 1) * layer / (layer.std() + 1e-9)
    return out / (np.abs(out).max() + 1e-9)


def _texture(rng, h, w, yy, xx) -> np.ndarray:
    """An RGB albedo (H, W, 3) in [0, 1]: base colour modulated by a random procedural pattern."""
    base = rng.uniform(0.05, 0.9, 3)
    kind = rng.choice(["noise", "noise", "stripes", "checker", "flat"])
    if kind == "noise":
        pattern = _noise(rng, h, w)
    elif kind == "stripes":
        f = rng.uniform(0.05, 0.4)
        angle = rng.uniform(0, np.pi)
        pattern = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * f * 2 * np.pi)
    elif kind == "checker":
        k = rng.integers(4, 24)
        pattern = (((xx // k) + (yy // k)) % 2) * 2.0 - 1
    else:
        pattern = np.zeros((h, w))
    second = rng.uniform(0.05, 0.9, 3)
    mix = (pattern[..., None] + 1) / 2 * rng.uniform(0.2, 1.0)
    return np.clip(base * (1 - mix) + second * mix, 0, 1)


def synthetic_scene(seed: int, size: int = 256, focus=FOCUS) -> dict:
    rng = np.random.default_rng(seed)
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    depth = rng.uniform(2.5, 3.0) + rng.uniform(-0.3, 0.3) * xx / w + rng.uniform(-0.2, 0.2) * yy / h
    albedo = _texture(rng, h, w, yy, xx)
    shade = np.clip(0.6 + 0.4 * _noise(rng, h, w, sigmas=(40, 80)), 0.1, 1)
    for _ in range(25):  # far to near
        z0 = float(np.exp(rng.uniform(np.log(0.1), np.log(2.5))))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        a, b = rng.uniform(0.03, 0.25) * w, rng.uniform(0.03, 0.25) * h
        if rng.random() < 0.6:  # ellipse with a bulging (curved) depth
            r2 = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2
            mask = r2 < 1
            z = z0 - 0.3 * z0 * np.sqrt(np.clip(1 - r2, 0, 1))
            light = 0.5 + 0.5 * np.sqrt(np.clip(1 - r2, 0, 1))
        else:  # rectangle with a tilted plane
            mask = (np.abs(xx - cx) < a) & (np.abs(yy - cy) < b)
            z = z0 * (1 + rng.uniform(-0.2, 0.2) * (xx - cx) / w + rng.uniform(-0.2, 0.2) * (yy - cy) / h)
            light = np.full((h, w), rng.uniform(0.4, 1.0))
        mask &= z < depth
        depth = np.where(mask, z, depth)
        albedo = np.where(mask[..., None], _texture(rng, h, w, yy, xx), albedo)
        shade = np.where(mask, light, shade)
    depth = depth.astype(np.float32)
    linear = albedo**2.2 * shade[..., None]
    noise = lambda: rng.normal(0, 0.8 / 255, (h, w, 3))  # residual noise of a denoised render  # noqa: E731
    aif = linear_to_srgb8(np.clip(linear ** (1 / 2.2) + noise(), 0, 1) ** 2.2)
    defocus = optics.defocus_maps(depth, focus, **CAMERA)
    # Layered blur: blur the image at a ladder of diameters; each pixel takes the layer nearest its |c|.
    ladder = np.array([0, 1, 2, 3, 4, 6, 8, 11, 15, 20, 27, 36, 48])
    blurred = [linear] + [cv2.GaussianBlur(linear, (0, 0), d / 2.5) for d in ladder[1:]]
    stack = []
    for c in defocus:
        level = np.abs(np.abs(c)[..., None] - ladder).argmin(axis=-1)
        img = np.take_along_axis(np.stack(blurred), level[None, ..., None], axis=0)[0]
        stack.append(linear_to_srgb8(np.clip(img ** (1 / 2.2) + noise(), 0, 1) ** 2.2))
    return {
        "stack": np.stack(stack),
        "aif": aif,
        "depth": depth,
        "defocus": defocus,
        "edges": canny_edges(aif),
    }


# -- measurement ---------------------------------------------------------------------------------------
def measure(scenes: list[dict], setting: dict, n_scenes: int, folder: Path) -> dict:
    """Write ``n_scenes`` (cycling through ``scenes``), read them back; per-dataset bytes and times."""
    path = folder / "bench.h5"
    names = [n for g in GROUPS.values() for n in g]
    write_s = dict.fromkeys(names, 0.0)
    read_s = dict.fromkeys(names, 0.0)
    with h5py.File(path, "w") as f:
        for name in names:
            shape = scenes[0][name].shape
            f.create_dataset(
                name, shape=(n_scenes, *shape), chunks=(1, *shape), dtype=scenes[0][name].dtype, **setting
            )
        for i in range(n_scenes):
            for name in names:
                t = time.perf_counter()
                f[name][i] = scenes[i % len(scenes)][name]
                f.flush()  # forces the chunk (and its compression) out now
                write_s[name] += time.perf_counter() - t
    stored = {}
    with h5py.File(path, "r") as f:
        for name in names:
            stored[name] = f[name].id.get_storage_size()
            for i in range(n_scenes):
                t = time.perf_counter()
                f[name][i]
                read_s[name] += time.perf_counter() - t
    path.unlink()
    return {"stored": stored, "write": write_s, "read": read_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=12, help="scenes written per setting")
    ap.add_argument("--distinct", type=int, default=4, help="distinct synthetic scenes (cycled)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats per setting; the fastest counts")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--slices", type=int, default=5)
    ap.add_argument("--save-example", help="write one synthetic scene's contact sheet here (PNG)")
    ap.add_argument("--from", dest="source", help="use the first --distinct scenes of this focalstack file")
    args = ap.parse_args()
    focus = np.geomspace(0.1, 1.5, args.slices) if args.slices != 5 else FOCUS

    t = time.perf_counter()
    if args.source:
        from focalstack.dataset.reader import FocalStackFile

        with FocalStackFile(args.source) as f:
            picked = [f[i] for i in range(min(args.distinct, len(f)))]
        scenes = [{name: getattr(sc, name) for name in ("stack", "aif", "depth", "defocus", "edges")} for sc in picked]
        stack = scenes[0]["stack"]
        what = f"{len(scenes)} rendered scenes from {args.source}: {stack.shape[2]}x{stack.shape[1]}, {stack.shape[0]} slices"
    else:
        scenes = [synthetic_scene(s, args.size, focus) for s in range(args.distinct)]
        what = f"{args.distinct} synthetic scenes of {args.size}x{args.size}, {args.slices} slices"
    print(f"{what} (in {time.perf_counter() - t:.1f} s); {args.scenes} scenes written per setting, best of {args.repeat}")
    if args.save_example:
        from focalstack.dataset.preview import save_contact_sheet
        from focalstack.dataset import SceneRecord

        s = scenes[0]
        save_contact_sheet(
            SceneRecord(s["stack"], s["aif"], s["depth"], s["defocus"], s["edges"], np.asarray(focus, np.float32),
                        CAMERA["f_number"], CAMERA["focal_length_mm"], CAMERA["sensor_width_mm"], 0, "{}"),
            args.save_example,
        )
    raw = {g: sum(scenes[0][n].nbytes for n in names) for g, names in GROUPS.items()}
    n = args.scenes
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, setting in SETTINGS.items():
            runs = [measure(scenes, setting, n, Path(tmp)) for _ in range(args.repeat)]
            row = {"label": label}
            for g, names in GROUPS.items():
                row[g] = {
                    "kB": sum(runs[0]["stored"][x] for x in names) / n / 1e3,
                    "write_ms": min(sum(r["write"][x] for x in names) for r in runs) / n * 1e3,
                    "read_ms": min(sum(r["read"][x] for x in names) for r in runs) / n * 1e3,
                }
            row["total"] = {k: sum(row[g][k] for g in GROUPS) for k in ("kB", "write_ms", "read_ms")}
            rows.append(row)

    head = f"{'setting':15}"
    for g in (*GROUPS, "total"):
        head += f" | {g:^27}"
    print(head)
    sub = f"{'':15}" + " | {:>7} {:>5} {:>6} {:>6}".format("kB", "ratio", "wr ms", "rd ms") * (len(GROUPS) + 1)
    print(sub)
    print("-" * len(sub))
    raw["total"] = sum(raw.values())
    for row in rows:
        line = f"{row['label']:15}"
        for g in (*GROUPS, "total"):
            r = row[g]
            line += f" | {r['kB']:7.1f} {raw[g] / 1e3 / r['kB']:5.2f} {r['write_ms']:6.2f} {r['read_ms']:6.2f}"
        print(line)
    current = next((k for k, v in SETTINGS.items() if v == COMPRESSION), str(COMPRESSION))
    print("\nraw kB per scene: " + ", ".join(f"{g} {raw[g] / 1e3:.1f}" for g in raw))
    print(f"writer.COMPRESSION now: {current}")


if __name__ == "__main__":
    main()
