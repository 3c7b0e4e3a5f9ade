"""The training loss of "Focus on defocus": weighted sum of

- ``defocus``:    L2 (mean squared error) on the normalised defocus maps of every slice;
- ``depth``:      L1 on the normalised depth, over valid pixels (``depth_mask``); with ``depth_loss =
                  "relative"``, L1 on the error over the true depth (or over ``relative_floor``, where that is
                  larger), so that a near pixel weighs as much as a far one with the same relative error;
- ``aif``:        L1 on the all-in-focus RGB image;
- ``perceptual``: L1 between VGG16 features (relu1_2, relu2_2, relu3_3) of the predicted and the true
                  AiF image; only with a VGG16 weights file, otherwise off;
- ``edges``:      L1 between sigmoid(edge logits) and the Canny edges of the true AiF image.

Terms that the model cannot produce (no AiF branch) or that are weighted 0 are skipped. Every term is a
mean over elements (pixels; valid pixels for depth), which is what lets several processes split a batch
and still add up to its loss (``FocusLoss.forward``'s ``share``; ``distributed``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from focalstack.dataset.numbers import is_finite_number


@dataclass(frozen=True)
class LossTerm:
    """One term of the loss: the ground truth it needs (a schema name, ``data.to_model_inputs``'s target)
    and the model output it reads."""

    name: str
    needs: str
    output: str
    what: str  # the ground truth, for people ("AiF images")


LOSS_TERMS = (
    LossTerm("defocus", "defocus", "defocus", "defocus maps"),
    LossTerm("depth", "depth", "depth", "depth"),
    LossTerm("aif", "aif", "aif", "AiF images"),
    LossTerm("perceptual", "aif", "aif", "AiF images"),
    LossTerm("edges", "edges", "edges", "edges"),
)
TERMS = tuple(t.name for t in LOSS_TERMS)
DEPTH_LOSSES = ("l1", "relative")
TERM = {t.name: t for t in LOSS_TERMS}
# The outputs of every network; the others come from the AiF branch (``FocusOnDefocus.has_aif``).
CORE_OUTPUTS = frozenset({"depth", "defocus"})


@dataclass
class LossWeights:
    defocus: float = 1.0
    depth: float = 1.0
    aif: float = 1.0
    perceptual: float = 0.1
    edges: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> "LossWeights":
        """ValueError naming the first weight that is not a finite number >= 0."""
        for name, w in self.to_dict().items():
            if not (is_finite_number(w) and w >= 0):
                raise ValueError(f"--loss-weight {name}={w!r}: expected a finite number >= 0")
        return self

    @classmethod
    def parse(cls, items: list[str] | tuple[str, ...], base: "LossWeights | None" = None) -> "LossWeights":
        """'depth=2' items over ``base``; ValueError naming a bad item."""
        out = dict((base or cls()).to_dict())
        seen: set[str] = set()
        for item in items:
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in out:
                raise ValueError(f"--loss-weight {item!r}: expected NAME=VALUE with NAME one of {', '.join(TERMS)}")
            if name in seen:  # the last would win without a word
                raise ValueError(f"--loss-weight {item!r}: {name} was given a weight already; give each term once")
            seen.add(name)
            try:
                out[name] = float(value)
            except ValueError:
                raise ValueError(f"--loss-weight {item!r}: {value!r} is not a number") from None
        return cls(**out).check()


def describe_depth_loss(config: dict) -> str:
    """A run's depth loss in words, from its config (``TrainConfig.to_dict``; configs from before
    ``depth_loss`` trained with L1)."""
    if config.get("depth_loss", "l1") != "relative":
        return "L1 depth loss"
    floor = float(config.get("relative_floor") or 0.0)
    return "relative depth loss" + (f" (over at least {floor:g} m)" if floor else "")


def describe_loss(config: dict) -> str:
    """A run's loss in words, for model cards: the depth loss and every term's weight."""
    weights = LossWeights(**(config.get("loss_weights") or {}))
    return f"{describe_depth_loss(config)}; term weights " + ", ".join(f"{k} {v:g}" for k, v in weights.to_dict().items())


class FocusLoss(nn.Module):
    """``held``: the ground truth at least one training file holds (None: all); terms that need other
    ground truth are off (``active_terms``)."""

    def __init__(
        self, weights: LossWeights, vgg: nn.Module | None = None, held=None, depth_loss: str = "l1", relative_floor: float = 0.0
    ):
        super().__init__()
        if depth_loss not in DEPTH_LOSSES:
            raise ValueError(f"depth loss {depth_loss!r}: expected one of {', '.join(DEPTH_LOSSES)}")
        self.weights = weights
        self.depth_loss = depth_loss
        self.relative_floor = relative_floor  # normalised depth; below it the relative loss weighs pixels alike
        self.vgg = vgg
        self.held = None if held is None else frozenset(held)

    def active_terms(self, has_aif: bool, held=...) -> list[str]:
        """The terms computed: weighted above 0, produced by the model (AiF branch), with VGG weights for
        the perceptual term, and with ground truth in at least one training file (``held``: the names of
        ground truth any of them holds; None: all; default: the loss's own)."""
        held = self.held if held is ... else held
        terms = []
        for term in LOSS_TERMS:
            if getattr(self.weights, term.name) <= 0:
                continue
            if term.output not in CORE_OUTPUTS and not has_aif:
                continue
            if term.name == "perceptual" and self.vgg is None:
                continue
            if held is not None and term.needs not in held:
                continue
            terms.append(term.name)
        return terms

    def forward(self, out: dict, target: dict, share=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and the unweighted terms (detached), all in float32.

        Each term is a mean over the elements that have ground truth: samples of files without AiF images
        (or edges, or defocus maps) and pixels without defocus (``target``'s masks, ``data.to_model_inputs``)
        are left out; a batch with none gives the term 0 (counted as 0 elements).

        ``share`` (several processes, see ``distributed``): a function from the terms' element counts
        (what each mean divides by) to the factors that turn this process's means into its shares of
        the means over the whole batch; the result is then this process's share of the batch's loss.
        """
        terms: dict[str, torch.Tensor] = {}
        counts: list = []
        zero = out["depth"].float().sum() * 0  # a term with no ground truth in the batch: 0, in the graph
        for name in self.active_terms("aif" in out):
            if name == "defocus":
                if "defocus" not in target:
                    terms[name], n = zero, 0
                else:
                    terms[name], n = _masked(F.mse_loss, out["defocus"].float(), target["defocus"], target.get("defocus_mask"))
            elif name == "depth":
                mask = target["depth_mask"]
                valid = mask.sum()
                err = (out["depth"].float() - target["depth"]).abs()
                if self.depth_loss == "relative":  # masked pixels have depth 0: clamped, then multiplied by 0
                    err = err / target["depth"].clamp(min=max(self.relative_floor, 1e-3))
                terms[name], n = (err * mask).sum() / valid.clamp(min=1), valid
            else:  # aif, perceptual, edges: a per-sample validity flag
                key = TERM[name].needs
                if key not in target:
                    terms[name], n = zero, 0
                    counts.append(n)
                    continue
                valid = target[f"{key}_valid"]
                if name == "aif":
                    terms[name], n = _masked(F.l1_loss, out["aif"].float(), target["aif"], _per_sample(valid, target["aif"]))
                elif name == "edges":
                    terms[name], n = _masked(
                        F.l1_loss, torch.sigmoid(out["edges"].float()), target["edges"], _per_sample(valid, target["edges"])
                    )
                elif not bool(valid.any()):  # perceptual, on the samples that have an AiF image
                    terms[name], n = zero, 0
                else:
                    picked = slice(None) if bool(valid.all()) else valid
                    fp = self.vgg(out["aif"].float()[picked])
                    ft = self.vgg(target["aif"][picked])
                    terms[name] = sum(F.l1_loss(a, b) for a, b in zip(fp, ft)) / len(fp)
                    # every feature map's size is proportional to the image's
                    n = int(valid.sum()) * target["aif"][0].numel()
            counts.append(n)
        if share is not None and terms:
            device = next(iter(terms.values())).device
            factors = share(torch.stack([torch.as_tensor(c, dtype=torch.float64, device=device) for c in counts]))
            terms = {k: v * f for (k, v), f in zip(terms.items(), factors)}
        total = sum(getattr(self.weights, k) * v for k, v in terms.items())
        return total, {k: v.detach() for k, v in terms.items()}


def _per_sample(valid: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) bool -> a mask of ``like``'s shape."""
    return valid.view(-1, *([1] * (like.ndim - 1))).expand_as(like)


def _masked(loss_fn, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None):
    """(mean of ``loss_fn``'s per-element values over ``mask``, element count). Where every element
    counts, ``loss_fn``'s own mean, exactly as without masks."""
    if mask is None or bool(mask.all()):
        return loss_fn(pred, target), target.numel()
    valid = mask.sum()
    per_element = loss_fn(pred, target, reduction="none")
    return (per_element * mask).sum() / valid.clamp(min=1), valid
