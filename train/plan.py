"""Planning: every random choice about training and evaluation samples, made in the main process from
seeds alone, so that an epoch can be replayed exactly (``--resume`` mid-epoch) and the result does not
depend on the number of DataLoader workers or processes.

- ``split_scenes``: a file's held-out validation scenes;
- ``plan_epoch``: every batch of a training epoch as ``SampleKey`` lists (file, scene, slices in order,
  flips, transpose, crop, capture), from (seed, epoch);
- ``plan_eval`` / ``plan_subsets``: evaluation batches (All, Random; K-slice subsets), never mixing files;
- ``share_batch``: one process's share of a planned batch under DistributedDataParallel;
- ``PlannedBatches``: a batch sampler over planned batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .augment import Capture, CaptureAugment

# The evaluation plan's dimensions, defined here once: the paper's settings (every slice in focus order, or a
# seeded random subset), the order of a stack subset's slices, and the image region scored.
SETTINGS = ("All", "Random")
ORDERS = ("sorted", "random")
REGIONS = ("all", "flat")

if TYPE_CHECKING:
    from .data import SourceInfo


def split_scenes(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) scene indices of a file: a seeded random ``val_fraction`` of the scenes (at least
    one if the fraction is > 0 and the file has two or more scenes) is held out."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"--val-fraction {val_fraction}: expected a number in [0, 1)")
    order = np.random.default_rng([seed, 0x5EED, n]).permutation(n)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@dataclass(frozen=True)
class SampleKey:
    """Everything random about one training sample, decided by the planner."""

    file: int
    scene: int
    slices: tuple[int, ...]  # indices into the file's slices, in the order the network sees them
    flip_h: bool = False
    flip_v: bool = False
    crop: tuple[int, int, int, int] | None = None  # (y, x, h, w)
    transpose: bool = False  # rows and columns swapped, after the crop and flips
    capture: Capture | None = None  # the stack re-captured with sensor noise and JPEG (--capture-augment)


@dataclass
class PlanSettings:
    batch_size: int
    stack_size: int
    random_stack: bool = False  # random length 1..stack_size per batch, random order
    single_image: bool = False  # one random slice per sample
    crop: tuple[int, int] | None = None
    flips: bool = True
    # Random transposes: with the flips, all eight orientations of a square image (the lens is round, so
    # blur is the same in every one). Drawn only when on, so that plans without them stay as they were.
    transposes: bool = False
    samples_per_epoch: int | None = None
    # Sensor noise and JPEG on a share of the samples; drawn only when on, as the transposes.
    capture: CaptureAugment | None = None


def plan_epoch(
    sources: list[SourceInfo], train_scenes: list[np.ndarray], settings: PlanSettings, seed: int, epoch: int
) -> list[list[SampleKey]]:
    """All batches of one training epoch, from (seed, epoch) alone."""
    rng = np.random.default_rng([seed, epoch])
    files = np.concatenate([np.full(len(t), i) for i, t in enumerate(train_scenes)]).astype(int)
    scenes = np.concatenate(train_scenes).astype(int)
    total = len(scenes)
    if total == 0:
        raise ValueError("no training scenes left after the validation split")
    weights = np.array([sources[i].weight for i in files], dtype=np.float64)
    n = settings.samples_per_epoch or total
    if np.all(weights == weights[0]) and n <= total:
        picks = rng.permutation(total)[:n]
    else:
        picks = rng.choice(total, size=n, replace=True, p=weights / weights.sum())
    batches = []
    bs = settings.batch_size
    for start in range(0, n, bs):
        chunk = picks[start : start + bs]
        if settings.single_image:
            length = 1
        elif settings.random_stack:
            length = int(rng.integers(1, settings.stack_size + 1))
        else:
            length = settings.stack_size
        batch = []
        for j in chunk:
            src = sources[files[j]]
            n = src.distinct(int(scenes[j]))
            if settings.random_stack or settings.single_image:
                slices = rng.choice(n, size=min(length, n), replace=False)
            elif length < n:
                slices = np.sort(rng.choice(n, size=length, replace=False))
            else:
                slices = np.arange(n)
            if len(slices) < length:  # a short stack: repeat some of its slices
                slices = np.concatenate([slices, rng.choice(slices, size=length - len(slices))])
            flip_h = bool(rng.integers(2)) if settings.flips else False
            flip_v = bool(rng.integers(2)) if settings.flips else False
            crop = None
            if settings.crop is not None:
                ch, cw = settings.crop
                h, w = src.image_size
                crop = (int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1)), ch, cw)
            transpose = bool(rng.integers(2)) if settings.transposes else False
            capture = settings.capture.draw(rng) if settings.capture is not None else None
            slices = tuple(int(s) for s in slices)
            batch.append(SampleKey(int(files[j]), int(scenes[j]), slices, flip_h, flip_v, crop, transpose, capture))
        batches.append(batch)
    return batches


def plan_eval(
    sources: list[SourceInfo],
    scenes: list[np.ndarray],
    batch_size: int,
    setting: str = "All",
    seed: int = 0,
    single_image: bool = False,
) -> list[list[SampleKey]]:
    """Evaluation batches, never mixing files, at full image size, no flips.

    ``All``: every distinct slice, in focus order. ``Random``: per scene a seeded random number of
    distinct slices (1 to all) in random order. Scenes with the same length are batched together.
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting {setting!r}: expected All or Random")
    batches = []
    for fi, idx in enumerate(scenes):
        src = sources[fi]
        # The same draws for every file: a file's subsets must not depend on where it stands among --data (0: the
        # draws the first file always had).
        rng = np.random.default_rng([seed, 0xE7A1, 0])
        keys = []
        for scene in idx:
            n = src.distinct(int(scene))
            if setting == "All":
                slices = tuple(range(n))
            else:
                length = int(rng.integers(1, n + 1))
                slices = tuple(int(s) for s in rng.choice(n, size=length, replace=False))
            keys.append(SampleKey(fi, int(scene), slices))
        keys.sort(key=lambda k: len(k.slices))  # stable: scene order within one length
        for start in range(0, len(keys), batch_size):
            chunk = keys[start : start + batch_size]
            # split where the length changes so that each batch has one stack length
            run = [chunk[0]]
            for k in chunk[1:]:
                if len(k.slices) != len(run[0].slices):
                    batches.append(run)
                    run = []
                run.append(k)
            batches.append(run)
    return batches


