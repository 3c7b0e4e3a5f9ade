"""Scenes of focalstack files as training samples for other people's trainers, without torch (a thin torch
``Dataset`` around this is ``focalstack.train.peer_data``).

Each sample is one scene with random stack subsets, crops and flips drawn from a ``numpy.random.Generator``
the caller passes, laid out as a trainer expects (``LAYOUTS``):

- ``focalstack``: a dict of ``stack`` (S, 3, H, W) float32 RGB in [0, 1], ``focus_distance`` (S,) metres,
  ``depth`` (H, W) metres (0 where there is no ground truth), ``aif`` (3, H, W) in [0, 1], ``defocus``
  (S, H, W) signed blur diameter in pixels, and what is absent: ``depth_valid`` (H, W) bool, ``has_aif`` and
  ``has_defocus`` (zeros stand in for absent arrays, so every sample has the same keys and shapes);
- ``dfv``: DFV's ``dataloader/FoD500.py`` (Yang et al., CVPR 2022): the tuple ``(stack, depth, focus)``:
  stack (S, 3, H, W) float32 RGB divided by 255 and normalised by ImageNet's mean (0.485, 0.456, 0.406) and
  std (0.229, 0.224, 0.225), depth (1, H, W) and focus distances (S,) both multiplied by ``scale`` (DFV's
  train.py uses 0.2 for FoD500); DFV trains on random 224 px crops with horizontal and vertical flips;
- ``aifdepthnet``: the dict AiFDepthNet's network reads (Wang et al., ICCV 2021; its repository has no
  training loader, so this follows its test.py and model): ``stack_rgb_img`` (3, S, H, W) float32 RGB in
  [0, 1], ``focus_position`` (1, S) metres, ``depth`` (1, H, W) metres and ``AiF_img`` (3, H, W) in [0, 1].

Depth beyond ``max_depth`` or without ground truth is 0 and ``depth_valid`` is False there; what a scene's
file lacks (imported FoD500 has no AiF image; DDFF-12 no defocus maps) is zeros with ``has_*`` False.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .reader import FocalStackFile
from .schema import DatasetError

LAYOUTS = ("focalstack", "dfv", "aifdepthnet")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass(frozen=True)
class SampleOptions:
    layout: str = "focalstack"
    stack_size: int | None = None  # slices per sample, a random subset (None: every distinct slice)
    random_order: bool = False  # shuffle the slices (else focus order)
    crop: tuple[int, int] | None = None  # (h, w) random crop
    flips: bool = False  # random horizontal and vertical flips (each with probability 1/2)
    scale: float = 1.0  # depth and focus distances are multiplied by this (layout dfv; DFV uses 0.2)
    max_depth: float = float("inf")  # metres; depth beyond is not ground truth

    def check(self) -> "SampleOptions":
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout {self.layout!r}: expected one of {', '.join(LAYOUTS)}")
        if self.stack_size is not None and (not isinstance(self.stack_size, int) or self.stack_size < 1):
            raise ValueError(f"stack_size {self.stack_size!r}: expected a positive integer or None")
        if self.crop is not None and (len(self.crop) != 2 or min(self.crop) < 1):
            raise ValueError(f"crop {self.crop!r}: expected (height, width) in pixels")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale {self.scale!r}: expected a finite number > 0")
        return self


def pick_slices(n: int, want: int, random_order: bool, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``want`` of a scene's ``n`` slices: a random subset in focus order when fewer are wanted,
    shuffled with ``random_order``, and a shorter stack's last slice repeated (as the file does)."""
    slices = np.arange(n)
    if want < n:
        slices = np.sort(rng.choice(n, want, replace=False))
    if random_order:
        slices = rng.permutation(slices)
    if len(slices) < want:
        slices = np.concatenate([slices, np.full(want - len(slices), slices[-1])])
    return slices


def in_layout(o: SampleOptions, arrays: dict, has_aif: bool, has_defocus: bool):
    """One sample (channels-first arrays) as the options' ``layout`` hands it out: DFV's tuple,
    AiFDepthNet's dict, or focalstack's own dict with masks."""
    stack, focus, depth = arrays["stack"], arrays["focus_distance"], arrays["depth"]
    if o.layout == "dfv":
        normed = (stack - IMAGENET_MEAN[None, :, None, None]) / IMAGENET_STD[None, :, None, None]
        return normed.astype(np.float32), (depth * o.scale)[None].astype(np.float32), (focus * o.scale).astype(np.float32)
    if o.layout == "aifdepthnet":
        return {
            "stack_rgb_img": np.ascontiguousarray(stack.transpose(1, 0, 2, 3)),
            "focus_position": focus[None],
            "depth": depth[None],
            "AiF_img": arrays["aif"],
        }
    return {**arrays, "has_aif": has_aif, "has_defocus": has_defocus}


