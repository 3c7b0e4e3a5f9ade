"""Evaluation metrics of "Focus on defocus", per image, vectorised over a batch.

Depth (metres, over valid pixels, see ``data.Norm``): MSE, RMSE, AbsRel = mean(|p - g| / g),
SqRel = mean((p - g)^2 / g), delta_k = fraction of pixels with max(p / g, g / p) < 1.25^k (k = 1, 2, 3),
and bumpiness (Honauer et al., 2016, as used by the paper): the Frobenius norm of the Hessian of the
error p - g (finite differences, pixel spacing 1), clipped at 0.05, averaged over valid pixels whose 3x3
neighbourhood is valid, times 100. Predicted depth is clamped to >= 1 mm for the ratios.
Defocus: MSE in pixels^2 over all slices. AiF: SSIM (pytorch-msssim, Gaussian window 11, sigma 1.5) and
PSNR (OpenCV's cv2.PSNR) of the image clamped to [0, 1], data range 1.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

DEPTH_METRICS = ("depth_mse", "depth_rmse", "depth_absrel", "depth_sqrel", "delta1", "delta2", "delta3", "bumpiness")
ALL_METRICS = DEPTH_METRICS + ("defocus_mse", "aif_ssim", "aif_psnr")
MIN_DEPTH = 1e-3


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


def defocus_mse(pred_px: torch.Tensor, gt_px: torch.Tensor) -> torch.Tensor:
    """(B, S, H, W) defocus maps in pixels -> (B,) mean squared error."""
    return ((pred_px.float() - gt_px.float()) ** 2).flatten(1).mean(1)


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


class MeanMeter:
    """Means over scenes of per-scene values."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, values: torch.Tensor | float, n: int | None = None) -> None:
        if isinstance(values, torch.Tensor):
            v = values.detach().float().cpu().reshape(-1)
            self.sums[name] = self.sums.get(name, 0.0) + float(v.sum())
            self.counts[name] = self.counts.get(name, 0) + v.numel()
        else:
            self.sums[name] = self.sums.get(name, 0.0) + float(values) * (n or 1)
            self.counts[name] = self.counts.get(name, 0) + (n or 1)

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k]}
