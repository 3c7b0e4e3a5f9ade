"""Baselines to print beside a trained network: what it must beat to have learnt anything from the stack.

``ConstantDepth`` answers every scene with one depth, the mean true depth of its training data (the
constant with the least squared error there), and zero defocus (every pixel in focus). It has a network's
outputs (``models.fod``), so ``evaluate.evaluate_model`` scores it under every protocol, setting and region
exactly as it scores a network.
"""

from __future__ import annotations

import torch

from focalstack.dataset import FocalStackFile

from .data import Norm
from .metrics import valid_depth


class ConstantDepth(torch.nn.Module):
    """One depth everywhere, zero defocus; outputs normalised by ``norm`` like a network's."""

    has_aif = False

    def __init__(self, depth_m: float, norm: Norm):
        super().__init__()
        self.depth_m = float(depth_m)
        self.register_buffer("depth", torch.tensor(self.depth_m / norm.depth_scale))

    def forward(self, stack: torch.Tensor, focus: torch.Tensor) -> dict[str, torch.Tensor]:
        b, s, _, h, w = stack.shape
        return {"depth": self.depth.to(stack.dtype).expand(b, h, w).clone(), "defocus": stack.new_zeros(b, s, h, w)}


def mean_depth(paths: list[str], max_depth: float) -> float:
    """Mean true depth (m) over the valid pixels (``metrics.valid_depth``) of every scene of ``paths``, read a
    scene at a time. ValueError when none of them has a valid depth pixel."""
    total, count = 0.0, 0
    for path in paths:
        with FocalStackFile(path) as f:
            for i in range(len(f)):
                depth = torch.from_numpy(f.read("depth", i).astype("float64"))
                mask = valid_depth(depth, max_depth)
                total += float(depth[mask].sum())
                count += int(mask.sum())
    if count == 0:
        raise ValueError(f"{', '.join(paths)}: no valid depth pixel to take a mean of")
    return total / count
