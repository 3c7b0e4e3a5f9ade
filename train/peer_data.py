"""focalstack files in other people's trainers: a ``torch.utils.data.Dataset`` over
``focalstack.dataset.samples.SceneSamples``, in the layout DFV's or AiFDepthNet's training code expects, or
this project's (see that module for each layout's keys, shapes and normalisation).

    from torch.utils.data import DataLoader
    from focalstack.train.peer_data import PeerDataset

    data = PeerDataset(["data/train.h5"], layout="dfv", crop=(224, 224), flips=True, scale=0.2)
    for epoch in range(10):
        data.set_epoch(epoch)
        for stack, depth, focus in DataLoader(data, batch_size=8, shuffle=True, num_workers=4):
            ...

Random subsets, crops and flips are drawn from a generator seeded by (seed, epoch, index): the same epoch
gives the same samples in any worker process, and every epoch gives new ones.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from focalstack.dataset.samples import LAYOUTS, SampleOptions, SceneSamples

__all__ = ["LAYOUTS", "PeerDataset"]


class PeerDataset(torch.utils.data.Dataset):
    """The complete scenes of ``paths`` as tensors in ``layout`` (``SampleOptions`` for the rest)."""

    def __init__(
        self,
        paths: list[str | os.PathLike] | str | os.PathLike,
        layout: str = "focalstack",
        *,
        stack_size: int | None = None,
        random_order: bool = False,
        crop: tuple[int, int] | None = None,
        flips: bool = False,
        scale: float = 1.0,
        max_depth: float = float("inf"),
        seed: int = 0,
    ):
        options = SampleOptions(layout, stack_size, random_order, tuple(crop) if crop else None, flips, scale, max_depth)
        self.samples = SceneSamples(paths, options)
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the next epoch's subsets, crops and flips (call before iterating, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.seed, self.epoch, int(i)))
        return _to_torch(self.samples.sample(int(i), rng))


def _to_torch(value):
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, dict):
        return {k: _to_torch(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_to_torch(v) for v in value)
    return value
