"""What limits learning: one factor at a time at a fixed CPU budget, scored as DFV's FoD500 protocol scores it.

The start point (``base``): fod500 scenes at 64 px and f/0.25 (the same blur in pixels as FoD500's f/1 at
256 px), 270 training scenes (seed 0), 40 held-out scenes (seed 1), ``fod-depth``, batch 8, AdamW at 1e-4,
a fixed number of optimiser steps. Every other variant changes one thing:

- how the training scenes are rendered: the light field (version 1's keys, and what ``--light-field`` renders
  now), 128 samples without a denoiser;
- how many there are (135, 540);
- the resolution (96 px at f/0.375, the same blur in pixels again);
- what they show: no surface beyond the last focus distance (depth range 0.1 to 1.5 m);
- the recipe: learning rate 1e-3 and 3e-4; depth normalised by 1.5 m instead of 3 m;
- and the two together as the GPU run uses them (light field version 2, learning rate 3e-4), on 270 and on 540
  scenes (at a longer budget, ``--steps 6000``, where the 270 scenes begin to be learnt by heart), with
  random transposes, at batch 32, and with the learning rate falling to 0 along a half cosine.

Each model is evaluated (its last checkpoint; validation data never picks a checkpoint) on the base
held-out file, and on its own held-out file where its scenes are rendered differently, under ``dfv``
(MSE, RMS, AbsRel, delta1) beside the constant depth that scores best on the held-out file (the mean of
its own clipped ground truth: no network can know it, so it is a generous bar).

Everything is a file in ``--dir`` and every stage resumes or is reused: rerun the same command after a
kill. Each budget has one table, ``ablation-s{steps}-b{batch}.md`` (and ``.json``), holding every variant
measured at it (a later ``--only`` run adds or replaces rows), with each variant's error by band of true
depth. Rendering all variants takes about 1.5 h and training about 12 min per variant on 2 CPU cores (2000
steps).

    python benchmarks/learning_ablation.py --dir data/ablation                 # everything, then the table
    python benchmarks/learning_ablation.py --dir data/ablation --only base,lr1e-3 --steps 2000
    python benchmarks/learning_ablation.py --dir data/ablation --render-only  # data first (e.g. in the background)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
RENDER = [str(BIN / "focalstack-render")]
TRAIN = [str(BIN / "focalstack-train")]

# The light field as version 1 was measured (focalstack 0.2). Its files in an existing --dir are kept; a fresh
# render of them makes today's version, which is what ``lightfield2`` renders under its own names.
LIGHT_FIELD_KEYS = {
    "slices": '"light_field"',
    "denoiser": '"standalone"',
    "aif_prefilter": '"none"',
    "denoise_quality": '"balanced"',
}


@dataclass(frozen=True)
class Data:
    """A rendered file: preset keys over fod500, render options, seed and scene count."""

    kind: str  # the preset file's name: the same for a variant's training and held-out scenes
    name: str
    seed: int
    scenes: int
    resolution: int = 64
    render: dict = field(default_factory=dict)  # [render] keys of the preset file
    scene: dict = field(default_factory=dict)  # [scene] keys
    options: tuple = ()  # focalstack-render options

    @property
    def f_number(self) -> float:
        # FoD500's blur in pixels at 256 px and f/1: the aperture scales with the image width.
        return self.resolution / 256


@dataclass(frozen=True)
class Variant:
    name: str
    train: Data
    test: Data | None = None  # its own held-out file (rendered like its training scenes); None: the base's
    fit: tuple = ()  # focalstack-train fit options
    what: str = ""


def _data(kind: str, split: str, resolution: int = 64, scenes: int | None = None) -> Data:
    seed, n = (0, 270) if split == "train" else (1, 40)
    n = scenes or n
    if kind == "base":
        return Data(f"base-{resolution}px", f"base-{resolution}px-{split}-n{n}", seed, n, resolution)
    if kind == "lightfield":
        return Data(kind, f"lightfield-{split}-n{n}", seed, n, resolution, render=LIGHT_FIELD_KEYS)
    if kind == "lightfield2":  # what --light-field renders now: version 2, slices denoised at high
        return Data(kind, f"lightfield2-{split}-n{n}", seed, n, resolution, options=("--light-field",))
    if kind == "spp128":
        return Data(kind, f"spp128-{split}-n{n}", seed, n, resolution, options=("--samples", "128", "--no-denoise"))
    if kind == "near":
        return Data(kind, f"near-{split}-n{n}", seed, n, resolution, scene={"depth_range": "[0.1, 1.5]"})
    raise ValueError(kind)


def _gpu_recipe(
    name: str, what: str, scenes: int | None = None, lr: str = "3e-4", transposes: bool = False, schedule: str | None = None
) -> Variant:
    """A variant of the GPU run's recipe: light field version 2, trained and tested on its own render."""
    fit = ("--lr", lr) + (("--transposes",) if transposes else ()) + (("--lr-schedule", schedule) if schedule else ())
    return Variant(name, _data("lightfield2", "train", scenes=scenes), _data("lightfield2", "test"), fit=fit, what=what)


