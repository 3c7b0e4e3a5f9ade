"""Where a checkpoint's depth error comes from: per band of true depth, the share of the pixels, the share of
the whole-image ``dfv`` MSE (depth clipped to [0, 1.5] m, pooled over pixels), the RMS error there, the mean
prediction beside the mean truth and the median ratio of predicted to true depth (unclipped: a bias the clip
hides shows here), and the share of pixels read more than twice too far.

    python benchmarks/depth_bands.py fod-depth-fod500-v0 --data fod500-test.h5
    python benchmarks/depth_bands.py fod-depth-fod500-v0 runs/x/last.pt --data fod500-test.h5 --out bands.md
    python benchmarks/depth_bands.py fod-depth-fod500-v0 --data fod500-test-noisy.h5 --contrast

``--contrast`` adds a second table per checkpoint: the pixels nearer than 1.5 m split into thirds by how much
texture the all-in-focus image shows around them (the standard deviation of its luminance in a 7 x 7 window),
with the same columns. It asks whether an error sits on weakly textured surfaces or on all of them.

Every checkpoint (shipped weights by name, or a file) runs on every scene of the file with all its slices in
focus order, as the ``All`` setting. The bands' MSE shares add up to the ``dfv`` MSE pooled over pixels;
``focalstack-train evaluate --protocol dfv`` averages per image instead (``dfv`` masks no pixel), so the two
are equal where every image has the same size and differ a little where sizes differ.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

BANDS = (0.0, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, float("inf"))  # metres; dfv clips at 1.5
CLIP_M = 1.5
CONTRAST_WINDOW = 7  # pixels: about a tenth of a 64 px image, a surface's texture rather than one edge


def local_contrast(aif: np.ndarray, window: int = CONTRAST_WINDOW) -> np.ndarray:
    """How much texture an all-in-focus image (H, W, 3, uint8) shows around each pixel: the standard deviation
    of its luminance (0 to 1) in a ``window`` x ``window`` box. 0 on a flat surface."""
    grey = cv2.cvtColor(np.ascontiguousarray(aif), cv2.COLOR_RGB2GRAY).astype(np.float64) / 255.0
    mean = cv2.blur(grey, (window, window), borderType=cv2.BORDER_REFLECT)
    mean_sq = cv2.blur(grey * grey, (window, window), borderType=cv2.BORDER_REFLECT)
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


def _predictions(checkpoint: str, test: Path, progress: bool) -> Iterator[tuple[object, np.ndarray]]:
    """Each record of ``test`` with the checkpoint's depth for it (metres, unclipped), all slices in order."""
    import torch
    from tqdm import tqdm

    from focalstack.dataset import FocalStackFile
    from focalstack.train.checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    model, norm = model_from_checkpoint(load_checkpoint(path), path)
    model.eval()
    with FocalStackFile(test) as f:
        for i in tqdm(range(len(f)), desc=f"{checkpoint} on {Path(test).name}", disable=not progress):
            rec = f[i]
            x = norm.stack(torch.from_numpy(rec.stack).permute(0, 3, 1, 2)[None])
            with torch.no_grad():
                out = model(x, norm.focus(torch.from_numpy(rec.focus_distance)[None]))
            yield rec, norm.physical(out)["depth_m"][0].numpy().astype(np.float64)


class _Groups:
    """Sums over groups of pixels (one mask per group and image) that make the table's columns."""

    def __init__(self, n: int):
        self.se, self.count, self.pred, self.truth, self.far = (np.zeros(n) for _ in range(5))
        self.ratios: list[list[np.ndarray]] = [[] for _ in range(n)]

    def add(self, masks: list[np.ndarray], p: np.ndarray, d: np.ndarray) -> None:
        err2 = (np.clip(p, 0, CLIP_M) - np.clip(d, 0, CLIP_M)) ** 2
        for k, m in enumerate(masks):
            self.se[k] += err2[m].sum()
            self.count[k] += m.sum()
            self.pred[k] += p[m].sum()
            self.truth[k] += d[m].sum()
            self.far[k] += (p[m] > 2 * d[m]).sum()
            self.ratios[k].append(p[m] / np.maximum(d[m], 1e-6))

    def rows(self, total: float) -> list[dict]:
        c = self.count
        return [
            {
                "pixels": float(c[k] / total),
                "mse_share": float(self.se[k] / total),
                # a group without pixels has no error, mean or median: None (JSON null; '-' in the table)
                "rms": float(np.sqrt(self.se[k] / c[k])) if c[k] else None,
                "mean_prediction": float(self.pred[k] / c[k]) if c[k] else None,
                "mean_truth": float(self.truth[k] / c[k]) if c[k] else None,
                "median_ratio": float(np.median(np.concatenate(self.ratios[k]))) if c[k] else None,
                "too_far": float(self.far[k] / c[k]) if c[k] else None,
            }
            for k in range(len(c))
        ]


