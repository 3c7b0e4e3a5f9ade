"""Evaluation protocols: which published table a number can be compared with, and exactly how it is made.

Papers on FoD500 and DDFF-12 clip, mask and average differently, so a number is comparable only under
its own protocol. A ``Protocol`` is plain data: what it scores (depth in metres, or DDFF-12 disparity
in pixels), what it clips, which pixels it masks, how it averages, its columns with their units, the
public code it follows and the published rows it reproduces; plus a pure ``score`` function that turns
one batch of predictions and ground truth into one value per image and column (None where a column is
undefined for an image, e.g. no pixel under its mask). ``evaluate`` averages those over the images of
a file. The metric functions themselves are in ``metrics``.

A column names the ground truth it needs (``Column.needs``) and the network output it needs
(``Column.output``); a file or model without them gets None ('-'), with a note, never a number.

Protocols (``PROTOCOLS``): ``focalstack`` (this project's; today's numbers), ``dfv``, ``aifdepthnet``,
``ddff12``. docs/evaluation.md states each one in full.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from focalstack.dataset import ddff12

from .metrics import (
    ALL_METRICS,
    MIN_DEPTH,
    aif_psnr,
    aif_ssim,
    aifdepthnet_metrics,
    defocus_mse,
    depth_metrics,
    toolbox_metrics,
    valid_depth,
)

# DDFF-12's light-field calibration (its toolbox's caldata, as DFV and AiFDepthNet use it):
# The constants live with the DDFF-12 import (dataset/ddff12.py), which converts the same way.
DDFF12_K2 = ddff12.K2
DDFF12_FLENS = ddff12.FLENS
DDFF12_BASELINE_M = ddff12.BASELINE_M
DDFF12_F_SUB_PX = ddff12.F_SUB_PX
DDFF12_BF = ddff12.BF  # px * m
DFV_MAX_DEPTH = 1.5  # metres

# Ground truth in a scored batch (``truth``) and network outputs (``pred``), by key:
#   depth_m (B, H, W) m; disparity_px (B, H, W) px; defocus_px (B, S, H, W) px; aif (B, 3, H, W) in [0, 1].
# Pixels without ground truth hold 0 in depth_m and disparity_px.
TRUTH_KEYS = {"depth": "depth_m", "disparity": "disparity_px", "defocus": "defocus_px", "aif": "aif"}

Scores = dict[str, list]  # column key -> one value (float, or None: undefined) per image of the batch


@dataclass(frozen=True)
class Column:
    key: str
    unit: str = ""  # "" for a pure number
    needs: tuple[str, ...] = ("depth",)  # ground truth the file must hold (schema dataset names)
    output: str = "depth"  # network output it needs ("aif": only models with an AiF branch)

    @property
    def label(self) -> str:
        return f"{self.key} ({self.unit})" if self.unit else self.key


@dataclass(frozen=True)
class Published:
    """One published row: a method's numbers in a paper's table, under this protocol's column keys."""

    method: str
    source: str  # paper, table, split, and anything done to the numbers
    values: Mapping[str, float]


@dataclass(frozen=True)
class Protocol:
    name: str
    summary: str  # one line, for --help
    quantity: str  # what is scored, with its unit
    clipping: str
    masks: str
    averaging: str
    follows: str  # the public code whose definitions it follows
    columns: tuple[Column, ...]
    score: Callable[[dict, dict, object], Scores] = field(repr=False, compare=False)
    published: tuple[Published, ...] = ()
    requires: str = ""  # said when a file lacks the ground truth every column needs
    headline: str = ""  # the column reports compare models by (its RMS depth error); empty: none

    def lacking(self, ground_truth: frozenset[str], outputs: frozenset[str]) -> list[Column]:
        """The columns that a file holding ``ground_truth`` and a model giving ``outputs`` cannot support."""
        return [c for c in self.columns if not set(c.needs) <= ground_truth or c.output not in outputs]

    def describe(self) -> dict:
        """Plain data for metrics.json."""
        return {
            "summary": self.summary,
            "quantity": self.quantity,
            "clipping": self.clipping,
            "masks": self.masks,
            "averaging": self.averaging,
            "follows": self.follows,
            "units": {c.key: c.unit for c in self.columns},
        }


