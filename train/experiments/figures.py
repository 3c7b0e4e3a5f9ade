"""Figures of an experiment's report, drawn with matplotlib's Agg canvas (no pyplot, no display):

- per evaluated dataset and model, a grid of a few scenes: the nearest and farthest focal slice, true and
  predicted depth (one colour scale, metres), true and predicted |defocus| of the nearest slice (pixels),
  true and predicted all-in-focus image where the model has one;
- the training curves of every model (train and validation loss per epoch).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def predictions(checkpoint: Path, path: str, n: int, device: str = "auto") -> list[dict]:
    """Inputs, truth and the model's outputs (numpy, physical units) for the first ``n`` scenes of ``path``."""
    import torch

    from ..checkpoint import load_checkpoint, model_from_checkpoint
    from ..data import FocalStackDataset, inspect_source, to_model_inputs
    from ..device import resolve_device
    from ..plan import plan_eval

    ckpt = load_checkpoint(checkpoint)
    model, norm = model_from_checkpoint(ckpt, checkpoint)
    dev = resolve_device(device)
    model.to(dev).eval()
    src = inspect_source(path)
    keys = plan_eval([src], [np.arange(min(n, src.n_scenes))], 1, "All", 0)
    dataset = FocalStackDataset([path], align_slices=bool(ckpt.get("config", {}).get("align_slices", False)))
    out = []
    try:
        with torch.no_grad():
            for batch_keys in keys:
                batch = torch.utils.data.default_collate([dataset[k] for k in batch_keys])
                inputs, targets = to_model_inputs(batch, norm, dev)
                raw = model(inputs["stack"], inputs["focus"])
                pred = norm.physical(raw)
                out.append(
                    {
                        "stack": inputs["stack"][0].permute(0, 2, 3, 1).cpu().numpy(),
                        "depth": targets["depth_m"][0].cpu().numpy(),
                        "depth_pred": pred["depth_m"][0].cpu().numpy(),
                        "defocus": targets["defocus_px"][0].cpu().numpy(),
                        "defocus_pred": pred["defocus_px"][0].abs().cpu().numpy(),
                        "aif": targets["aif"][0].permute(1, 2, 0).cpu().numpy(),
                        "aif_pred": pred["aif"][0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() if "aif" in pred else None,
                    }
                )
    finally:
        dataset.close()
    return out


def scene_grid(samples: list[dict], title: str, path: Path) -> Path:
    """One row per scene; columns as in the module docstring."""
    has_aif = any(s["aif_pred"] is not None for s in samples)
    cols = ["nearest slice", "farthest slice", "depth", "predicted depth", "|defocus|", "predicted |defocus|"]
    if has_aif:
        cols += ["AiF", "predicted AiF"]
    fig = _figure(1.9 * len(cols), 1.9 * len(samples) + 0.5)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.9, top=0.9, bottom=0.02, wspace=0.05, hspace=0.1)
    axes = np.atleast_2d(fig.subplots(len(samples), len(cols), squeeze=False))
    dmax = max(float(np.nanmax(np.minimum(s["depth"], 1e3))) for s in samples)
    cmax = max(float(np.nanmax(np.abs(s["defocus"][0]))) for s in samples) or 1.0
    for r, s in enumerate(samples):
        tiles = [s["stack"][0], s["stack"][-1], s["depth"], s["depth_pred"], np.abs(s["defocus"][0]), s["defocus_pred"][0]]
        if has_aif:
            tiles += [s["aif"], s["aif_pred"] if s["aif_pred"] is not None else np.zeros_like(s["aif"])]
        for c, tile in enumerate(tiles):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c in (2, 3):
                im = ax.imshow(tile, cmap="viridis", vmin=0, vmax=dmax, interpolation="nearest")
            elif c in (4, 5):
                im = ax.imshow(tile, cmap="magma", vmin=0, vmax=cmax, interpolation="nearest")
            else:
                im = ax.imshow(np.clip(tile, 0, 1), interpolation="nearest")
            if r == 0:
                ax.set_title(cols[c], fontsize=8)
            if r == len(samples) - 1 and c in (3, 5):
                fig.colorbar(im, ax=axes[:, c - 1 : c + 1], shrink=0.6, label="m" if c == 3 else "px")
    fig.savefig(path)
    return path


def training_curves(model_dirs: dict[str, Path], path: Path) -> Path | None:
    """Train (solid) and validation (dashed) loss per epoch of every model that has a metrics.csv."""
    fig = _figure(7.0, 4.0)
    ax = fig.subplots()
    drawn = False
    for name, folder in model_dirs.items():
        file = folder / "metrics.csv"
        if not file.is_file():
            continue
        with open(file, newline="") as fh:
            rows = list(csv.DictReader(fh))
        epochs = [int(r["epoch"]) for r in rows]
        line = ax.plot(epochs, [float(r["train_loss"]) for r in rows], label=f"{name} train")[0]
        val = [float(r["val_loss"]) for r in rows if r.get("val_loss") not in (None, "")]
        if len(val) == len(rows):
            ax.plot(epochs, val, "--", color=line.get_color(), label=f"{name} validation")
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.savefig(path)
    return path
