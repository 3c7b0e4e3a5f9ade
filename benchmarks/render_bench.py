"""Render benchmark: the default before the light field (old), today's (new) and others side by side, in one run.

Prints figures; asserts nothing. Run from the repository root with the project's venv:

    python benchmarks/render_bench.py --preset fod500 --resolution 256 --scenes 5
    python benchmarks/render_bench.py --preset all --resolution 128 --scenes 5 --skip-growth
    python benchmarks/render_bench.py --preset mirrors --references-only       # fill the reference cache
    python benchmarks/render_bench.py --settings old,new,light_field --skip-noise   # new: the preset as it is

For each preset, scenes 0..N-1 of --seed (the file's scene seeds) are rendered with every --settings
variant, one renderer per variant (its first scene once more, untimed, as warm-up):

- ``old``: today's default before this work (``config.RENDER_SETTINGS_V0``: 16 samples per image, every slice
  its own Cycles render, Cycles' in-render denoiser with the accurate prefilter);
- ``new``: the render settings of the preset as it is now (``RenderConfig.render``);
- ``light_field``: the preset's settings with the light-field keys (every key that
  ``config.RENDER_SETTINGS_LIGHT_FIELD`` sets apart from the defaults: slices = "light_field", the standalone
  denoiser, no prefilter for the AiF image; the slices then denoise at OIDN high, slice_denoise_quality "auto").

Sections:
1. time per scene (wall and process CPU seconds: this machine is shared, CPU time is the steadier
   figure) by phase, and the ratio to ``old``; bytes per scene and read time per scene of the HDF5 the
   writer produces from those renders (whatever the storage code does now);
2. noise: PSNR of the 8-bit sRGB images against 512-sample renders without denoiser (``old``'s renderer
   otherwise), per image kind (AiF, slice k), min and median over the scenes;
3. extra slices: the same scenes with 5 and with 10 focus distances (spaced evenly in dioptres over the
   preset's range), seconds per extra slice and the 10/5 ratio;
4. memory: resident memory over --growth-scenes scenes in one process (small images: leaks are in
   Blender data, not pixels), after a warm-up and at the end.

Reference renders are slow (about 90 s per 256 px image on 2 cores) and cached on disk, keyed by preset,
resolution, samples, seed and scene index, with the scene description's hash (a stale one is rendered
again): ``$FOCALSTACK_BENCH_CACHE`` or ``~/.cache/focalstack-bench/ref-v1/<preset>/``. --references-only
renders missing references and exits (resumable: run it in the background, e.g. with nohup nice); without
--render-references, a scene whose reference is missing is left out of the noise figures, and the output
says how many were used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import tempfile
import time
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import numpy as np

from focalstack.dataset import FocalStackFile
from focalstack.dataset.colour import linear_to_srgb8
from focalstack.render.blender import BlenderRenderer
from focalstack.render.config import RENDER_SETTINGS_V0, RenderSettings, builtin_presets, light_field_keys, load_preset
from focalstack.render.pipeline import make_record, open_writer
from focalstack.render.sampling import sample_scene, scene_seed

REFERENCE_SETTINGS = replace(RENDER_SETTINGS_V0, samples=512, denoise=False)


def cache_dir() -> Path:
    root = Path(os.environ.get("FOCALSTACK_BENCH_CACHE", Path.home() / ".cache" / "focalstack-bench"))
    return root / "ref-v1"


def ref_path(preset: str, res: int, spp: int, seed: int, index: int) -> Path:
    return cache_dir() / preset / f"{res}px_{spp}spp_seed{seed}_{index}.npz"


def scene_sha(desc) -> str:
    """Hash of the scene description, with the bundled assets' folder written as <assets> (a scene drawing a
    bundled mesh names its path, which differs between checkouts)."""
    import focalstack.assets

    root = str(Path(focalstack.assets.__file__).parent)
    return hashlib.sha256(desc.to_json().replace(root, "<assets>").encode()).hexdigest()


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def preset_config(preset: str, res: int):
    return load_preset(preset).with_overrides(width=res, height=res).validate()


def load_reference(path: Path, desc):
    if not path.exists():
        return None
    z = np.load(path)
    if str(z["scene_sha"]) != scene_sha(desc):
        return None  # the scene changed since: stale
    return z["aif"], z["slices"]


def render_references(config, seed: int, indices, spp: int, log) -> None:
    """Render and cache the missing references of these scenes."""
    renderer = None
    try:
        for i in indices:
            desc = sample_scene(config, scene_seed(seed, i))
            path = ref_path(config.preset, config.width, spp, seed, i)
            if load_reference(path, desc) is not None:
                continue
            if renderer is None:
                renderer = BlenderRenderer(**replace(REFERENCE_SETTINGS, samples=spp).to_dict())
            t = time.perf_counter()
            r = renderer.render(desc)
            dt = time.perf_counter() - t
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez_compressed(
                tmp,
                aif=linear_to_srgb8(r.aif),
                slices=np.stack([linear_to_srgb8(s) for s in r.slices]),
                scene_sha=scene_sha(desc),
                meta=json.dumps(
                    {"seconds": dt, "blender": version("bpy"), "settings": replace(REFERENCE_SETTINGS, samples=spp).to_dict()}
                ),
            )
            os.replace(tmp, path)
            log(f"  reference {path.name} ({config.preset}): {dt:.0f} s")
    finally:
        if renderer is not None:
            renderer.close()


def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def variants(names: list[str], config, extra: list[str] = ()) -> dict[str, RenderSettings]:
    out = {}
    for item in extra:  # NAME:BASE[:KEY=VALUE...]
        name, base, *pairs = item.split(":")
        settings = variants([base], config)[base]
        out[name] = replace(settings, **{k: parse_value(v) for k, v in (p.split("=", 1) for p in pairs)}).validate()
    for name in names:
        if name == "old":
            out[name] = RENDER_SETTINGS_V0
        elif name == "new":
            out[name] = config.render
        elif name == "light_field":
            out[name] = replace(config.render, **light_field_keys())  # the preset, by the light field
        else:
            raise SystemExit(f"--settings: unknown variant {name!r} (old, new, light_field)")
    return {n: out[n] for n in [*names, *(e.split(":")[0] for e in extra)]}


def with_focus(desc, distances):
    from focalstack.render.scene import CameraSpec

    cam = desc.camera
    camera = CameraSpec(
        cam.focal_length_mm, cam.sensor_width_mm, cam.f_number, list(distances), cam.width, cam.height, cam.defocus_model
    )
    return replace(desc, camera=camera)


def time_scenes(settings: RenderSettings, descs, config, store: Path | None = None):
    """Render every scene (after an untimed warm-up); per scene: phases (wall), wall and CPU totals and the
    8-bit images; optionally written to an HDF5 file at ``store``."""
    rows = []
    writer = open_writer(replace(config, scenes=len(descs)), store) if store is not None else None
    try:
        with BlenderRenderer(**settings.to_dict()) as renderer:
            renderer.render(descs[0])
            for desc in descs:
                t, c = time.perf_counter(), cpu_seconds()
                rendered = renderer.render(desc)
                t2 = time.perf_counter()
                record = make_record(desc, rendered, config)
                phases = {**rendered.seconds, "ground_truth": time.perf_counter() - t2}
                rows.append(
                    {
                        "phases": phases,
                        "wall": time.perf_counter() - t,
                        "cpu": cpu_seconds() - c,
                        "aif": record.aif,
                        "stack": record.stack[: len(desc.camera.slices)],
                    }
                )
                if writer is not None:
                    writer.append(record)
    finally:
        if writer is not None:
            writer.close()
    return rows


def read_seconds(path: Path) -> float:
    t = time.perf_counter()
    with FocalStackFile(path) as f:
        for i in range(len(f)):
            f[i]
        n = len(f)
    return (time.perf_counter() - t) / max(n, 1)


def summarise_noise(rows, refs):
    """{kind: [psnr per scene]} for the scenes with a reference."""
    out: dict[str, list[float]] = {}
    for row, ref in zip(rows, refs):
        if ref is None:
            continue
        out.setdefault("aif", []).append(psnr(row["aif"], ref[0]))
        for k, (img, r) in enumerate(zip(row["stack"], ref[1])):
            out.setdefault(f"slice{k}", []).append(psnr(img, r))
    return out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="fod500", help="a preset, a comma-separated list, or 'all'")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--scenes", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--settings", default="old,light_field", help="variants: old, new, light_field")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:BASE[:KEY=VALUE...]",
        help="one more variant: a named one with render settings replaced, e.g. "
        "lf8:light_field:samples=8:light_field_views=8 (repeatable)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="time every variant this many times, alternating the order (old, lf, lf, old, ...); medians pool the rounds",
    )
    ap.add_argument("--reference-samples", type=int, default=512)
    ap.add_argument("--references-only", action="store_true", help="render missing references and exit")
    ap.add_argument("--render-references", action="store_true", help="render missing references first")
    ap.add_argument("--skip-noise", action="store_true")
    ap.add_argument("--skip-slices", action="store_true", help="skip the 5 vs 10 slices section")
    ap.add_argument("--slices-scenes", type=int, default=2, help="scenes timed in the 5 vs 10 slices section")
    ap.add_argument("--skip-growth", action="store_true")
    ap.add_argument("--growth-scenes", type=int, default=200, help="scenes of the memory section (at least 2)")
    ap.add_argument("--growth-resolution", type=int, default=64)
    args = ap.parse_args()
    if not args.skip_growth and args.growth_scenes < 2:  # growth is measured after warm-up scenes
        ap.error(f"--growth-scenes {args.growth_scenes}: expected at least 2 (or --skip-growth)")
    return args


def log(text: str) -> None:
    print(text, flush=True)


TIMING_KEYS = ("phases", "wall", "cpu")  # what later rounds keep of a row (not the images)


def median_of(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def report_timing(settings: dict, descs: list, config, rounds: int = 1) -> dict:
    """Section 1: seconds per scene by phase, the ratio to the first variant, bytes and read time; with
    ``rounds`` > 1 the scenes are timed again, in alternating variant order, and every round's rows pooled
    (the images kept are the first round's: renders are deterministic)."""
    results: dict = {name: [] for name in settings}
    round_ratios = []  # per round: the first variant's median CPU seconds over each variant's
    with tempfile.TemporaryDirectory(prefix="focalstack-bench-") as tmp:
        for r in range(rounds):
            # Every other round runs the variants in reverse order, so that a machine that slows down or
            # speeds up during the run (a shared host does) weighs on every variant alike.
            order = list(settings) if r % 2 == 0 else list(reversed(settings))
            this_round = {}
            for name in order:
                store = Path(tmp) / f"{name}.h5" if r == 0 else None
                this_round[name] = time_scenes(settings[name], descs, config, store)
                if store is not None:
                    results[name + ":bytes"] = store.stat().st_size / len(descs)
                    results[name + ":read"] = read_seconds(store)
            first_cpu = median_of(this_round[next(iter(settings))], "cpu")
            round_ratios.append({name: first_cpu / median_of(rows, "cpu") for name, rows in this_round.items()})
            for name, rows in this_round.items():
                results[name] += rows if r == 0 else [{k: v for k, v in row.items() if k in TIMING_KEYS} for row in rows]
    log(
        f"\n## time per scene, median over {len(descs)} scene(s) x {rounds} round(s) (seconds; load average now "
        f"{os.getloadavg()[0]:.1f})"
    )
    phases = list(next(iter(results[n] for n in settings))[0]["phases"])
    log("  " + f"{'':12s}" + "".join(f"{p:>17s}" for p in phases) + f"{'wall':>9s}{'cpu':>9s}{'wall x':>8s}{'cpu x':>8s}")
    first = results[next(iter(settings))]
    base = {k: median_of(first, k) for k in ("wall", "cpu")}
    for name in settings:
        rows = results[name]
        med = {k: median_of(rows, k) for k in ("wall", "cpu")}
        cells = "".join(f"{statistics.median(r['phases'].get(p, 0.0) for r in rows):17.2f}" for p in phases)
        log(
            f"  {name:12s}{cells}{med['wall']:9.2f}{med['cpu']:9.2f}{base['wall'] / med['wall']:8.2f}"
            f"{base['cpu'] / med['cpu']:8.2f}"
        )
    log("  (x: how many times faster than the first variant)")
    if rounds > 1:
        for name in list(settings)[1:]:
            log(f"  {name:12s} cpu x per round: " + ", ".join(f"{rr[name]:.2f}" for rr in round_ratios))
    for name in settings:
        log(f"  {name:12s} HDF5 {results[name + ':bytes'] / 1e6:.3f} MB/scene, read {results[name + ':read'] * 1e3:.1f} ms/scene")
    return results


def report_noise(args, preset: str, settings: dict, descs: list, config, results: dict) -> None:
    """Section 2: PSNR per image kind against the cached many-sample references."""
    indices = list(range(args.scenes))
    # references looked up now: a background --references-only run may have added some
    refs = [
        load_reference(ref_path(config.preset, args.resolution, args.reference_samples, args.seed, i), d)
        for i, d in zip(indices, descs)
    ]
    used = sum(r is not None for r in refs)
    log(
        f"\n## noise: PSNR (dB, 8-bit sRGB) against {args.reference_samples}-sample renders without denoiser, "
        f"{used} of {len(refs)} scene(s) with a cached reference"
    )
    if not used:
        return
    kinds = ["aif"] + [f"slice{k}" for k in range(len(config.focus_distances))]
    log("  " + f"{'':12s}" + "".join(f"{k:>14s}" for k in kinds) + f"{'all':>14s}")
    for name in settings:
        noise = summarise_noise(results[name], refs)
        every = [v for k in kinds for v in noise[k]]
        cells = "".join(f"{min(noise[k]):6.2f}/{statistics.median(noise[k]):6.2f} " for k in kinds)
        log(f"  {name:12s}{cells}{min(every):6.2f}/{statistics.median(every):6.2f}")
    log("  (min/median over scenes; focus distances " + ", ".join(f"{s:g}" for s in config.focus_distances) + " m)")


def report_slices(args, settings: dict, descs: list, config) -> None:
    """Section 3: what each slice beyond the first costs (5 vs 10 focus distances)."""
    lo, hi = min(config.focus_distances), max(config.focus_distances)
    ten = [float(x) for x in 1.0 / np.linspace(1.0 / lo, 1.0 / hi, 10)]
    five = [float(x) for x in 1.0 / np.linspace(1.0 / lo, 1.0 / hi, 5)]
    log(
        f"\n## extra slices: 5 vs 10 focus distances, evenly in dioptres over {lo:g}-{hi:g} m "
        f"(median seconds per scene over {min(args.slices_scenes, len(descs))} scene(s))"
    )
    some = descs[: args.slices_scenes]
    for name, s in settings.items():
        t5 = time_scenes(s, [with_focus(d, five) for d in some], replace(config, focus_distances=five))
        t10 = time_scenes(s, [with_focus(d, ten) for d in some], replace(config, focus_distances=ten))
        m5 = {k: median_of(t5, k) for k in ("wall", "cpu")}
        m10 = {k: median_of(t10, k) for k in ("wall", "cpu")}
        log(
            f"  {name:12s} 5 slices {m5['wall']:6.2f} s ({m5['cpu']:6.2f} cpu), 10 slices {m10['wall']:6.2f} s "
            f"({m10['cpu']:6.2f} cpu): {(m10['wall'] - m5['wall']) / 5:5.2f} s per extra slice "
            f"({(m10['cpu'] - m5['cpu']) / 5:5.2f} cpu), 10/5 = {m10['wall'] / m5['wall']:.2f} "
            f"({m10['cpu'] / m5['cpu']:.2f} cpu)"
        )


def report_memory(args, preset: str) -> None:
    """Section 4: resident memory over many scenes rendered in one process."""
    config = preset_config(preset, args.growth_resolution)
    for name, s in variants(args.settings.split(","), config, args.variant).items():
        warmup = min(5, args.growth_scenes // 2)
        rss = []
        t = time.perf_counter()
        with BlenderRenderer(**s.to_dict()) as r:
            for i in range(args.growth_scenes):
                desc = sample_scene(config, scene_seed(args.seed + 1, i))
                make_record(desc, r.render(desc), config)
                rss.append(rss_mb())
        log(
            f"\n## memory, {name}: {args.growth_scenes} scenes of {preset} at {args.growth_resolution} px in one "
            f"process ({time.perf_counter() - t:.0f} s)"
        )
        log(
            f"  RSS after {warmup} warm-up scenes {rss[warmup - 1]:8.1f} MB, after {args.growth_scenes} "
            f"{rss[-1]:8.1f} MB: growth {rss[-1] - rss[warmup - 1]:+.1f} MB (max {max(rss):.1f} MB)"
        )


def main() -> None:
    args = parse_args()
    presets = builtin_presets() if args.preset == "all" else args.preset.split(",")
    indices = list(range(args.scenes))
    if args.references_only:
        for preset in presets:
            render_references(preset_config(preset, args.resolution), args.seed, indices, args.reference_samples, log)
        return

    log(
        f"Blender {version('bpy')}, {os.cpu_count()} CPU(s); scenes {indices} of seed {args.seed} at "
        f"{args.resolution} px; load average {os.getloadavg()[0]:.1f}"
    )
    for preset in presets:
        config = preset_config(preset, args.resolution)
        settings = variants(args.settings.split(","), config, args.variant)
        descs = [sample_scene(config, scene_seed(args.seed, i)) for i in indices]
        log(f"\n# preset {preset}: {config.width}x{config.height}, {len(config.focus_distances)} slices")
        for name, s in settings.items():
            log(f"  {name:12s} {json.dumps(s.to_dict())}")
        if args.render_references and not args.skip_noise:
            render_references(config, args.seed, indices, args.reference_samples, log)
        results = report_timing(settings, descs, config, args.rounds)
        if not args.skip_noise:
            report_noise(args, preset, settings, descs, config, results)
        if not args.skip_slices:
            report_slices(args, settings, descs, config)
    if not args.skip_growth:
        report_memory(args, presets[0])


if __name__ == "__main__":
    main()
