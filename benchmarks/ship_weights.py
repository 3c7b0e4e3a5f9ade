"""Ship a trained run as weights: a weights-only checkpoint in weights/ and its model card, with metrics measured
on the exported file itself beside a constant depth.

    python benchmarks/ship_weights.py --checkpoint runs/x/last.pt --name fod-depth-v0 \\
        --held-out fod500-test=data/fod500-test.h5 --held-out walls-test=data/walls-test.h5 \\
        --summary "DefocusNet + DepthNet trained on the CPU ..." --limitation "..."

What it does, in order:

1. exports the checkpoint without its optimiser state, in float16 (``checkpoint.export_weights``), to
   ``--to/NAME.pt``: the file users load by ``--checkpoint NAME``;
2. evaluates that file (not the training checkpoint: float16 is what ships) on every held-out file under
   ``dfv``, ``aifdepthnet`` and ``focalstack``, All and Random, whole images and flat regions, and the same
   for a constant depth (the mean valid depth of the run's training files, as experiments' ``constant``);
3. writes ``--to/NAME.md``: what the network is, its data (read from the training files), camera, steps,
   wall time, the metrics tables, the published rows that compare in definition, the limitations given,
   the depth it reads from disk-blurred planes (``plane_depth.py``), where its error comes from by band of
   true depth on the first held-out set and each ``--figure`` set (``depth_bands.py``), the licence, and this
   command, and ``--to/NAME.json`` with every row.

benchmarks/gpu_proof.py writes the cards of the GPU run's weights from its own report; this script is for a
run trained anywhere else (the CPU-trained ``fod-depth-v0``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROTOCOLS = ("dfv", "aifdepthnet", "focalstack")
SETTINGS = ("All", "Random")
REGIONS = ("all", "flat")
# The columns a card shows per protocol (the JSON beside it has them all).
CARD_COLUMNS = {
    "dfv": ("mse", "rms", "absrel", "delta1", "bump"),
    "aifdepthnet": ("mae_fp", "mse_fp", "rmse_fp", "absrel_fp"),
    "focalstack": ("depth_rmse", "delta1", "defocus_mse", "aif_ssim", "aif_psnr"),
}
MAX_BYTES = 16 << 20


def parse_held_out(values: list[str]) -> dict[str, Path]:
    """``NAME=FILE`` pairs in order; SystemExit naming the value that is not one."""
    out: dict[str, Path] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"error: --held-out {v!r}: expected NAME=FILE")
        if not Path(path).is_file():
            raise SystemExit(f"error: --held-out {v!r}: no such file {path}")
        out[name] = Path(path)
    if not out:
        raise SystemExit("error: give at least one --held-out NAME=FILE")
    return out


def describe_training_data(paths: list[str]) -> list[str]:
    """One line per training file: scenes, size, the preset it was rendered from, seed, f-number, render (what
    the file's render configuration records of them)."""
    from focalstack.dataset import FocalStackFile
    from focalstack.train.data import parse_data_spec

    lines = []
    for spec in paths:
        path, weight = parse_data_spec(str(spec))  # FILE or FILE:WEIGHT, as fit takes them
        with FocalStackFile(path) as f:
            cfg, preset = f.config, f.attrs.get("preset")
            w, h = f.image_size
            base = (cfg.get("scene") or {}).get("base")
            parts = [f"{len(f)} scenes of `{preset}`" + (f" (scenes of `{base}`)" if base and base != preset else "")]
            if cfg.get("seed") is not None:
                parts.append(f"seed {cfg['seed']}")
            parts.append(f"{w} x {h} px")
            if cfg.get("f_number") is not None:
                parts.append(f"f/{cfg['f_number']:g}")
            if cfg.get("light_field_version"):
                parts.append("light-field render" + (", denoised" if cfg.get("denoise") else ""))
            elif cfg.get("samples"):
                parts.append(f"path traced at {cfg['samples']} samples" + (", denoised" if cfg.get("denoise") else ""))
            if weight != 1:
                parts.append(f"sampled with weight {weight:g}")
            lines.append(", ".join(parts) + f" ({Path(path).name})")
    return lines


def evaluate_shipped(name: str, weights: Path, held_out: dict[str, Path], train_files: list[str], progress: bool) -> dict:
    """Rows of the exported weights and of the constant depth on ``held_out``: {name: [...], "constant": [...],
    "constant_depth_m": float, "notes": [...]}, each row with its dataset name."""
    import torch

    from focalstack.train.baselines import ConstantDepth, mean_depth
    from focalstack.train.checkpoint import load_checkpoint, model_from_checkpoint
    from focalstack.train.evaluate import evaluate_model
    from focalstack.train.protocols import resolve_protocols

    ckpt = load_checkpoint(weights)
    model, norm = model_from_checkpoint(ckpt, weights)
    model.eval()
    depth_m = mean_depth(train_files, norm.max_depth)
    by_path = {str(p): name for name, p in held_out.items()}
    out: dict = {"constant_depth_m": depth_m, "notes": []}
    for key, net, label in ((name, model, "the model"), ("constant", ConstantDepth(depth_m, norm), "the constant")):
        result = evaluate_model(
            net,
            norm,
            [str(p) for p in held_out.values()],
            resolve_protocols(PROTOCOLS),
            SETTINGS,
            device=torch.device("cpu"),
            progress=progress,
            model_label=label,
            regions=REGIONS,
        )
        out[key] = [{"dataset": by_path[r["file"]], **{k: v for k, v in r.items() if k != "file"}} for r in result.rows]
        out["notes"] += [n for n in result.notes if n not in out["notes"]]
    return out


def plane_section(weights: Path, name: str) -> list[str]:
    """benchmarks/plane_depth.py's card section for ``weights``: the depth it reads from disk-blurred planes."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import plane_depth

    return plane_depth.card_section(str(weights), name)


def bands_section(weights: Path, held_out: dict[str, Path], figures: list[str]) -> tuple[list[str], dict]:
    """benchmarks/depth_bands.py's card section: the first held-out set's error by band of true depth, and
    each drawn set's."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import depth_bands

    chosen = dict.fromkeys([next(iter(held_out)), *figures])
    return depth_bands.card_section(str(weights), {name: held_out[name] for name in chosen})


def draw_figures(args, weights: Path, held_out: dict[str, Path], scratch: Path, scenes: int = 4) -> list[Path]:
    """A grid of the first ``scenes`` scenes of each --figure set (the experiment reports' grid: slices, true
    and predicted depth and defocus), as JPEG files in ``scratch``."""
    if not args.figure:
        return []
    import cv2

    from focalstack.train.experiments.figures import predictions, scene_grid

    out = []
    for name in args.figure:
        png = scratch / f"{args.name}__{name}.png"
        scene_grid(predictions(weights, str(held_out[name]), scenes, "cpu"), f"{args.name} on {name} (held out)", png)
        jpg = png.with_suffix(".jpg")
        cv2.imwrite(str(jpg), cv2.imread(str(png)), [cv2.IMWRITE_JPEG_QUALITY, 85])
        png.unlink()
        out.append(jpg)
    return out


def metric_tables(name: str, results: dict) -> list[str]:
    """Per protocol: a table of the model's and the constant's rows (All and Random, whole images), then the
    flat-region depth rows, then the protocol's published rows (other test sets: compared in definition)."""
    from focalstack.train.protocols import PROTOCOLS as ALL

    lines: list[str] = []
    for protocol, keys in CARD_COLUMNS.items():
        p = ALL[protocol]
        cols = [c for c in p.columns if c.key in keys]
        lines += [
            f"### `{protocol}`: {p.summary}",
            "",
            "| dataset | setting | region | model | " + " | ".join(c.label for c in cols) + " |",
            "|---|---|---|---|" + "---:|" * len(cols),
        ]
        rows = [
            (r, who)
            for who in (name, "constant")
            for r in results[who]
            if r["protocol"] == protocol and (r.get("region", "all") == "all" or protocol == "focalstack")
        ]
        rows.sort(
            key=lambda rw: (
                list(results["datasets"]).index(rw[0]["dataset"]),
                rw[0].get("region", "all"),
                rw[0]["setting"],
                rw[1] != name,
            )
        )
        for r, who in rows:
            if r.get("region", "all") != "all" and all(r.get(c.key) is None for c in cols):
                continue
            vals = " | ".join("-" if r.get(c.key) is None else f"{r[c.key]:.4g}" for c in cols)
            lines.append(f"| {r['dataset']} | {r['setting']} | {r.get('region', 'all')} | {who} | {vals} |")
        for i, pub in enumerate(p.published, 1):
            vals = " | ".join(f"{pub.values[c.key]:.4g}" if c.key in pub.values else "" for c in cols)
            lines.append(f"| published [{i}] | | | {pub.method} | {vals} |")
        lines += ["", *(f"[{i}] {pub.source}." for i, pub in enumerate(p.published, 1)), ""] if p.published else [""]
    return lines


def capture_phrase(capture: list) -> str:
    """The card's words for ``--capture-augment`` (its share of samples, 0.5 unless a fourth value says)."""
    share = float(capture[3]) if len(capture) > 3 else 0.5
    who = "half the samples" if share == 0.5 else f"{share:.0%} of the samples"
    return f"sensor noise and JPEG on {who}, up to `--capture-augment {','.join(f'{v:g}' for v in capture)}`"


def model_card(args, ckpt: dict, info: dict, results: dict, command: str) -> str:
    from focalstack.train.losses import describe_loss

    cfg = ckpt.get("config") or {}
    cam = ckpt.get("camera") or {}
    augment = [
        *(["random flips"] if cfg.get("flips", True) else []),
        *(["transposes"] if cfg.get("transposes") else []),
        *(["random stack subsets in random order"] if cfg.get("random_stack") else []),
        *([capture_phrase(capture)] if (capture := cfg.get("capture_augment")) else []),
    ]
    # A fine-tuned run counts its own steps; the card names the weights it started from.
    start = f" from the weights of `{Path(cfg['init']).stem}`" if cfg.get("init") else ""
    averaged = f"; these weights are the run's moving average of its weights (`--ema {cfg['ema']:g}`)" if cfg.get("ema") else ""
    hours = float(ckpt.get("elapsed", 0.0)) / 3600
    focus = ", ".join(f"{d:g}" for d in cam.get("focus_distances", []))
    lines = [
        f"# {args.name}",
        "",
        args.summary,
        "",
        "| | |",
        "| --- | --- |",
        f"| network | `{ckpt['arch']}` ({info['parameters'] / 1e6:.2f} M parameters) |",
        "| data | " + "; ".join(describe_training_data(cfg.get("data", []))) + " |",
        f"| camera | f/{cam.get('f_number', 0):g}, focal length {cam.get('focal_length_mm', 0):.1f} mm, sensor width "
        f"{cam.get('sensor_width_mm', 0):.1f} mm, {cam.get('stack_size')} slices focused at {focus} m, "
        f"{' x '.join(str(s) for s in cam.get('image_size', []))} px |",
        f"| training | {ckpt.get('global_step')} steps ({ckpt.get('epoch')} epochs){start} at batch {cfg.get('batch_size')}, "
        f"AdamW lr {cfg.get('lr'):g} ({cfg.get('lr_schedule', 'constant')}), weight decay {cfg.get('weight_decay'):g}; "
        f"augmentation: {', '.join(augment) or 'none'}{averaged}; {hours:.1f} h on {args.hardware} with torch "
        f"{ckpt.get('torch_version')} |",
        f"| loss | {describe_loss(cfg)} |",
        f"| file | `weights/{args.name}.pt`, {info['bytes'] / 2**20:.1f} MiB, {info['weights_dtype']} weights-only "
        "checkpoint (no optimiser state); every figure below is of this file |",
        "| licence | MIT, as the project |",
        "",
        "## Metrics on held-out scenes",
        "",
        f"`constant` is {results['constant_depth_m']:.3f} m everywhere, the mean valid depth of the training files "
        "(what experiment reports call `constant`). `flat` scores depth over large texture-less areas only. "
        "docs/evaluation.md defines each protocol. " + " ".join(args.about_held_out),
        "",
        *metric_tables(args.name, results),
    ]
    lines += [line for f in results.get("figures", []) for line in (f"![{Path(f).stem}]({f})", "")]
    lines += results["planes"]
    lines += results.get("bands_section", [])
    if results["notes"]:
        lines += ["Notes from the evaluation:", "", *(f"- {n}" for n in results["notes"]), ""]
    lines += ["## Limitations", "", *(f"- {x}" for x in args.limitation), "", "## Made by", "", "```sh", command, "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True, help="the run's checkpoint (last.pt or best.pt)")
    ap.add_argument("--name", required=True, help="short name users load it by (weights/NAME.pt)")
    ap.add_argument("--held-out", action="append", default=[], metavar="NAME=FILE", help="held-out file (repeat)")
    ap.add_argument("--summary", required=True, help="the card's first paragraph: what this is")
    ap.add_argument("--about-held-out", action="append", default=[], help="a sentence on the held-out files (repeat)")
    ap.add_argument("--limitation", action="append", default=[], help="a limitation for the card (repeat)")
    ap.add_argument("--hardware", default="2 CPU cores", help="where it trained, for the card [2 CPU cores]")
    ap.add_argument("--to", type=Path, default=REPO / "weights", help="where NAME.pt, NAME.md and NAME.json go [weights/]")
    ap.add_argument(
        "--figure", action="append", default=[], metavar="NAME", help="draw a grid of scenes of this held-out set (repeat)"
    )
    ap.add_argument(
        "--figures-to", type=Path, default=REPO / "docs" / "img", help="where the grids go, as NAME__SET.jpg [docs/img/]"
    )
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if not args.name or "/" in args.name or args.name.startswith("."):
        ap.error(f"--name {args.name!r}: expected a plain file name (weights/NAME.pt)")
    if args.to.exists() and not args.to.is_dir():
        ap.error(f"--to {args.to}: not a folder")
    held_out = parse_held_out(args.held_out)
    from focalstack.dataset import FocalStackFile
    from focalstack.dataset.schema import DatasetError

    for name, path in held_out.items():  # each read before anything is written
        try:
            FocalStackFile(path).close()
        except (DatasetError, OSError) as exc:
            ap.error(f"--held-out {name}={path}: {exc}")
    unknown = [f for f in args.figure if f not in held_out]
    if unknown:
        raise SystemExit(f"error: --figure {unknown[0]!r}: expected the name of a --held-out set ({', '.join(held_out)})")

    from focalstack.train.checkpoint import CheckpointError, export_weights, load_checkpoint

    try:
        ckpt = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from focalstack.train.data import parse_data_spec

    # FILE or FILE:WEIGHT, as fit takes them (an experiment's runs record FILE:WEIGHT)
    train_files = [parse_data_spec(str(spec))[0] for spec in (ckpt.get("config") or {}).get("data") or []]
    missing = [p for p in train_files if not Path(p).is_file()]
    if not train_files or missing:
        print(
            f"error: {args.checkpoint}: its training files are needed for the card and the constant: "
            f"{', '.join(missing) or 'none recorded'}",
            file=sys.stderr,
        )
        return 1
    args.to.mkdir(parents=True, exist_ok=True)
    # Everything is made in a scratch folder beside --to and moved in at the end: weights never ship without
    # their card, and a failed run leaves what was there.
    with tempfile.TemporaryDirectory(dir=args.to, prefix=f".{args.name}-") as scratch:
        weights = Path(scratch) / f"{args.name}.pt"
        extra = {"name": args.name, "summary": args.summary}
        info = export_weights(args.checkpoint, weights, max_bytes=MAX_BYTES, half=True, extra=extra)
        info["parameters"] = sum(t.numel() for t in ckpt["model"].values() if t.is_floating_point())
        print(f"{args.name}.pt: {info['bytes'] / 2**20:.2f} MiB ({info['weights_dtype']})")
        results = evaluate_shipped(args.name, weights, held_out, train_files, progress=not args.quiet)
        results["datasets"] = {k: str(v) for k, v in held_out.items()}
        results["planes"] = plane_section(weights, args.name)
        results["bands_section"], results["bands"] = bands_section(weights, held_out, args.figure)
        figures = draw_figures(args, weights, held_out, Path(scratch))
        results["figures"] = [os.path.relpath(args.figures_to / f.name, args.to) for f in figures]
        command = "python benchmarks/ship_weights.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        card = model_card(args, ckpt, info, results, command)
        (Path(scratch) / f"{args.name}.md").write_text(card)
        (Path(scratch) / f"{args.name}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        args.figures_to.mkdir(parents=True, exist_ok=True)
        for f in figures:
            os.replace(f, args.figures_to / f.name)
        for suffix in (".json", ".md", ".pt"):
            os.replace(Path(scratch) / f"{args.name}{suffix}", args.to / f"{args.name}{suffix}")
    print(card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