# -- scoring -----------------------------------------------------------------------------------------


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().cpu().numpy()


def _per_image(fn, keys: list[str], *arrays: np.ndarray) -> Scores:
    """Apply ``fn`` (one image's arrays -> dict of values, or None when undefined) to each image."""
    results = [fn(*images) for images in zip(*arrays)]
    return {k: [None if r is None else r.get(k) for r in results] for k in keys}


def _defined(values: torch.Tensor, has: torch.Tensor) -> list:
    return [float(v) if h else None for v, h in zip(values.detach().float().cpu(), has.cpu())]


def score_focalstack(pred: dict, truth: dict, norm) -> Scores:
    """This project's metrics (``metrics`` module docstring); depth under ``valid_depth`` with the
    checkpoint's ``norm.max_depth``."""
    out: Scores = {}
    if "depth_m" in truth:
        gt = truth["depth_m"].float()
        mask = valid_depth(gt, norm.max_depth)
        has = mask.flatten(1).any(1)
        for k, v in depth_metrics(pred["depth_m"].float(), gt, mask).items():
            out[k] = _defined(v, has)
    if "defocus_px" in truth:
        mse = defocus_mse(pred["defocus_px"], truth["defocus_px"], truth.get("defocus_mask"))
        out["defocus_mse"] = [float(v) if math.isfinite(v) else None for v in mse.cpu().tolist()]
    if "aif" in truth and "aif" in pred:
        out["aif_ssim"] = [float(v) for v in aif_ssim(pred["aif"], truth["aif"]).cpu()]
        out["aif_psnr"] = [float(v) for v in aif_psnr(pred["aif"], truth["aif"])]
    return out


TOOLBOX_KEYS = ["mse", "rms", "logrms", "absrel", "sqrel", "delta1", "delta2", "delta3"]


def score_dfv(pred: dict, truth: dict, norm) -> Scores:
    """DFV on FoD500: prediction and ground truth clipped to [0, 1.5] m, then the toolbox's metrics
    without badpix (DFV's eval_FoD500.py drops it)."""
    if "depth_m" not in truth:
        return {}
    p = np.clip(_numpy(pred["depth_m"]), 0.0, DFV_MAX_DEPTH)
    g = np.clip(_numpy(truth["depth_m"]), 0.0, DFV_MAX_DEPTH)
    return _per_image(toolbox_metrics, TOOLBOX_KEYS + ["bump"], p, g)


# AiFDepthNet's columns: mae, mse, rmse under each mask; logrms, absrel, sqrel under the focus range only
AIFDEPTHNET_KEYS = [
    k + s for s in ("", "_2", "_fp") for k in ("mae", "mse", "rmse") + (("logrms", "absrel", "sqrel") if s == "_fp" else ())
]


def score_aifdepthnet(pred: dict, truth: dict, norm) -> Scores:
    """AiFDepthNet on FoD500: nothing clipped, ``aifdepthnet_metrics`` per image."""
    if "depth_m" not in truth:
        return {}
    return _per_image(aifdepthnet_metrics, AIFDEPTHNET_KEYS, _numpy(pred["depth_m"]), _numpy(truth["depth_m"]))


def disparity_from_depth(depth_m: np.ndarray, min_depth: float = MIN_DEPTH) -> np.ndarray:
    """DDFF-12 disparity (px) of predicted depth (m): baseline * f_sub / depth, depth clamped to >= 1 mm
    (disparity <= 141 px) so that a network's depth <= 0 gives a finite, positive disparity."""
    return DDFF12_BF / np.maximum(depth_m, min_depth)


def score_ddff12(pred: dict, truth: dict, norm) -> Scores:
    """The DDFF-12 toolbox's metrics on disparity, badpix at 0.07 px; predicted depth converted."""
    if "disparity_px" not in truth:
        return {}
    p = disparity_from_depth(_numpy(pred["depth_m"]))
    return _per_image(
        lambda a, b: toolbox_metrics(a, b, badpix=0.07), TOOLBOX_KEYS + ["badpix", "bump"], p, _numpy(truth["disparity_px"])
    )


