"""Evaluate a checkpoint on held-out files in the paper's terms.

One row per file and setting: ``All`` feeds every slice of each scene in focus order; ``Random`` feeds
a seeded random number of slices (1 to all) in random order (the paper's "Random" setting). Metrics
are means over scenes of per-scene values (see ``metrics``). Results are printed as a Markdown table
and written as Markdown, CSV and JSON.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from focalstack.dataset.files import atomic_path, write_text_atomic

from .data import FocalStackDataset, Norm, SourceInfo, inspect_source, make_loader, plan_eval, to_model_inputs
from .device import autocast, resolve_amp, resolve_device
from .distributed import is_writer, process_group
from .metrics import ALL_METRICS, MeanMeter, aif_psnr, aif_ssim, defocus_mse, depth_metrics

SETTINGS = ("All", "Random")


@torch.no_grad()
def run_batches(
    model,
    dataset: FocalStackDataset,
    batches,
    norm: Norm,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    criterion=None,
    workers: int = 0,
    progress=None,
    merge=None,
) -> tuple[dict[str, float], dict | None]:
    """Metric means over the scenes of ``batches``; also the first batch's (inputs, targets, outputs)
    on the CPU, for pictures. With ``criterion`` the loss and its terms are averaged too. ``merge``
    (several processes, each with its part of the batches): (sums, counts) -> means over all of them."""
    was_training = model.training
    model.eval()
    meter = MeanMeter()
    first = None
    try:
        for batch in make_loader(dataset, batches, workers, pin=device.type == "cuda"):
            inputs, targets = to_model_inputs(batch, norm, device)
            with autocast(device, amp_dtype):
                out = model(inputs["stack"], inputs["focus"])
            b = inputs["stack"].shape[0]
            if criterion is not None:
                loss, terms = criterion(out, targets)
                meter.add("loss", float(loss), n=b)
                for k, v in terms.items():
                    meter.add(k, float(v), n=b)
            depth_m = out["depth"].float() * norm.depth_scale
            for k, v in depth_metrics(depth_m, targets["depth_m"], targets["depth_mask"]).items():
                meter.add(k, v)
            meter.add("defocus_mse", defocus_mse(out["defocus"].float() * norm.defocus_scale, targets["defocus_px"]))
            if "aif" in out:
                meter.add("aif_ssim", aif_ssim(out["aif"], targets["aif"]))
                meter.add("aif_psnr", aif_psnr(out["aif"], targets["aif"]))
            if first is None:
                cpu = lambda d: {k: v.detach().float().cpu() for k, v in d.items()}  # noqa: E731
                first = {"inputs": cpu(inputs), "targets": cpu(targets), "outputs": cpu(out)}
            if progress is not None:
                progress.update(1)
    finally:
        model.train(was_training)
    return (meter.means() if merge is None else merge(meter.sums, meter.counts)), first


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}"


def write_csv(path: str | os.PathLike, rows: list[dict], columns: list[str]) -> None:
    """``rows`` under the header ``columns`` (None and missing values as empty cells), replacing
    ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows({c: r.get(c) for c in columns} for r in rows)


def markdown_table(rows: list[dict]) -> str:
    cols = ["file", "setting", *ALL_METRICS]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(ALL_METRICS)) + "|"]
    for r in rows:
        lines.append("| " + " | ".join([r["file"], r["setting"], *(_fmt(r.get(m)) for m in ALL_METRICS)]) + " |")
    return "\n".join(lines) + "\n"