class SceneSamples:
    """The complete scenes of ``paths`` (in order) as samples: ``len()``, and ``sample(i, rng)``."""

    def __init__(self, paths: list[str | os.PathLike] | str | os.PathLike, options: SampleOptions = SampleOptions()):
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        self.options = options.check()
        self.index: list[tuple[int, int]] = []  # (file, scene)
        for k, p in enumerate(self.paths):
            with FocalStackFile(p) as f:
                h, w = f.image_size
                if options.crop and (options.crop[0] > h or options.crop[1] > w):
                    raise DatasetError(f"{p}: images of {h} x {w} px are smaller than the crop {options.crop}")
                if options.stack_size and options.stack_size > f.n_slices:
                    raise DatasetError(f"{p}: stacks of {f.n_slices} slices, fewer than stack_size {options.stack_size}")
                self.index += [(k, i) for i in range(len(f))]
        self._files: dict[int, FocalStackFile] = {}  # opened lazily, per process (DataLoader workers)
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.index)

    def _file(self, k: int) -> FocalStackFile:
        if self._pid != os.getpid():  # a forked worker must not share the parent's HDF5 handles
            self._files, self._pid = {}, os.getpid()
        if k not in self._files:
            self._files[k] = FocalStackFile(self.paths[k])
        return self._files[k]

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __getstate__(self):  # open files do not travel to worker processes
        return {**self.__dict__, "_files": {}, "_pid": None}

    def sample(self, i: int, rng: np.random.Generator):
        """Scene ``i`` with the options' random subset, order, crop and flips drawn from ``rng``."""
        k, scene = self.index[i]
        rec = self._file(k)[scene]
        o = self.options
        stored = len(rec.focus_distance)
        n = min(int(rec.stack_size), stored) if rec.stack_size is not None else stored
        want = o.stack_size or stored  # every sample of a file has this many slices, so that batches stack
        slices = pick_slices(n, want, o.random_order, rng)
        stack = rec.stack[slices].astype(np.float32) / 255.0  # (S, H, W, 3) RGB
        h, w = stack.shape[1:3]
        depth = np.zeros((h, w), np.float32) if rec.depth is None else np.asarray(rec.depth, np.float32)
        valid = np.isfinite(depth) & (depth > 0) & (depth <= o.max_depth)
        depth = np.where(valid, depth, 0).astype(np.float32)
        has_aif, has_defocus = rec.aif is not None, rec.defocus is not None
        aif = rec.aif.astype(np.float32) / 255.0 if rec.aif is not None else np.zeros((h, w, 3), np.float32)
        defocus = (
            np.nan_to_num(np.asarray(rec.defocus, np.float32)[slices])
            if has_defocus
            else np.zeros((len(slices), h, w), np.float32)
        )
        y0 = x0 = 0
        ch, cw = o.crop or (h, w)
        if o.crop:
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        window = (slice(y0, y0 + ch), slice(x0, x0 + cw))
        stack, aif = stack[:, window[0], window[1]], aif[window]
        depth, valid, defocus = depth[window], valid[window], defocus[:, window[0], window[1]]
        if o.flips:
            for axis in (0, 1):  # vertical, then horizontal, each with probability 1/2
                if rng.random() < 0.5:
                    stack, aif = np.flip(stack, axis + 1), np.flip(aif, axis)
                    depth, valid, defocus = np.flip(depth, axis), np.flip(valid, axis), np.flip(defocus, axis + 1)
        focus = np.asarray(rec.focus_distance, np.float32)[slices]
        stack_chw = np.ascontiguousarray(stack.transpose(0, 3, 1, 2))  # (S, 3, H, W)
        aif_chw = np.ascontiguousarray(aif.transpose(2, 0, 1))
        depth = np.ascontiguousarray(depth)
        arrays = {"stack": stack_chw, "focus_distance": focus, "depth": depth, "aif": aif_chw}
        arrays |= {"defocus": np.ascontiguousarray(defocus), "depth_valid": np.ascontiguousarray(valid)}
        return in_layout(o, arrays, has_aif, has_defocus)
