"""The training loss of "Focus on defocus": weighted sum of

- ``defocus``:    L2 (mean squared error) on the normalised defocus maps of every slice;
- ``depth``:      L1 on the normalised depth, over valid pixels (``depth_mask``);
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

from focalstack.dataset.cliutil import is_finite_number

TERMS = ("defocus", "depth", "aif", "perceptual", "edges")


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
        for item in items:
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in out:
                raise ValueError(f"--loss-weight {item!r}: expected NAME=VALUE with NAME one of {', '.join(TERMS)}")
            try:
                out[name] = float(value)
            except ValueError:
                raise ValueError(f"--loss-weight {item!r}: {value!r} is not a number") from None
        return cls(**out).check()


class FocusLoss(nn.Module):
    def __init__(self, weights: LossWeights, vgg: nn.Module | None = None):
        super().__init__()
        self.weights = weights
        self.vgg = vgg

    def active_terms(self, has_aif: bool) -> list[str]:
        terms = []
        for name in TERMS:
            if getattr(self.weights, name) <= 0:
                continue
            if name in ("aif", "perceptual", "edges") and not has_aif:
                continue
            if name == "perceptual" and self.vgg is None:
                continue
            terms.append(name)
        return terms

    def forward(self, out: dict, target: dict, share=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and the unweighted terms (detached), all in float32.

        ``share`` (several processes, see ``distributed``): a function from the terms' element counts
        (what each mean divides by) to the factors that turn this process's means into its shares of
        the means over the whole batch; the result is then this process's share of the batch's loss.
        """
        terms: dict[str, torch.Tensor] = {}
        counts: list = []
        for name in self.active_terms("aif" in out):
            if name == "defocus":
                terms[name] = F.mse_loss(out["defocus"].float(), target["defocus"])
                counts.append(target["defocus"].numel())
            elif name == "depth":
                mask = target["depth_mask"]
                valid = mask.sum()
                err = (out["depth"].float() - target["depth"]).abs()
                terms[name] = (err * mask).sum() / valid.clamp(min=1)
                counts.append(valid)
            elif name == "aif":
                terms[name] = F.l1_loss(out["aif"].float(), target["aif"])
                counts.append(target["aif"].numel())
            elif name == "perceptual":
                fp = self.vgg(out["aif"].float())
                ft = self.vgg(target["aif"])
                terms[name] = sum(F.l1_loss(a, b) for a, b in zip(fp, ft)) / len(fp)
                counts.append(target["aif"].numel())  # every feature map's size is proportional to it
            elif name == "edges":
                terms[name] = F.l1_loss(torch.sigmoid(out["edges"].float()), target["edges"])
                counts.append(target["edges"].numel())
        if share is not None and terms:
            device = next(iter(terms.values())).device
            factors = share(torch.stack([torch.as_tensor(c, dtype=torch.float64, device=device) for c in counts]))
            terms = {k: v * f for (k, v), f in zip(terms.items(), factors)}
        total = sum(getattr(self.weights, k) * v for k, v in terms.items())
        return total, {k: v.detach() for k, v in terms.items()}
