"""What depth a checkpoint reads from blur alone: textured fronto-parallel planes at known depths, each slice
blurred with the disk that the optics give for the checkpoint's own training camera (the trainer tests'
synthetic scenes, not Blender), and the median depth the network predicts for each.

    python benchmarks/plane_depth.py fod-depth-fod500-v0     # shipped weights by name, or a checkpoint file
    python benchmarks/plane_depth.py runs/x/last.pt --out plane-depth.md

Prints a Markdown table: true depth, the predicted median (over --seeds textures; min and max beside it), and
the blur-circle diameter in pixels of a plane at that depth in each slice, so that where the network stops
telling depths apart can be set against how little the blur changes there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEPTHS = (0.12, 0.2, 0.3, 0.45, 0.7, 1.0, 1.5, 2.2)


def measure(checkpoint: str, depths=DEPTHS, seeds: int = 4) -> tuple[dict, list[dict]]:
    """(camera, rows): per depth the predicted medians over ``seeds`` textures and the slices' blur (px)."""
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from train_fixtures import synthetic_scene  # the disk-blur planes of the trainer's tests

    from focalstack.dataset.optics import blur_diameter_px
    from focalstack.train.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model, norm = model_from_checkpoint(ckpt, checkpoint)
    model.eval()
    cam = ckpt["camera"]
    width = cam["image_size"][1]
    focus = tuple(cam["focus_distances"])
    optics = {k: cam[k] for k in ("f_number", "focal_length_mm", "sensor_width_mm")}
    rows = []
    for z in depths:
        preds = []
        for seed in range(seeds):
            rec = synthetic_scene(np.random.default_rng(seed), width, focus, optics, (z, z))
            stack = torch.from_numpy(rec.stack.astype(np.float32) / 255).permute(0, 3, 1, 2)[None]
            with torch.no_grad():
                out = model(stack, norm.focus(torch.tensor(focus, dtype=torch.float32)[None]))
            preds.append(float(np.median(norm.physical(out)["depth_m"][0].numpy())))
        blur = [
            float(
                blur_diameter_px(
                    np.float64(z), s, optics["f_number"], optics["focal_length_mm"], optics["sensor_width_mm"], width
                )
            )
            for s in focus
        ]
        rows.append({"depth_m": z, "predicted_m": preds, "blur_px": blur})
    return cam, rows


def table(cam: dict, rows: list[dict]) -> str:
    focus = cam["focus_distances"]
    lines = [
        "| true depth (m) | predicted, median (m) | min - max (m) | " + " | ".join(f"blur at {s:g} m (px)" for s in focus) + " |",
        "|---:|---:|---:|" + "---:|" * len(focus),
    ]
    for r in rows:
        p = r["predicted_m"]
        lines.append(
            f"| {r['depth_m']:g} | {np.median(p):.3f} | {min(p):.3f} - {max(p):.3f} | "
            + " | ".join(f"{b:.2f}" for b in r["blur_px"])
            + " |"
        )
    return "\n".join(lines) + "\n"


def card_section(checkpoint: str, name: str) -> list[str]:
    """The model cards' section on this measurement (benchmarks/ship_weights.py and gpu_proof.py cards)."""
    return [
        "## Depth from blur alone",
        "",
        "Textured fronto-parallel planes at known depths, each slice blurred with the disk that the optics give "
        "for this camera (the trainer tests' synthetic scenes, not Blender), and the median depth predicted "
        f"(`python benchmarks/plane_depth.py {name}`). The blur columns (px, negative in front of the focal plane) "
        "show how little the slices change between far depths.",
        "",
        table(*measure(checkpoint)),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", help="a checkpoint file or the name of shipped weights")
    ap.add_argument("--seeds", type=int, default=4, help="textures per depth [4]")
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error(f"--seeds {args.seeds}: expected at least 1")
    if args.out is not None and not args.out.parent.is_dir():  # found before the work, not after it
        ap.error(f"--out {args.out}: folder {args.out.parent} does not exist")
    from focalstack.train.checkpoint import CheckpointError

    try:
        cam, rows = measure(args.checkpoint, seeds=args.seeds)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = table(cam, rows)
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
