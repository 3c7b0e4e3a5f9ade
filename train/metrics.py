"""Evaluation metrics, per image. Which ones a table shows, on what and how averaged, is a protocol's
business (``protocols``); these are the pure functions.

This project's own ("focalstack" protocol; torch, vectorised over a batch). Depth (metres, over valid
pixels, see ``data.Norm``): MSE, RMSE, AbsRel = mean(|p - g| / g), SqRel = mean((p - g)^2 / g),
delta_k = fraction of pixels with max(p / g, g / p) < 1.25^k (k = 1, 2, 3), and bumpiness (Honauer et
al., 2016, as used by the paper): the Frobenius norm of the Hessian of the error p - g (finite
differences, pixel spacing 1), clipped at 0.05, averaged over valid pixels whose 3x3 neighbourhood is
valid, times 100. Predicted depth is clamped to >= 1 mm for the ratios.
Defocus: MSE in pixels^2 over all slices. AiF: SSIM (pytorch-msssim, Gaussian window 11, sigma 1.5) and
PSNR (OpenCV's cv2.PSNR) of the image clamped to [0, 1], data range 1.

Published protocols (numpy, one image, float64), written from the definitions in the public code, not
copied from it:

- ``toolbox_metrics``: the DDFF-12 toolbox's metrics (``calmetrics`` in soyers/ddff-pytorch,
  ddff/metricseval/BaseDDFFEval.py, "provided by Caner Hazirbas"; DFV's eval_FoD500.py and
  eval_DDFF12.py use the same function): sums over pixels with ground truth > 0 divided by their number;
  RMS = sqrt(MSE) of the image; bumpiness from Scharr derivatives (``scharr``) of scikit-image 0.13-0.16.
- ``aifdepthnet_metrics``: AiFDepthNet's test.py (albert100121/AiFDepthNet, ``DefocusNet_testing``):
  means over the pixels of three masks.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

DEPTH_METRICS = ("depth_mse", "depth_rmse", "depth_absrel", "depth_sqrel", "delta1", "delta2", "delta3", "bumpiness")
ALL_METRICS = DEPTH_METRICS + ("defocus_mse", "aif_ssim", "aif_psnr")
MIN_DEPTH = 1e-3
DELTA_THRESHOLDS = (1.25, 1.25**2, 1.25**3)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1)


def bumpiness(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, clip: float = 0.05) -> torch.Tensor:
    """(B, H, W) depth in metres -> (B,) bumpiness (x 100)."""
    d = (pred - gt).double()
    d = torch.where(mask, d, torch.zeros_like(d))
    dxx = d[:, 1:-1, 2:] - 2 * d[:, 1:-1, 1:-1] + d[:, 1:-1, :-2]
    dyy = d[:, 2:, 1:-1] - 2 * d[:, 1:-1, 1:-1] + d[:, :-2, 1:-1]
    dxy = (d[:, 2:, 2:] - d[:, 2:, :-2] - d[:, :-2, 2:] + d[:, :-2, :-2]) / 4
    frob = torch.sqrt(dxx**2 + dyy**2 + 2 * dxy**2).clamp(max=clip)
    inner = -F.max_pool2d(-mask[:, None].double(), 3, stride=1)[:, 0] > 0.5  # valid 3x3 neighbourhoods
    return 100 * _masked_mean(frob, inner).float()


def valid_depth(gt: torch.Tensor, max_depth: float) -> torch.Tensor:
    """Pixels whose true depth counts: finite, > 0 and <= ``max_depth`` (the checkpoint's ``Norm``)."""
    return torch.isfinite(gt) & (gt > 0) & (gt <= max_depth)


def depth_metrics(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, H, W) predicted and true depth in metres and a validity mask -> metric name -> (B,)."""
    pred, gt = pred.float(), gt.float()
    p = pred.clamp(min=MIN_DEPTH)
    g = torch.where(mask, gt, torch.ones_like(gt))
    err = pred - g
    mse = _masked_mean(err**2, mask)
    ratio = torch.maximum(p / g, g / p)
    out = {
        "depth_mse": mse,
        "depth_rmse": mse.sqrt(),
        "depth_absrel": _masked_mean(err.abs() / g, mask),
        "depth_sqrel": _masked_mean(err**2 / g, mask),
    }
    for k in (1, 2, 3):
        out[f"delta{k}"] = _masked_mean((ratio < 1.25**k).float(), mask)
    out["bumpiness"] = bumpiness(pred, g, mask)
    return out


def defocus_mse(pred_px: torch.Tensor, gt_px: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, S, H, W) defocus maps in pixels -> (B,) mean squared error (over ``mask``'s pixels if given;
    an image without any gives NaN)."""
    err = (pred_px.float() - gt_px.float()) ** 2
    if mask is None:
        return err.flatten(1).mean(1)
    m = mask.float().flatten(1)
    return (err.flatten(1) * m).sum(1) / m.sum(1)


def aif_ssim(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B,) SSIM, by pytorch-msssim."""
    from pytorch_msssim import ssim

    side = min(pred.shape[-2:])
    win = min(11, side if side % 2 else side - 1)  # images smaller than the window get a smaller one
    return ssim(pred.float().clamp(0, 1), gt.float(), data_range=1.0, size_average=False, win_size=max(win, 1))


def aif_psnr(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B,) PSNR in dB, by OpenCV (cv2.PSNR, data range 1)."""
    p = pred.detach().float().clamp(0, 1).cpu().numpy().astype(np.float64)
    g = gt.detach().float().cpu().numpy().astype(np.float64)
    return torch.tensor([cv2.PSNR(a, b, 1.0) for a, b in zip(p, g)], dtype=torch.float32)


# -- published protocols: numpy, one image ---------------------------------------------------------


def scharr(image: np.ndarray, axis: int) -> np.ndarray:
    """The Scharr derivative of a 2-D image along ``axis`` (0: down the rows, y; 1: along the columns,
    x), float64, as scikit-image 0.13 to 0.16 compute ``filters.scharr_h`` (axis 0) and ``scharr_v``
    (axis 1): the kernel [3, 10, 3] / 16 across ``axis`` times [1, 0, -1] along it, convolved with
    mirrored edges (scipy.ndimage's 'reflect': d c b a | a b c d), then the one-pixel border of the
    result set to 0. Those are the versions the DDFF-12 toolbox (scikit-image 0.13.1) and DFV (0.16.2)
    pin; from 0.17 on scikit-image keeps the border. On a smooth image it is twice the derivative."""
    x = np.pad(np.asarray(image, dtype=np.float64), 1, mode="symmetric")
    if axis == 0:
        across = (3 * x[:, :-2] + 10 * x[:, 1:-1] + 3 * x[:, 2:]) / 16
        out = across[2:] - across[:-2]
    elif axis == 1:
        across = (3 * x[:-2] + 10 * x[1:-1] + 3 * x[2:]) / 16
        out = across[:, 2:] - across[:, :-2]
    else:
        raise ValueError(f"axis {axis!r}: expected 0 or 1")
    out[[0, -1], :] = 0.0
    out[:, [0, -1]] = 0.0
    return out


def toolbox_bumpiness_map(diff: np.ndarray, clip: float = 0.05) -> np.ndarray:
    """Per pixel, the DDFF-12 toolbox's bumpiness of an error map ``diff``: the Frobenius norm of its
    Hessian from repeated Scharr derivatives, sqrt(dxx^2 + dxy^2 + dyy^2 + dyx^2), clipped at ``clip``."""
    dx, dy = scharr(diff, 1), scharr(diff, 0)
    norm = np.sqrt(scharr(dx, 1) ** 2 + scharr(dx, 0) ** 2 + scharr(dy, 0) ** 2 + scharr(dy, 1) ** 2)
    return np.minimum(norm, clip)


def toolbox_metrics(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    thresholds: tuple[float, ...] = DELTA_THRESHOLDS,
    badpix: float | None = None,
    bump_clip: float = 0.05,
) -> dict[str, float] | None:
    """The DDFF-12 toolbox's metrics of one (H, W) image; None if no pixel has ``target`` > 0.

    N = number of pixels with target > 0 (the others are ignored; the prediction is set to 0 there).
    Over those pixels: mse = sum (p - t)^2 / N; rms = sqrt(mse); logrms = sqrt(sum (ln p - ln t)^2 / N),
    natural log, pixels with p <= 0 adding nothing (the toolbox's masked log) but still counted in N;
    absrel = sum |p - t| / t / N; sqrel = sum (p - t)^2 / t / N; delta<k> = 100 * #(p > 0 and
    max(p / t, t / p) < thresholds[k-1]) / N (percent); with ``badpix``, badpix = 100 * #(|p - t| >
    badpix) / N (percent); bump = 100 * sum over those pixels of ``toolbox_bumpiness_map(pred - target)``
    / N, where the error map is of the prediction as given, ignored pixels included (as the toolbox
    does: "PRED or PRED_" it notes, and takes PRED). (The toolbox counts a negative prediction as within
    every delta threshold; here it counts as outside. No protocol here feeds it one.)
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(f"toolbox_metrics: expected two (H, W) arrays, got {pred.shape} and {target.shape}")
    valid = target > 0
    n = int(valid.sum())
    if n == 0:
        return None
    p, t = pred[valid], target[valid]
    err = p - t
    out = {"mse": float(np.sum(err**2) / n)}
    out["rms"] = math.sqrt(out["mse"])
    pos = p > 0
    out["logrms"] = math.sqrt(float(np.sum((np.log(p[pos]) - np.log(t[pos])) ** 2)) / n)
    out["absrel"] = float(np.sum(np.abs(err) / t) / n)
    out["sqrel"] = float(np.sum(err**2 / t) / n)
    ratio = np.maximum(p[pos] / t[pos], t[pos] / p[pos])
    for k, thr in enumerate(thresholds, 1):
        out[f"delta{k}"] = 100.0 * int(np.sum(ratio < thr)) / n
    if badpix is not None:
        out["badpix"] = 100.0 * int(np.sum(np.abs(err) > badpix)) / n
    out["bump"] = 100.0 * float(np.sum(toolbox_bumpiness_map(pred - target, bump_clip)[valid])) / n
    return out


# AiFDepthNet's masks on FoD500 ground truth (metres): suffix -> (lowest, highest, lowest included)
AIFDEPTHNET_MASKS = {"": (0.0, math.inf, False), "_2": (0.0, 2.0, False), "_fp": (0.1, 1.5, True)}


def aifdepthnet_metrics(pred: np.ndarray, gt: np.ndarray, min_pred: float = MIN_DEPTH) -> dict[str, float | None]:
    """AiFDepthNet's metrics of one (H, W) depth map in metres (its test.py, ``DefocusNet_testing``).

    Masks: gt > 0 (suffix ''), 0 < gt <= 2 (suffix '_2'), 0.1 <= gt <= 1.5 (suffix '_fp', the focus
    range of FoD500). Under each: mae = mean |p - g|, mse = mean (p - g)^2, rmse = sqrt(mse). Under
    '_fp' also logrms = sqrt(mean (ln p - ln g)^2), absrel = mean |p - g| / g, sqrel = mean (p - g)^2 / g.
    Nothing is clipped, except the prediction inside the log, at ``min_pred`` (AiFDepthNet's network
    never predicts depth <= 0; ours can, and ln would be undefined). A mask without pixels gives None.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"aifdepthnet_metrics: expected two (H, W) arrays, got {pred.shape} and {gt.shape}")
    out: dict[str, float | None] = {}
    for suffix, (lo, hi, closed) in AIFDEPTHNET_MASKS.items():
        mask = ((gt >= lo) if closed else (gt > lo)) & (gt <= hi)
        keys = ["mae", "mse", "rmse"] + (["logrms", "absrel", "sqrel"] if suffix == "_fp" else [])
        if not mask.any():
            out.update({k + suffix: None for k in keys})
            continue
        p, g = pred[mask], gt[mask]
        err = p - g
        out["mae" + suffix] = float(np.mean(np.abs(err)))
        out["mse" + suffix] = float(np.mean(err**2))
        out["rmse" + suffix] = math.sqrt(out["mse" + suffix])
        if suffix == "_fp":
            out["logrms_fp"] = math.sqrt(float(np.mean((np.log(np.maximum(p, min_pred)) - np.log(g)) ** 2)))
            out["absrel_fp"] = float(np.mean(np.abs(err) / g))
            out["sqrel_fp"] = float(np.mean(err**2 / g))
    return out