def evaluate(
    checkpoint: str | os.PathLike,
    data: list[str],
    out_dir: str | os.PathLike | None = None,
    settings: tuple[str, ...] = SETTINGS,
    batch_size: int = 4,
    device: str = "auto",
    amp: str = "auto",
    seed: int = 0,
    workers: int = 0,
    max_scenes: int | None = None,
    progress: bool = True,
) -> tuple[list[dict], dict[str, Path]]:
    """Evaluate ``checkpoint`` on each file of ``data``. Returns the rows (one per file and setting,
    every metric of ``metrics.ALL_METRICS``; AiF metrics are None for models without an AiF branch)
    and the paths written (markdown, csv, json). Started by torchrun, every process evaluates its part
    of each file's batches, the means are gathered over all, and rank 0 writes (``distributed``)."""
    from tqdm import tqdm

    from .checkpoint import load_checkpoint, model_from_checkpoint

    for s in settings:
        if s not in SETTINGS:
            raise ValueError(f"setting {s!r}: expected one of {', '.join(SETTINGS)}")
    for name, value in (("batch-size", batch_size), ("max-scenes", 1 if max_scenes is None else max_scenes)):
        if not value >= 1:
            raise ValueError(f"--{name} {value}: expected a positive integer")
    group = process_group(device)
    dev = resolve_device(device) if group is None else group.device
    amp_dtype = resolve_amp(amp, dev)
    ckpt = load_checkpoint(checkpoint)
    model, norm = model_from_checkpoint(ckpt, checkpoint)
    model.to(dev)
    sources: list[SourceInfo] = [inspect_source(p) for p in data]
    # Slices are aligned (or not) as the network saw them in training.
    dataset = FocalStackDataset([s.path for s in sources],
                                align_slices=bool(ckpt.get("config", {}).get("align_slices", False)))
    rows = []
    try:
        for fi, src in enumerate(sources):
            n = src.n_scenes if max_scenes is None else min(src.n_scenes, max_scenes)
            for setting in settings:
                # plan per file so that scene subsets depend on (seed, file) only
                scenes = [np.arange(n) if i == fi else np.arange(0) for i in range(len(sources))]
                batches = plan_eval(sources, scenes, batch_size, setting, seed)
                batches, merge = (batches, None) if group is None else (group.split(batches), group.merge_means)
                bar = tqdm(total=len(batches), desc=f"{Path(src.path).name} {setting}",
                           disable=not progress or not is_writer(), leave=False)
                with bar:
                    means, _ = run_batches(model, dataset, batches, norm, dev, amp_dtype, workers=workers, progress=bar,
                                           merge=merge)
                row = {"file": src.path, "setting": setting, "scenes": n}
                row.update({m: means.get(m) for m in ALL_METRICS})
                rows.append(row)
    finally:
        dataset.close()
    out = Path(out_dir) if out_dir is not None else Path(checkpoint).parent / "eval"
    return rows, write_results(out, rows, checkpoint, ckpt, seed, write=is_writer())


def write_results(out: Path, rows: list[dict], checkpoint, ckpt: dict, seed: int, write: bool = True
                  ) -> dict[str, Path]:
    """metrics.md, metrics.csv and metrics.json in ``out``, each replaced atomically (with ``write``)."""
    paths = {"markdown": out / "metrics.md", "csv": out / "metrics.csv", "json": out / "metrics.json"}
    if not write:
        return paths
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "checkpoint": str(checkpoint),
        "arch": ckpt["arch"],
        "epoch": ckpt.get("epoch"),
        "seed": seed,
        "units": {
            "depth_mse": "m^2", "depth_rmse": "m", "depth_sqrel": "m", "defocus_mse": "px^2", "aif_psnr": "dB",
        },
    }
    write_text_atomic(paths["markdown"], f"Evaluation of `{checkpoint}` (architecture {ckpt['arch']}, epoch "
                                         f"{ckpt.get('epoch')}).\n\n" + markdown_table(rows))
    write_csv(paths["csv"], rows, ["file", "setting", "scenes", *ALL_METRICS])
    results: dict = {}
    for r in rows:
        results.setdefault(r["file"], {})[r["setting"]] = {k: r[k] for k in ["scenes", *ALL_METRICS]}
    write_text_atomic(paths["json"], json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return paths