BASE_TEST = _data("base", "test")
VARIANTS = [
    Variant("base", _data("base", "train"), what="start point"),
    Variant(
        "lightfield",
        _data("lightfield", "train"),
        _data("lightfield", "test"),
        what="render: light field (16 views, OIDN balanced with image guides)",
    ),
    Variant(
        "lightfield2",
        _data("lightfield2", "train"),
        _data("lightfield2", "test"),
        what="render: light field as --light-field renders it now (version 2: slices denoised at high)",
    ),
    _gpu_recipe("lightfield2-lr3e-4", "the GPU run's data and learning rate: light field version 2, lr 3e-4"),
    _gpu_recipe("lightfield2-lr3e-4-n540", "the GPU run's recipe on 540 training scenes instead of 270", scenes=540),
    _gpu_recipe(
        "lightfield2-lr3e-4-t",
        "the GPU run's recipe with random transposes as well as flips (eight orientations, not four)",
        transposes=True,
    ),
    _gpu_recipe(
        "lightfield2-lr3e-4-n540-t",
        "the GPU run's recipe as it stands: 540 training scenes and random transposes",
        scenes=540,
        transposes=True,
    ),
    _gpu_recipe(
        "lightfield2-lr3e-4-n540-t-cos",
        "the GPU run's recipe with the learning rate falling from 3e-4 to 0 along a half cosine over the run",
        scenes=540,
        transposes=True,
        schedule="cosine",
    ),
    _gpu_recipe(
        "lightfield2-lr6e-4-n540-t",
        "as above at the learning rate the GPU run scales for batch 32 (3e-4 x sqrt(32 / 8)): run it with --batch-size 32",
        scenes=540,
        lr="6e-4",
        transposes=True,
    ),
    Variant("spp128", _data("spp128", "train"), _data("spp128", "test"), what="render: 128 samples, no denoiser"),
    Variant("scenes135", _data("base", "train", scenes=135), what="scenes: 135"),
    Variant("scenes540", _data("base", "train", scenes=540), what="scenes: 540"),
    Variant("res96", _data("base", "train", 96), _data("base", "test", 96), what="resolution: 96 px (f/0.375)"),
    Variant("near", _data("near", "train"), what="content: nothing beyond 1.5 m (depth range 0.1-1.5 m)"),
    Variant("lr1e-3", _data("base", "train"), fit=("--lr", "1e-3"), what="recipe: lr 1e-3"),
    Variant("lr3e-4", _data("base", "train"), fit=("--lr", "3e-4"), what="recipe: lr 3e-4"),
    Variant("depth1.5", _data("base", "train"), fit=("--depth-scale", "1.5"), what="recipe: depth / 1.5 m"),
]


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def complete(path: Path) -> int:
    """The complete scenes in ``path`` (0 when there is no such file)."""
    if not path.exists():
        return 0
    from focalstack.dataset import FocalStackFile

    with FocalStackFile(path) as f:
        return len(f)