def flat_area_mask(aif: torch.Tensor, levels: float = 3.0, size: int = 9) -> torch.Tensor:
    """(B, 3, H, W) true AiF in [0, 1] -> (B, H, W) bool: pixels of large texture-less areas, those whose
    ``size`` x ``size`` neighbourhood has grey-level gradients below ``levels`` (8-bit levels per pixel).

    The gradient is the central difference of the mean of R, G and B (one-sided at the border); a pixel
    is flat when every pixel around it is, so edges and small flat patches between textures drop out.
    """
    grey = aif.float().mean(dim=1) * 255.0
    gy = torch.zeros_like(grey)
    gx = torch.zeros_like(grey)
    gy[:, 1:-1] = (grey[:, 2:] - grey[:, :-2]) / 2
    gx[:, :, 1:-1] = (grey[:, :, 2:] - grey[:, :, :-2]) / 2
    gy[:, 0], gy[:, -1] = grey[:, 1] - grey[:, 0], grey[:, -1] - grey[:, -2]
    gx[:, :, 0], gx[:, :, -1] = grey[:, :, 1] - grey[:, :, 0], grey[:, :, -1] - grey[:, :, -2]
    steep = (torch.hypot(gx, gy) >= levels).float()[:, None]
    near_steep = F.max_pool2d(steep, size, stride=1, padding=size // 2)[:, 0] > 0
    return ~near_steep


class MeanMeter:
    """Means over scenes of per-scene values."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.skipped: dict[str, int] = {}  # scenes whose value was undefined (None), per name

    def add(self, name: str, values: torch.Tensor | float, n: int | None = None) -> None:
        if isinstance(values, torch.Tensor):
            v = values.detach().float().cpu().reshape(-1)
            self.sums[name] = self.sums.get(name, 0.0) + float(v.sum())
            self.counts[name] = self.counts.get(name, 0) + v.numel()
        else:
            self.sums[name] = self.sums.get(name, 0.0) + float(values) * (n or 1)
            self.counts[name] = self.counts.get(name, 0) + (n or 1)

    def add_images(self, name: str, values) -> None:
        """One value per scene; None where the metric is undefined for that scene (no pixel under its
        mask): such a scene is left out of the mean and counted in ``skipped``."""
        for v in values:
            if v is None:
                self.skipped[name] = self.skipped.get(name, 0) + 1
                self.counts.setdefault(name, 0)
                self.sums.setdefault(name, 0.0)
            else:
                self.add(name, float(v))

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k]}