# -- the protocols -----------------------------------------------------------------------------------

_FOCALSTACK_UNITS = {"depth_mse": "m^2", "depth_rmse": "m", "depth_sqrel": "m", "defocus_mse": "px^2", "aif_psnr": "dB"}
_NEEDS = {"defocus_mse": ("defocus",), "aif_ssim": ("aif",), "aif_psnr": ("aif",)}

FOCALSTACK = Protocol(
    name="focalstack",
    summary="this project's metrics: depth, defocus maps and the AiF image (as before protocols existed)",
    quantity="depth (m), defocus (px, absolute unless the checkpoint was trained signed), AiF image (RGB in [0, 1])",
    clipping="none (predicted depth clamped to >= 1 mm inside the delta ratios only, where it divides; "
    "the predicted AiF image clamped to [0, 1])",
    masks="depth: ground truth finite, > 0 and <= the checkpoint's max_depth (default 3 m); defocus and AiF: "
    "every pixel of every slice",
    averaging="per image over its valid pixels, then the mean over images (an image without valid pixels "
    "is left out); RMSE is the mean of per-image RMSEs; delta as fractions",
    follows="this project (train/metrics.py); bumpiness after Honauer et al. 2016 with finite differences",
    columns=tuple(
        Column(
            k,
            _FOCALSTACK_UNITS.get(k, ""),
            _NEEDS.get(k, ("depth",)),
            "aif" if k.startswith("aif_") else "defocus" if k.startswith("defocus_") else "depth",
        )
        for k in ALL_METRICS
    ),
    score=score_focalstack,
    headline="depth_rmse",
)

DFV = Protocol(
    name="dfv",
    summary="FoD500 as DFV (Yang et al., CVPR 2022) evaluates it: depth clipped to [0, 1.5] m, DDFF-12 toolbox metrics",
    quantity="depth (m)",
    clipping="prediction and ground truth both clipped to [0, 1.5] m (ground truth beyond 1.5 m counts as "
    "1.5 m, it is not excluded)",
    masks="pixels whose (clipped) ground truth is 0 are ignored",
    averaging="per image: sums over its valid pixels divided by their number (RMS = sqrt of the image's "
    "MSE); then the mean over images (FoD500 test: 100)",
    follows="DFV's eval_FoD500.py (fuy34/DFV) with the DDFF-12 toolbox's calmetrics; Scharr derivatives as "
    "scikit-image 0.16.2, which DFV pins",
    columns=(
        Column("mse", "m^2"),
        Column("rms", "m"),
        Column("logrms"),
        Column("absrel"),
        Column("sqrel", "m"),
        Column("delta1", "%"),
        Column("delta2", "%"),
        Column("delta3", "%"),
        Column("bump"),
    ),
    score=score_dfv,
    headline="rms",
)

_AIF_UNITS = {"mae": "m", "mse": "m^2", "rmse": "m", "logrms": "", "absrel": "", "sqrel": "m"}
_AIF_SOURCE = (
    "AiFDepthNet (Wang et al., ICCV 2021) Table 5, FoD500 test (100 images); placed under the "
    "0.1-1.5 m mask (assumed: the only mask under which its test.py computes AbsRel, which these rows "
    "report; the paper's text was not checked); AbsRel published as {published}, its code's sum over "
    "the 100 images, shown / 100"
)