def depth_bands(checkpoint: str, test: Path, bands=BANDS, progress: bool = False) -> list[dict]:
    """One dict per band of true depth ``[from, to)``: pixels (share of the pixels in some band), mse_share,
    rms, mean_prediction, mean_truth, median_ratio (the median over the band's pixels of predicted / true
    depth: a bias that a few wild pixels do not move), too_far (share of the band's pixels predicted beyond
    twice their true depth)."""
    n = len(bands) - 1
    groups = _Groups(n)
    for rec, p in _predictions(checkpoint, test, progress):
        d = rec.depth.astype(np.float64)
        # pixels outside every band count nowhere
        groups.add([(d >= bands[k]) & (d < bands[k + 1]) for k in range(n)], p, d)
    total = max(groups.count.sum(), 1)
    return [{"from": bands[k], "to": bands[k + 1], **row} for k, row in enumerate(groups.rows(total))]


def contrast_edges(test: Path, clip: float = CLIP_M) -> tuple[float, float]:
    """The local contrasts (``local_contrast``) that split the file's pixels nearer than ``clip`` into thirds.
    From the data alone, so every checkpoint is split at the same surfaces."""
    from focalstack.dataset import FocalStackFile

    values = []
    with FocalStackFile(test) as f:
        for i in range(len(f)):
            rec = f[i]
            if rec.aif is None:  # imported FoD500 and DDFF-12 hold none
                raise ValueError(f"{test}: scene {i} has no all-in-focus image to measure contrast on")
            values.append(local_contrast(rec.aif)[(rec.depth >= 0) & (rec.depth < clip)])
    near = np.concatenate(values) if values else np.zeros(0)
    if not near.size:
        raise ValueError(f"{test}: no pixel nearer than {clip:g} m to split by contrast")
    lo, hi = np.quantile(near, [1 / 3, 2 / 3])
    return float(lo), float(hi)


def contrast_thirds(checkpoint: str, test: Path, edges: tuple[float, float], progress: bool = False) -> list[dict]:
    """The pixels nearer than 1.5 m (where ``dfv`` does not clip the truth), in three groups by local contrast
    (low, middle, high; ``edges`` from ``contrast_edges``), with ``depth_bands``' columns. Shares are of all
    the file's pixels, so the three add up to the bands below 1.5 m."""
    bounds = (-np.inf, edges[0], edges[1], np.inf)
    groups = _Groups(3)
    total = 0  # depth_bands' denominator: the pixels with a depth in some band
    for rec, p in _predictions(checkpoint, test, progress):
        d = rec.depth.astype(np.float64)
        total += int(((d >= BANDS[0]) & (d < BANDS[-1])).sum())
        near = (d >= 0) & (d < CLIP_M)
        contrast = local_contrast(rec.aif)
        groups.add([near & (contrast > bounds[k]) & (contrast <= bounds[k + 1]) for k in range(3)], p, d)
    rows = groups.rows(max(total, 1))
    names = ("low", "middle", "high")
    return [{"contrast": names[k], "from": bounds[k], "to": bounds[k + 1], **row} for k, row in enumerate(rows)]


_COLUMNS = (
    "| pixels | share of dfv MSE | RMS (clipped, m) | mean prediction / truth (m) | median predicted / true | read >2x too far |"
)


def _table(rows: list[dict], first: str, label, total: str) -> str:
    lines = [f"| {first} {_COLUMNS}", "|---|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        if r["rms"] is None:
            lines.append(f"| {label(r)} | 0% | 0 | - | - | - | - |")
            continue
        lines.append(
            f"| {label(r)} | {100 * r['pixels']:.1f}% | {r['mse_share']:.4f} | {r['rms']:.3f} | "
            f"{r['mean_prediction']:.2f} / {r['mean_truth']:.2f} | {r['median_ratio']:.2f} | {100 * r['too_far']:.1f}% |"
        )
    lines.append(f"| {total} | {100 * sum(r['pixels'] for r in rows):.0f}% | {sum(r['mse_share'] for r in rows):.4f} | | | | |")
    return "\n".join(lines)


def band_table(rows: list[dict]) -> str:
    def label(r):
        return f"{r['from']:g} to {r['to']:g}" if np.isfinite(r["to"]) else f"{r['from']:g} and beyond"

    return _table(rows, "true depth (m)", label, "all")


def contrast_table(rows: list[dict]) -> str:
    def label(r):
        if not np.isfinite(r["from"]):
            return f"{r['contrast']} (below {r['to']:.3f})"
        if not np.isfinite(r["to"]):
            return f"{r['contrast']} ({r['from']:.3f} and above)"
        return f"{r['contrast']} ({r['from']:.3f} to {r['to']:.3f})"

    return _table(rows, f"local contrast, true depth below {CLIP_M:g} m", label, f"all below {CLIP_M:g} m")


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
    ap.add_argument(
        "--contrast",
        action="store_true",
        help=f"also split the pixels nearer than {CLIP_M:g} m into thirds by the all-in-focus image's local contrast",
    )
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
        edges = contrast_edges(args.data) if args.contrast else None
    except (CheckpointError, ValueError) as exc:
        ap.error(str(exc))
    parts = []
    for checkpoint in args.checkpoints:
        rows = depth_bands(checkpoint, args.data, progress=True)
        parts.append(f"## {checkpoint} on {args.data.name}\n\n{band_table(rows)}\n")
        if edges is not None:
            parts[-1] += f"\n{contrast_table(contrast_thirds(checkpoint, args.data, edges, progress=True))}\n"
        print(parts[-1], flush=True)
    if args.out:
        args.out.write_text("\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
