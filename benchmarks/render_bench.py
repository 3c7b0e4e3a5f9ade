"""Render benchmark: seconds per scene by phase, peak memory, memory growth, and noise (PSNR).

Prints figures; asserts nothing. Run from the repository root with the project's venv:

    python benchmarks/render_bench.py                      # defaults of the fod500 preset, 256 x 256
    python benchmarks/render_bench.py --samples 16 --no-denoise --scenes 3

Sections:
1. timing: renders --scenes scenes (5 slices + AiF + depth) with the preset's settings, and prints the
   median seconds per phase and per scene;
2. noise: renders the AiF and the nearest-focus slice of one scene at the tested settings and at
   --reference-samples (no denoiser), and prints the PSNR of the 8-bit sRGB images against the reference;
3. memory: renders --growth-scenes scenes in this process (at --growth-resolution, since leaks are in
   Blender data, not pixels) and prints resident memory after the warm-up and at the end.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np

from focalstack.dataset.colour import linear_to_srgb8
from focalstack.render.blender import BlenderRenderer
from focalstack.render.config import load_preset
from focalstack.render.pipeline import make_record
from focalstack.render.sampling import sample_scene, scene_seed


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="fod500")
    ap.add_argument("--resolution", type=int, default=None, help="square size; default: the preset's")
    ap.add_argument("--samples", type=int, default=None, help="default: the preset's")
    ap.add_argument("--denoise", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--scenes", type=int, default=3, help="scenes timed")
    ap.add_argument("--reference-samples", type=int, default=512)
    ap.add_argument("--skip-noise", action="store_true")
    ap.add_argument("--noise-scenes", type=int, default=3, help="scenes whose noise is measured")
    ap.add_argument("--noise-samples", type=lambda t: [int(x) for x in t.split(",")], default=[],
                    help="more sample counts to compare in the noise section, e.g. 8,16,64")
    ap.add_argument("--noise-both", action="store_true", help="compare each with and without the denoiser")
    ap.add_argument("--growth-scenes", type=int, default=50)
    ap.add_argument("--growth-resolution", type=int, default=64)
    ap.add_argument("--growth-samples", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args()

    config = load_preset(args.preset)
    overrides = {"samples": args.samples, "denoise": args.denoise}
    if args.resolution:
        overrides.update(width=args.resolution, height=args.resolution)
    config = config.with_overrides(**overrides).validate()
    print(f"preset {config.preset}: {config.width}x{config.height}, {len(config.focus_distances)} slices, "
          f"{config.samples} samples, denoise={config.denoise}")

    # 1. timing
    phases: dict[str, list[float]] = {}
    totals = []
    with BlenderRenderer(samples=config.samples, denoise=config.denoise) as r:
        for i in range(args.scenes):
            t0 = time.perf_counter()
            desc = sample_scene(config, scene_seed(args.seed, i))
            t1 = time.perf_counter()
            rendered = r.render(desc)
            t2 = time.perf_counter()
            make_record(desc, rendered, config)
            t3 = time.perf_counter()
            for k, v in {"sample": t1 - t0, **rendered.seconds, "ground_truth": t3 - t2}.items():
                phases.setdefault(k, []).append(v)
            totals.append(t3 - t0)
    print(f"\n## timing over {args.scenes} scene(s) (median seconds)")
    for k, v in phases.items():
        print(f"  {k:18s} {statistics.median(v):8.3f}")
    n_images = len(config.focus_distances) + 1
    print(f"  {'per scene':18s} {statistics.median(totals):8.3f}   ({statistics.median(totals) / n_images:.2f} s per image)")
    print(f"  peak RSS so far    {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.0f} MB")

    # 2. noise against high-sample references of the same scenes
    if not args.skip_noise:
        descs, refs = [], []
        t = time.perf_counter()
        with BlenderRenderer(samples=args.reference_samples, denoise=False) as r:
            for i in range(args.noise_scenes):
                desc = sample_scene(config, scene_seed(args.seed, i))
                near = int(np.argmin(desc.camera.focus_distances))  # the strongest blur of the stack
                desc.camera.slices = [desc.camera.slices[near]]
                ref = r.render(desc)
                descs.append(desc)
                refs.append((linear_to_srgb8(ref.aif), linear_to_srgb8(ref.slices[0])))
        print(f"\n## noise: PSNR (8-bit sRGB) of the AiF image and the nearest-focus slice of {args.noise_scenes} "
              f"scene(s) against {args.reference_samples}-sample renders without denoiser "
              f"({time.perf_counter() - t:.0f} s)")
        print(f"  {'samples':>7s} {'denoise':>7s} {'min dB':>7s} {'median dB':>9s} {'s/image':>8s}")
        settings = [(config.samples, config.denoise)]
        for n in args.noise_samples:
            for dn in (True, False) if args.noise_both else (config.denoise,):
                if (n, dn) not in settings:
                    settings.append((n, dn))
        for n, dn in settings:
            scores, seconds = [], []
            with BlenderRenderer(samples=n, denoise=dn) as r:
                r.render(descs[0])  # warm-up: the first render of a process loads kernels
                for desc, (ref_aif, ref_slice) in zip(descs, refs):
                    t = time.perf_counter()
                    test = r.render(desc)
                    seconds.append((time.perf_counter() - t) / 2)
                    scores += [psnr(linear_to_srgb8(test.aif), ref_aif), psnr(linear_to_srgb8(test.slices[0]), ref_slice)]
            mark = "  <- preset" if (n, dn) == (config.samples, config.denoise) else ""
            print(f"  {n:7d} {str(dn):>7s} {min(scores):7.2f} {statistics.median(scores):9.2f} "
                  f"{statistics.median(seconds):8.2f}{mark}")

    # 3. memory growth over many scenes in one process
    if args.growth_scenes:
        small = config.with_overrides(width=args.growth_resolution, height=args.growth_resolution)
        warmup = min(5, args.growth_scenes // 2)
        rss = []
        with BlenderRenderer(samples=args.growth_samples, denoise=config.denoise) as r:
            for i in range(args.growth_scenes):
                desc = sample_scene(small, scene_seed(args.seed + 1, i))
                make_record(desc, r.render(desc), small)
                rss.append(rss_mb())
        print(f"\n## memory over {args.growth_scenes} scenes at {args.growth_resolution}px "
              f"({args.growth_samples} samples)")
        print(f"  RSS after {warmup} warm-up scenes {rss[warmup - 1]:8.1f} MB")
        print(f"  RSS after {args.growth_scenes} scenes        {rss[-1]:8.1f} MB")
        print(f"  growth                     {rss[-1] - rss[warmup - 1]:8.1f} MB")
        print(f"  peak RSS                   {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.0f} MB")


if __name__ == "__main__":
    main()
