"""HDF5 storage of scenes: bytes per scene by dataset, write and read time per scene, for schema v1's
layout and schema v2's candidates side by side on the same scenes.

Scenes come from focalstack files (``--from``, repeatable: real renders) or are synthetic stand-ins.
Each layout writes ``--scenes`` scenes (cycling through the inputs) with ``FocalStackWriter`` into a
fresh file and reads every scene back with ``FocalStackFile[i]``, the call the trainer's loader makes:

- v1: what the writer did before schema v2: every ground-truth array stored, gzip 6 + shuffle, one
  chunk per scene;
- v2 candidates: defocus maps recomputed by readers (not stored), images chunked one colour channel per
  chunk ("planar") under gzip or szip, or interleaved as before.

Printed per layout: stored kB per scene by dataset and the file's total (file size / scenes, heap and
metadata included), write ms per scene (append + flush), and read ms per scene: the median over
``--repeat`` passes, each on a freshly opened file in a random order, so every chunk is decoded (the
page cache is warm, as for a trainer whose data set fits in memory); the layouts take turns pass by
pass, so that other work on the machine slows them alike. Reading is single-threaded, so
read ms is the decode time per scene per core: 16 cores decode 16 x 1000 / ms scenes per second.

The synthetic scenes stand in for renders: a tilted back wall and 25 objects (ellipses with curved
depth, rectangles with tilted planes) painted back to front, each textured with noise blurred at
several scales, stripes or a checker, with shading and 8-bit render noise; slices blur the AiF image
by each pixel's defocus (layered Gaussian blurs), and defocus and edges come from dataset/ as in
rendering.

    python benchmarks/compression_bench.py --from data/real.h5 --from data/walls.h5 [--scenes 128]
    python benchmarks/compression_bench.py                     # synthetic scenes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np

from focalstack.dataset import FocalStackFile, FocalStackWriter, SceneRecord, optics
from focalstack.dataset.colour import linear_to_srgb8
from focalstack.dataset.groundtruth import canny_edges, stored_defocus_maps
from focalstack.dataset.provenance import rendered_declaration
from focalstack.dataset.storage import STORAGE, UNCHECKED_STORAGE, V1_STORAGE, Storage

FOCUS = (0.1, 0.15, 0.3, 0.7, 1.5)
CAMERA = dict(f_number=1.0, focal_length_mm=2.9, sensor_width_mm=3.1)
PER_PIXEL = ("stack", "aif", "depth", "defocus", "edges")
GZIP6 = {"compression": "gzip", "compression_opts": 6}
SZIP = {"compression": "szip", "compression_opts": ("nn", 8)}  # storage.SZIP_NN8


def _images(filters: dict, planar: bool) -> dict:
    return {name: Storage(filters, planar=planar) for name in ("stack", "aif")}


# label -> (defocus stored?, storage table)
LAYOUTS = {
    "v1 gzip6+shuffle": (True, V1_STORAGE),
    "v2 gzip6+sh interleaved": (False, V1_STORAGE),
    "v2 gzip6 planar": (False, {**V1_STORAGE, **_images(GZIP6, True)}),
    "v2 lzf planar": (False, {**V1_STORAGE, **_images({"compression": "lzf"}, True)}),
    "v2 szip interleaved": (False, {**V1_STORAGE, **_images(SZIP, False)}),
    "v2 szip32 planar": (False, {**V1_STORAGE, **_images({"compression": "szip", "compression_opts": ("nn", 32)}, True)}),
    "v2 szip planar (no checksums)": (False, UNCHECKED_STORAGE),
    "v2 szip planar + fletcher32 (chosen)": (False, STORAGE),
}


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
def _attrs(model: str) -> dict:
    return {
        "generator_version": "bench",
        "blender_version": "-",
        "created_utc": "2000-01-01T00:00:00Z",
        "preset": "bench",
        "config": {"bench": True},
        "defocus_model": model,
    }


def write_layout(records: list[SceneRecord], store_defocus: bool, table: dict, n: int, path: Path) -> dict:
    """Write ``n`` scenes (cycling through ``records``) in one layout; sizes and write times."""
    s, h, w = records[0].stack.shape[:3]
    model = "cycles"
    write_ms = []
    with FocalStackWriter.create(
        path,
        n_slices=s,
        height=h,
        width=w,
        attrs=_attrs(model),
        ground_truth=rendered_declaration(model, store_defocus=store_defocus),
        storage=table,
    ) as writer:
        for i in range(n):
            t = time.perf_counter()
            writer.append(records[i % len(records)])
            write_ms.append((time.perf_counter() - t) * 1e3)
    out = {"file_kB": path.stat().st_size / n / 1e3, "write_ms": statistics.median(write_ms), "read_ms": []}
    with h5py.File(path, "r") as f:
        out["kB"] = {name: f[name].id.get_storage_size() / n / 1e3 for name in PER_PIXEL if name in f}
    return out


def read_pass(path: Path, records: list[SceneRecord], seed: int) -> list[float]:
    """Read every scene once from a freshly opened file, in a random order; ms per scene."""
    times = []
    with FocalStackFile(path) as f:
        order = np.random.default_rng(seed).permutation(len(f))
        for i in order:
            t = time.perf_counter()
            rec = f[int(i)]
            times.append((time.perf_counter() - t) * 1e3)
    want = records[int(order[-1]) % len(records)]
    for name in PER_PIXEL:  # the layout changes nothing a reader sees
        assert np.array_equal(getattr(rec, name), getattr(want, name)), name
    return times


def load_records(sources: list[str], limit: int) -> list[SceneRecord]:
    """Scenes of the files, each with the defocus maps the renderer stores now (from the float32 values)."""
    records = []
    for source in sources:
        with FocalStackFile(source) as f:
            for i in range(min(limit, len(f))):
                rec = f[i]
                rec.defocus = stored_defocus_maps(
                    rec.depth,
                    rec.focus_distance,
                    rec.f_number,
                    rec.focal_length_mm,
                    rec.sensor_width_mm,
                    f.attrs.get("defocus_model", "cycles"),
                )
                records.append(rec)
    return records


def synthetic_records(n: int, size: int, slices: int) -> list[SceneRecord]:
    focus = np.float32(np.geomspace(0.1, 1.5, slices) if slices != 5 else FOCUS)
    out = []
    for seed in range(n):
        sc = synthetic_scene(seed, size, focus)
        depth = sc["depth"]
        out.append(
            SceneRecord(
                sc["stack"],
                sc["aif"],
                depth,
                stored_defocus_maps(depth, focus, *CAMERA.values(), "cycles"),
                sc["edges"],
                focus,
                *CAMERA.values(),
                seed,
                json.dumps({"synthetic": seed}),
            )
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--from",
        dest="sources",
        action="append",
        default=[],
        help="focalstack file whose scenes to use (repeatable); default: synthetic scenes",
    )
    ap.add_argument("--distinct", type=int, default=8, help="scenes taken from each file, or synthetic scenes")
    ap.add_argument("--scenes", type=int, default=128, help="scenes written per layout (cycling the inputs)")
    ap.add_argument("--repeat", type=int, default=3, help="read passes per layout; the median scene counts")
    ap.add_argument("--size", type=int, default=256, help="synthetic scenes: image size")
    ap.add_argument("--slices", type=int, default=5, help="synthetic scenes: slices")
    ap.add_argument("--layouts", default=",".join(LAYOUTS), help="comma-separated subset of the layouts")
    args = ap.parse_args()
    unknown = [label for label in args.layouts.split(",") if label not in LAYOUTS]
    if unknown:  # before any scene is loaded or made
        ap.error(f"--layouts {','.join(unknown)}: expected some of {', '.join(LAYOUTS)}")

    t = time.perf_counter()
    if args.sources:
        records = load_records(args.sources, args.distinct)
        what = f"{len(records)} scenes from {', '.join(args.sources)}"
    else:
        records = synthetic_records(args.distinct, args.size, args.slices)
        what = f"{len(records)} synthetic scenes"
    s, h, w = records[0].stack.shape[:3]
    print(
        f"{what}: {w}x{h}, {s} slices (loaded in {time.perf_counter() - t:.1f} s); {args.scenes} scenes written "
        f"per layout, read {args.repeat} times; {os.cpu_count()} CPU(s), one thread"
    )
    raw = {name: getattr(records[0], name).nbytes / 1e3 for name in PER_PIXEL}
    scene_json = statistics.mean(len(r.scene.encode()) for r in records) / 1e3
    labels = args.layouts.split(",")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {label: Path(tmp) / f"layout{k}.h5" for k, label in enumerate(labels)}
        for label in labels:
            store, table = LAYOUTS[label]
            results[label] = write_layout(records, store, table, args.scenes, paths[label])
            print(f"  wrote {label}", flush=True)
        for rep in range(args.repeat):  # layouts take turns, so a busy moment of the machine hits them all
            for label in labels:
                results[label]["read_ms"] += read_pass(paths[label], records, rep)
        print(f"  read every layout {args.repeat} times, taking turns", flush=True)
    rows = []
    for label in labels:
        r = results[label]
        rows.append(
            (label, {**r, "read_p90_ms": float(np.percentile(r["read_ms"], 90)), "read_ms": statistics.median(r["read_ms"])})
        )
    print()
    head = f"{'layout':25}" + "".join(f"{n:>9}" for n in PER_PIXEL) + f"{'file':>9}{'write':>8}{'read':>7}{'p90':>7}"
    print(head)
    print(f"{'':25}" + "".join(f"{'kB':>9}" for _ in PER_PIXEL) + f"{'kB':>9}{'ms':>8}{'ms':>7}{'ms':>7}")
    print("-" * len(head))
    print(f"{'raw (uncompressed)':25}" + "".join(f"{raw[n]:9.1f}" for n in PER_PIXEL))
    for label, r in rows:
        sizes = "".join(f"{r['kB'][n]:9.1f}" if n in r["kB"] else f"{'-':>9}" for n in PER_PIXEL)
        print(f"{label:25}{sizes}{r['file_kB']:9.1f}{r['write_ms']:8.1f}{r['read_ms']:7.2f}{r['read_p90_ms']:7.2f}")
    print(
        f"\nfile kB: file size / scenes (includes the scene JSON, {scene_json:.1f} kB per scene on average, and "
        "the small per-scene arrays); '-': not stored (recomputed by readers)"
    )
    print("read ms: FocalStackFile[i], every array of the scene (defocus recomputed where not stored), one core")


if __name__ == "__main__":
    main()