def render(d: Data, folder: Path) -> Path:
    """Render (or resume, or reuse) ``d``; a larger file of the same data is extended from a smaller one."""
    out = folder / f"{d.name}.h5"
    preset = folder / f"{d.kind}.toml"
    lines = [
        'base = "fod500"',
        "[render]",
        *(f"{k} = {v}" for k, v in d.render.items()),
        "[scene]",
        *(f"{k} = {v}" for k, v in d.scene.items()),
    ]
    preset.write_text("\n".join(lines) + "\n")
    if complete(out) >= d.scenes:  # reused as it is: a version-1 light-field file cannot be resumed, only read
        return out
    if not out.exists():  # start from the same data with fewer scenes, if there is one (same seeds)
        stem = d.name.rsplit("-n", 1)[0]
        smaller = sorted(
            (p for p in folder.glob(f"{stem}-n*.h5") if int(p.stem.rsplit("-n", 1)[1]) < d.scenes),
            key=lambda p: int(p.stem.rsplit("-n", 1)[1]),
        )
        if smaller:
            shutil.copy(smaller[-1], out)
    run(
        [
            *RENDER,
            "--preset",
            str(preset),
            "--scenes",
            str(d.scenes),
            "--seed",
            str(d.seed),
            "--resolution",
            str(d.resolution),
            "--f-number",
            f"{d.f_number:g}",
            *d.options,
            "--out",
            str(out),
        ]
    )
    return out


THREADS: list[str] = []  # --threads N for fit and evaluate, when given


def train(v: Variant, folder: Path, steps: int, batch: int) -> Path:
    data, val = render(v.train, folder), render(v.test or BASE_TEST, folder)
    out = folder / "runs" / f"{v.name}-s{steps}-b{batch}"
    resume = ["--resume"] if (out / "last.pt").exists() else []
    epochs = -(-steps * batch // v.train.scenes) + 1
    run(
        [
            *TRAIN,
            "fit",
            "--data",
            str(data),
            "--val-data",
            str(val),
            "--out",
            str(out),
            "--arch",
            "fod-depth",
            "--batch-size",
            str(batch),
            "--epochs",
            str(epochs),
            "--max-steps",
            str(steps),
            "--workers",
            "0",
            "--no-tensorboard",
            "-q",
            *THREADS,
            *v.fit,
            *resume,
        ]
    )
    return out


def evaluate(run_dir: Path, test: Path) -> dict:
    out = run_dir / f"eval-{test.stem}"
    if not (out / "metrics.json").exists() or (out / "metrics.json").stat().st_mtime < (run_dir / "last.pt").stat().st_mtime:
        run(
            [
                *TRAIN,
                "evaluate",
                "-c",
                str(run_dir / "last.pt"),
                "--data",
                str(test),
                "--protocol",
                "dfv",
                "--setting",
                "All",
                "--out",
                str(out),
                *THREADS,
            ]
        )
    results = json.loads((out / "metrics.json").read_text())["results"]["dfv"]
    return next(iter(results.values()))["All"]


DEPTH_BINS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 3.01)