AIFDEPTHNET = Protocol(
    name="aifdepthnet",
    summary="FoD500 as AiFDepthNet (Wang et al., ICCV 2021) evaluates it: three depth masks, no clipping, "
    "AbsRel averaged per image correctly",
    quantity="depth (m)",
    clipping="none (the prediction is clamped to >= 1 mm inside the log of logrms only)",
    masks="mae, mse, rmse under gt > 0 (no suffix), 0 < gt <= 2 m (_2) and 0.1 <= gt <= 1.5 m (_fp, the "
    "focus range of FoD500); logrms, absrel, sqrel under the last",
    averaging="per image: means over the pixels of each mask (rmse = sqrt of the image's mse); then the mean "
    "over images, for absrel and sqrel too (AiFDepthNet's code sums those over images without "
    "dividing: its AbsRel is 100 x ours on the 100 FoD500 test images); an image with no pixel "
    "under a mask is left out of that mask's means",
    follows="AiFDepthNet's test.py, DefocusNet_testing (albert100121/AiFDepthNet)",
    columns=tuple(Column(k, _AIF_UNITS[k.split("_")[0]]) for k in AIFDEPTHNET_KEYS),
    score=score_aifdepthnet,
    headline="rmse",
    published=(
        Published(
            "DefocusNet",
            _AIF_SOURCE.format(published="13.86"),
            {"mae_fp": 0.0637, "mse_fp": 0.0175, "rmse_fp": 0.1207, "absrel_fp": 0.1386},
        ),
        Published(
            "AiFDepthNet",
            _AIF_SOURCE.format(published="11.15"),
            {"mae_fp": 0.0549, "mse_fp": 0.0127, "rmse_fp": 0.1043, "absrel_fp": 0.1115},
        ),
    ),
)

_DDFF_SOURCE = (
    "DDFF-12 test split, scored by the benchmark server (noted from the field's published DDFF-12 tables without "
    "a table reference; not verified here); {who}"
)

DDFF12 = Protocol(
    name="ddff12",
    summary="DDFF-12 as its toolbox evaluates it: disparity (px) by DDFF-12's calibration, badpix 0.07, bumpiness clip 0.05",
    quantity=f"disparity (px) = baseline * f_sub / depth, baseline * f_sub = {DDFF12_BF:.6f} px m (K2 = "
    f"{DDFF12_K2}, flens = {DDFF12_FLENS}, f_sub = {DDFF12_F_SUB_PX} px); ground truth is the file's "
    "own DDFF-12 disparity",
    clipping="none (predicted depth clamped to >= 1 mm before conversion, so disparity stays finite)",
    masks="pixels whose ground-truth disparity is 0 are ignored",
    averaging="per stack, at the file's full size (DDFF-12: 383 x 552): sums over its valid pixels divided "
    "by their number (RMS = sqrt of the stack's MSE); then the mean over stacks",
    follows="the DDFF-12 toolbox's calmetrics (soyers/ddff-pytorch, BaseDDFFEval.py), as DFV's "
    "eval_DDFF12.py applies it (output cropped to 383 x 552, no clipping); Scharr derivatives as "
    "scikit-image 0.13-0.16",
    columns=(
        Column("mse", "px^2", ("disparity",)),
        Column("rms", "px", ("disparity",)),
        Column("logrms", "", ("disparity",)),
        Column("absrel", "", ("disparity",)),
        Column("sqrel", "px", ("disparity",)),
        Column("delta1", "%", ("disparity",)),
        Column("delta2", "%", ("disparity",)),
        Column("delta3", "%", ("disparity",)),
        Column("badpix", "%", ("disparity",)),
        Column("bump", "", ("disparity",)),
    ),
    score=score_ddff12,
    headline="rms",
    published=(
        Published("DDFF", _DDFF_SOURCE.format(who="Hazirbas et al., ACCV 2018"), {"mse": 9.7e-4}),
        Published("DefocusNet", _DDFF_SOURCE.format(who="Maximov et al., CVPR 2020"), {"mse": 9.1e-4}),
        Published("AiFDepthNet", _DDFF_SOURCE.format(who="Wang et al., ICCV 2021"), {"mse": 8.6e-4}),
    ),
    requires="ddff12 scores disparity against DDFF-12's own ground truth (dataset 'disparity', written by the "
    "DDFF-12 import) with DDFF-12's calibration",
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (FOCALSTACK, DFV, AIFDEPTHNET, DDFF12)}


def resolve_protocols(names) -> list[Protocol]:
    """Protocols by name, in the order given, each once; ValueError naming --protocol otherwise."""
    out: list[Protocol] = []
    for name in names:
        if name not in PROTOCOLS:
            raise ValueError(f"--protocol {name!r}: expected one of {', '.join(PROTOCOLS)}")
        if PROTOCOLS[name] not in out:
            out.append(PROTOCOLS[name])
    if not out:
        raise ValueError(f"--protocol: give at least one of {', '.join(PROTOCOLS)}")
    return out
