"""Held-out files read for evaluation, with whatever ground truth they hold: which ground truth a file
gives (``inspect_eval_source``), its samples with exactly those arrays (``EvalSamples``), and a batch
turned into the network's inputs and the truth the protocols score (``prepare_eval_batch``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from focalstack.dataset import DatasetError

from .data import FocalStackDataset, Norm, SourceInfo, inspect_source
from .protocols import PROTOCOLS, TRUTH_KEYS

# What evaluation reads, where a file has it: the ground truth some protocol's column needs.
EVAL_GROUND_TRUTH = tuple(sorted({name for p in PROTOCOLS.values() for c in p.columns for name in c.needs}))
assert set(EVAL_GROUND_TRUTH) == set(TRUTH_KEYS), "every ground truth a column needs has its key in a scored batch"


@dataclass(frozen=True)
class EvalSource:
    info: SourceInfo
    ground_truth: frozenset[str]  # of EVAL_GROUND_TRUTH, what the file holds
    no_data: dict = field(default_factory=dict)  # dataset -> the value that marks pixels without ground truth


def inspect_eval_source(path: str) -> EvalSource:
    """``data.inspect_source`` asking for the ground truth evaluation reads."""
    info = inspect_source(path, ground_truth=EVAL_GROUND_TRUTH)
    return EvalSource(info, info.ground_truth, info.no_data)


def without_no_data(values: np.ndarray, no_data: float | None) -> np.ndarray:
    """float32 copy of a depth or disparity map with 0 where it has no ground truth: not finite, or
    equal to the file's ``no_data`` value."""
    v = np.array(values, dtype=np.float32)
    bad = ~np.isfinite(v)
    if no_data is not None and not math.isnan(no_data):
        bad |= v == np.float32(no_data)
    v[bad] = 0.0
    return v


class EvalSamples(FocalStackDataset):
    """Reads evaluation keys (full frames, no flips): stack (L, 3, H, W) uint8, focus (L,) m, and of
    depth (H, W) m, disparity (H, W) px, defocus (L, H, W) px, aif (3, H, W) uint8 exactly those the
    file holds, so that the samples of one file (and so of one batch) have the same keys."""

    def __init__(self, sources: list[EvalSource], align_slices: bool = False):
        super().__init__([s.info.path for s in sources], align_slices=align_slices)
        self.held = [s.ground_truth for s in sources]
        self.no_data = [s.no_data for s in sources]

    def __getitem__(self, key) -> dict:
        """The training reader's sample (``read_sample``) of exactly the ground truth the file holds; depth and
        disparity with 0 where the file has none (not finite, or its declared no-data value)."""
        f = self._file(key.file)
        names = ("stack", *sorted(self.held[key.file]))
        missing = [n for n in names if not f.has(n)]
        if missing:
            raise DatasetError(f"{f.path}: scene {key.scene} has no {missing[0]!r}, which the file says it holds")
        sample = self.read_sample(key, names, stand_ins=False)
        for name in ("depth", "disparity"):
            if name in sample:
                sample[name] = torch.from_numpy(without_no_data(sample[name].numpy(), self.no_data[key.file].get(name)))
        return sample


def prepare_eval_batch(batch: dict, norm: Norm, device: torch.device) -> tuple[dict, dict]:
    """(inputs, truth) on ``device``: inputs as ``data.to_model_inputs`` makes them; truth holds
    depth_m, disparity_px, defocus_px (absolute unless ``norm.signed_defocus``), aif in [0, 1], each only
    if the batch has it (``protocols.TRUTH_KEYS``)."""
    nb = device.type == "cuda"
    inputs = {
        "stack": norm.stack(batch["stack"].to(device, non_blocking=nb)),
        "focus": norm.focus(batch["focus"].to(device, non_blocking=nb)),
    }
    truth = {}
    for name, key in TRUTH_KEYS.items():
        if name not in batch:
            continue
        value = batch[name].to(device, non_blocking=nb)
        if name == "aif":
            value = value.float().div_(255.0)
        elif name == "defocus":
            truth["defocus_mask"] = torch.isfinite(value)  # imports have none where depth is unknown
            value = torch.nan_to_num(value if norm.signed_defocus else value.abs(), nan=0.0, posinf=0.0, neginf=0.0)
        truth[key] = value
    return inputs, truth