def depth_bins(run_dir: Path, test: Path) -> list[dict]:
    """Where a model's dfv error comes from, by band of true depth (benchmarks/depth_bands.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from depth_bands import depth_bands

    return depth_bands(str(run_dir / "last.pt"), test, bands=DEPTH_BINS)


def best_constant(test: Path) -> dict:
    """dfv MSE, RMS, AbsRel and delta1 of the constant that minimises MSE on ``test`` (its clipped mean)."""
    import h5py

    with h5py.File(test, "r") as f:
        depth = np.clip(f["depth"][...].astype(np.float64), 0, 1.5)
    valid = depth > 0
    c = float(depth[valid].mean())
    rows = []
    for g in depth:
        m = g > 0
        e = c - g[m]
        rows.append(
            {
                "mse": float(np.mean(e**2)),
                "absrel": float(np.mean(np.abs(e) / g[m])),
                "delta1": 100 * float(np.mean(np.maximum(c / g[m], g[m] / c) < 1.25)),
            }
        )
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["rms"] = float(np.mean([np.sqrt(r["mse"]) for r in rows]))
    out["depth_m"] = c
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("data/ablation"), help="data, runs and the table")
    ap.add_argument("--only", default="", help="comma-separated variant names [all]")
    ap.add_argument("--steps", type=int, default=2000, help="optimiser steps per variant")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--render-only", action="store_true", help="render every variant's files and stop")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training and evaluation")
    args = ap.parse_args(argv)
    if args.threads:
        THREADS[:] = ["--threads", str(args.threads)]
    folder = args.dir
    folder.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - {v.name for v in VARIANTS})
    if unknown:
        ap.error(f"--only: unknown variant(s) {', '.join(unknown)}; expected some of {', '.join(v.name for v in VARIANTS)}")
    chosen = [v for v in VARIANTS if not names or v.name in names]
    if args.render_only:  # fewest scenes first: a larger file of the same data extends a smaller one
        for v in sorted(chosen, key=lambda v: v.train.scenes):
            render(v.train, folder)
            render(v.test or BASE_TEST, folder)
        return
    base_test = render(BASE_TEST, folder)
    rows = []
    for v in chosen:
        run_dir = train(v, folder, args.steps, args.batch_size)
        row = {"variant": v.name, "what": v.what, "base_test": evaluate(run_dir, base_test)}
        scored_on = base_test
        if v.test is not None:
            scored_on = render(v.test, folder)
            row["own_test"] = evaluate(run_dir, scored_on)
            row["own_constant"] = best_constant(scored_on)
        row["depth_bins"] = depth_bins(run_dir, scored_on)
        rows.append(row)
    # One table per budget, collecting every variant measured at it: a later --only run adds or replaces rows.
    stem = folder / f"ablation-s{args.steps}-b{args.batch_size}"
    json_path = stem.with_suffix(".json")
    if json_path.exists():
        kept = {r["variant"]: r for r in json.loads(json_path.read_text())["rows"]}
        kept.update({r["variant"]: r for r in rows})
        order = [v.name for v in VARIANTS]
        rows = sorted(kept.values(), key=lambda r: order.index(r["variant"]) if r["variant"] in order else len(order))
    constant = best_constant(base_test)
    text = ablation_table(rows, constant, args.steps, args.batch_size)
    stem.with_suffix(".md").write_text(text)
    json_path.write_text(
        json.dumps({"steps": args.steps, "batch_size": args.batch_size, "constant": constant, "rows": rows}, indent=2) + "\n"
    )
    print(text)
    print(f"written: {stem.with_suffix('.md')}, {json_path}")


def ablation_table(rows: list[dict], constant: dict, steps: int, batch: int) -> str:
    """The Markdown of one budget's rows: dfv scores beside the constant, then RMS by band of true depth."""
    table = [
        f"Steps {steps} at batch {batch}; `dfv` protocol, All, on {BASE_TEST.scenes} held-out fod500 scenes (seed 1, 64 px).",
        "",
        "| variant | what changes | MSE (m²) | RMS (m) | AbsRel | delta1 (%) | own test MSE (constant) |",
        "|---|---|---|---|---|---|---|",
        f"| constant | {constant['depth_m']:.3f} m everywhere (best constant on this file) | {constant['mse']:.4f} | "
        f"{constant['rms']:.4f} | {constant['absrel']:.4f} | {constant['delta1']:.1f} | |",
    ]
    for r in rows:
        b = r["base_test"]
        own = f"{r['own_test']['mse']:.4f} ({r['own_constant']['mse']:.4f})" if "own_test" in r else ""
        table.append(
            f"| {r['variant']} | {r['what']} | {b['mse']:.4f} | {b['rms']:.4f} | {b['absrel']:.4f} | {b['delta1']:.1f} | {own} |"
        )
    binned = [r for r in rows if "depth_bins" in r]
    if binned:
        bands = binned[0]["depth_bins"]
        heads = [f"{b['from']:g}-{min(b['to'], 3):g} m" for b in bands]
        table += [
            "",
            "Where the error comes from, by band of true depth: each variant on its own held-out render where it "
            "has one (the same 40 scenes), else on the base's; RMS error in m (both clipped to 1.5 m, as dfv does) / "
            "mean prediction in m (unclipped). Last row: each band's share of the pixels (at 64 px).",
            "",
            "| variant | " + " | ".join(heads) + " |",
            "|---|" + "---|" * len(heads),
        ]
        table += [
            f"| {r['variant']} | " + " | ".join(f"{b['rms']:.3f} / {b['mean_prediction']:.2f}" for b in r["depth_bins"]) + " |"
            for r in binned
        ]
        table.append("| pixels | " + " | ".join(f"{b['pixels']:.3f}" for b in bands) + " |")
    return "\n".join(table) + "\n"


if __name__ == "__main__":
    main()
