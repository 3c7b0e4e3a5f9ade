"""Where a Cycles sample's time goes: the all-in-focus render of real scenes with one setting changed at a time.

Prints figures; asserts nothing. Run from the repository root with the project's venv:

    python benchmarks/sample_cost_bench.py --preset fod500 --resolution 256 --scenes 4

Per scene, after one untimed render (scene sync, BVH), every variant renders the same DoF-off view in turns
(so the machine's load falls on all alike), and the script prints the median seconds per render, the ratio
to ``full`` and the image's mean linear value (a setting that changes the picture reached Cycles):

- ``spp1``, ``spp4``, ``full`` (16 samples): the fixed cost of a render and the cost of one sample;
- ``bounces2``, ``bounces0``: max_bounces 2 and 0 (direct light only) instead of the renderer's 6;
- ``no_light_tree``: Cycles' light tree off;
- ``no_bump``: every Bump node muted (bump evaluates its height texture several times);
- ``plain``: every material replaced by one untextured material (Blender's default Principled BSDF);
- ``plain_bounces0``: both: what a sample costs with no shading and no bounces (camera ray, BVH, light
  sampling, film).

Only ``full`` is what focalstack renders; the others change the picture and are for finding the cost.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np

from focalstack.render.blender import BlenderRenderer
from focalstack.render.config import RENDER_SETTINGS_V0, load_preset
from focalstack.render.sampling import sample_scene, scene_seed

VARIANTS = ("spp1", "spp4", "full", "bounces2", "bounces0", "no_light_tree", "no_bump", "plain", "plain_bounces0")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="fod500")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=16, help="samples of every variant but spp1 and spp4 (at least 2)")
    args = ap.parse_args()
    if args.samples < 2:  # the cost of one sample is the slope from 1 sample to --samples
        ap.error(f"--samples {args.samples}: expected at least 2")
    return args


def render_variant(renderer, name: str, samples: int) -> tuple[float, float]:
    """Seconds and mean linear value of the current scene's DoF-off render with ``name``'s change, undone after."""
    import bpy

    scene = bpy.context.scene
    cyc, layer = scene.cycles, scene.view_layers[0]
    saved = cyc.samples, cyc.max_bounces, cyc.use_light_tree, layer.material_override
    bumps = [n for m in bpy.data.materials if m.node_tree for n in m.node_tree.nodes if n.bl_idname == "ShaderNodeBump"]
    cyc.samples = {"spp1": 1, "spp4": 4}.get(name, samples)
    if name in ("bounces2", "bounces0", "plain_bounces0"):
        cyc.max_bounces = 2 if name == "bounces2" else 0
    if name == "no_light_tree":
        cyc.use_light_tree = False
    if name == "no_bump":
        for node in bumps:
            node.mute = True
    if name.startswith("plain"):
        plain = bpy.data.materials.get("focalstack_bench_plain") or bpy.data.materials.new("focalstack_bench_plain")
        layer.material_override = plain  # a new material: the default Principled BSDF, no textures
    try:
        t = time.perf_counter()
        passes = renderer._render_to(name)
        seconds = time.perf_counter() - t
    finally:
        cyc.samples, cyc.max_bounces, cyc.use_light_tree, layer.material_override = saved
        for node in bumps:
            node.mute = False
    return seconds, float(np.mean(passes["Combined"][..., :3]))


def main() -> None:
    args = parse_args()
    config = load_preset(args.preset).with_overrides(width=args.resolution, height=args.resolution).validate()
    seconds = {v: [] for v in VARIANTS}
    means = {v: [] for v in VARIANTS}
    with BlenderRenderer(**replace(RENDER_SETTINGS_V0, samples=args.samples, denoise=False).to_dict()) as renderer:
        for i in range(args.scenes):
            desc = sample_scene(config, scene_seed(args.seed, i))
            renderer._build(desc)
            renderer._set_focus(desc, None)
            renderer._render_to("warm_up")  # scene sync and BVH: a fixed cost per scene, not per sample
            for name in VARIANTS:
                s, m = render_variant(renderer, name, args.samples)
                seconds[name].append(s)
                means[name].append(m)
            renderer._clear_scene()
            print(f"  scene {i}: " + ", ".join(f"{v} {seconds[v][-1]:.2f}" for v in VARIANTS), flush=True)
    full = statistics.median(seconds["full"])
    print(
        f"\n# {args.preset}, {args.resolution} px, {args.scenes} scene(s), DoF-off render, {args.samples} samples "
        "unless named; median seconds per render (after the scene's first render)"
    )
    print(f"  {'variant':16s}{'seconds':>9s}{'x full':>8s}{'mean value':>12s}")
    for name in VARIANTS:
        med = statistics.median(seconds[name])
        print(f"  {name:16s}{med:9.2f}{med / full:8.2f}{statistics.median(means[name]):12.4f}")
    s1 = statistics.median(seconds["spp1"])
    per_sample = (full - s1) / (args.samples - 1)
    print(
        f"  one sample: {per_sample:.3f} s (the slope from 1 to {args.samples} samples); fixed per render: "
        f"{s1 - per_sample:.3f} s"
    )


if __name__ == "__main__":
    main()