def plan_subsets(
    sources: list[SourceInfo], scenes: list[np.ndarray], batch_size: int, stack_size: int, order: str, seed: int = 0
) -> list[list[SampleKey]]:
    """Evaluation batches of ``stack_size`` slices per scene: a seeded random choice of that many of the
    scene's distinct slices, kept in focus order (``order = "sorted"``) or shuffled (``"random"``). Scenes
    with fewer distinct slices are left out. The choice depends on the seed, the stack size and the scene's
    place in its file only, so the two orders see the same slices."""
    if order not in ORDERS:
        raise ValueError(f"order {order!r}: expected sorted or random")
    batches = []
    for fi, idx in enumerate(scenes):
        rng = np.random.default_rng([seed, 0x5B5E7, 0, stack_size])  # as in plan_eval: not the file's place
        keys = []
        for scene in idx:
            n = sources[fi].distinct(int(scene))
            chosen = np.sort(rng.choice(n, size=min(stack_size, n), replace=False))
            shuffled = rng.permutation(chosen)
            if n >= stack_size:
                keys.append(SampleKey(fi, int(scene), tuple(int(s) for s in (chosen if order == "sorted" else shuffled))))
        batches += [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]
    return batches


@dataclass(frozen=True)
class Share:
    """One process's part of a planned batch (several processes, ``distributed``). ``counted`` False:
    a stand-in for a process that the batch has no stack for; it trains on it with weight zero."""

    keys: list[SampleKey]
    counted: bool = True


def share_batch(batch: list[SampleKey], rank: int, world_size: int) -> Share:
    """Process ``rank``'s share of ``batch``: its stacks rank, rank + world_size, ...; when there are
    more processes than stacks, those left over get the first stack, not counted."""
    keys = batch[rank::world_size]
    return Share(keys) if keys else Share(batch[:1], counted=False)


class PlannedBatches(torch.utils.data.Sampler):
    """A batch sampler over precomputed batches of keys, starting at batch ``start``."""

    def __init__(self, batches: list[list[SampleKey]], start: int = 0):
        self.batches, self.start = batches, start

    def __iter__(self):
        return iter(self.batches[self.start :])

    def __len__(self) -> int:
        return max(len(self.batches) - self.start, 0)
