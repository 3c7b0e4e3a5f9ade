"""Where a checkpoint's depth error comes from: per band of true depth, the share of the pixels, the share of
the whole-image ``dfv`` MSE (depth clipped to [0, 1.5] m, pooled over pixels), the RMS error there, the mean
prediction beside the mean truth and the median ratio of predicted to true depth (unclipped: a bias the clip
hides shows here), and the share of pixels read more than twice too far.

    python benchmarks/depth_bands.py fod-depth-fod500-v0 --data fod500-test.h5
    python benchmarks/depth_bands.py fod-depth-fod500-v0 runs/x/last.pt --data fod500-test.h5 --out bands.md

Every checkpoint (shipped weights by name, or a file) runs on every scene of the file with all its slices in
focus order, as the ``All`` setting. The bands' MSE shares add up to the ``dfv`` MSE pooled over pixels;
``focalstack-train evaluate --protocol dfv`` averages per image instead (``dfv`` masks no pixel), so the two
are equal where every image has the same size and differ a little where sizes differ.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

BANDS = (0.0, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, float("inf"))  # metres; dfv clips at 1.5
CLIP_M = 1.5


def depth_bands(checkpoint: str, test: Path, bands=BANDS, progress: bool = False) -> list[dict]:
    """One dict per band of true depth ``[from, to)``: pixels (share of the pixels in some band), mse_share,
    rms, mean_prediction, mean_truth, median_ratio (the median over the band's pixels of predicted / true
    depth: a bias that a few wild pixels do not move), too_far (share of the band's pixels predicted beyond
    twice their true depth)."""
    import torch
    from tqdm import tqdm

    from focalstack.dataset import FocalStackFile
    from focalstack.train.checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    model, norm = model_from_checkpoint(load_checkpoint(path), path)
    model.eval()
    n = len(bands) - 1
    se, count, pred, truth, far = (np.zeros(n) for _ in range(5))
    ratios: list[list[np.ndarray]] = [[] for _ in range(n)]
    with FocalStackFile(test) as f:
        for i in tqdm(range(len(f)), desc=f"{checkpoint} on {Path(test).name}", disable=not progress):
            rec = f[i]
            x = norm.stack(torch.from_numpy(rec.stack).permute(0, 3, 1, 2)[None])
            with torch.no_grad():
                out = model(x, norm.focus(torch.from_numpy(rec.focus_distance)[None]))
            p = norm.physical(out)["depth_m"][0].numpy().astype(np.float64)
            d = rec.depth.astype(np.float64)
            err2 = (np.clip(p, 0, CLIP_M) - np.clip(d, 0, CLIP_M)) ** 2
            for k in range(n):
                m = (d >= bands[k]) & (d < bands[k + 1])  # pixels outside every band count nowhere
                se[k] += err2[m].sum()
                count[k] += m.sum()
                pred[k] += p[m].sum()
                truth[k] += d[m].sum()
                far[k] += (p[m] > 2 * d[m]).sum()
                ratios[k].append(p[m] / np.maximum(d[m], 1e-6))
    total = max(count.sum(), 1)
    return [
        {
            "from": bands[k],
            "to": bands[k + 1],
            "pixels": float(count[k] / total),
            "mse_share": float(se[k] / total),
            # a band without pixels has no error, mean or median: None (JSON null; '-' in the table)
            "rms": float(np.sqrt(se[k] / count[k])) if count[k] else None,
            "mean_prediction": float(pred[k] / count[k]) if count[k] else None,
            "mean_truth": float(truth[k] / count[k]) if count[k] else None,
            "median_ratio": float(np.median(np.concatenate(ratios[k]))) if count[k] else None,
            "too_far": float(far[k] / count[k]) if count[k] else None,
        }
        for k in range(n)
    ]


def band_table(rows: list[dict]) -> str:
    def label(r):
        return f"{r['from']:g} to {r['to']:g}" if np.isfinite(r["to"]) else f"{r['from']:g} and beyond"

    lines = [
        "| true depth (m) | pixels | share of dfv MSE | RMS (clipped, m) | mean prediction / truth (m) "
        "| median predicted / true | read >2x too far |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        if r["rms"] is None:
            lines.append(f"| {label(r)} | 0% | 0 | - | - | - | - |")
            continue
        lines.append(
            f"| {label(r)} | {100 * r['pixels']:.1f}% | {r['mse_share']:.4f} | {r['rms']:.3f} | "
            f"{r['mean_prediction']:.2f} / {r['mean_truth']:.2f} | {r['median_ratio']:.2f} | {100 * r['too_far']:.1f}% |"
        )
    lines.append(f"| all | 100% | {sum(r['mse_share'] for r in rows):.4f} | | | | |")
    return "\n".join(lines)


def card_section(checkpoint: str, files: dict[str, Path]) -> tuple[list[str], dict[str, list[dict]]]:
    """The model cards' section (benchmarks/ship_weights.py): one band table per held-out set of ``files``
    (name -> file), and the rows behind them."""
    rows = {name: depth_bands(checkpoint, path) for name, path in files.items()}
    lines = [
        "## Where the depth error comes from",
        "",
        "By band of true depth, all slices in focus order (`python benchmarks/depth_bands.py`): each band's share "
        "of the pixels and of the `dfv` MSE (clipped to [0, 1.5] m, pooled over pixels: the shares add up to the "
        "whole), the median ratio of predicted to true depth (unclipped; 1 is unbiased), and the share of pixels "
        "read more than twice too far.",
        "",
    ]
    for name, table_rows in rows.items():
        lines += [f"{name}:", "", band_table(table_rows), ""]
    return lines, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="shipped weights by name, or checkpoint files")
    ap.add_argument("--data", type=Path, required=True, help="held-out focalstack HDF5 file")
    ap.add_argument("--out", type=Path, help="also write the Markdown here")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if not args.data.is_file():
        ap.error(f"--data {args.data}: no such file")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from focalstack.train.checkpoint import CheckpointError, resolve_checkpoint

    try:
        for checkpoint in args.checkpoints:
            resolve_checkpoint(checkpoint)
    except CheckpointError as exc:
        ap.error(str(exc))
    parts = []
    for checkpoint in args.checkpoints:
        rows = depth_bands(checkpoint, args.data, progress=True)
        parts.append(f"## {checkpoint} on {args.data.name}\n\n{band_table(rows)}\n")
        print(parts[-1], flush=True)
    if args.out:
        args.out.write_text("\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
