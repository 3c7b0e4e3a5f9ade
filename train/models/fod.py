"""The full model of "Focus on defocus" (Maximov et al., CVPR 2020) and the paper's ablation variants.

``FocusOnDefocus`` chains DefocusNet -> DepthNet (and optionally AiFNet). Inputs are normalised as in
``focalstack.train.data.Norm``: images in [0, 1], focus distances divided by ``focus_scale``. Outputs,
normalised the same way, in a dict:

- ``defocus``: (B, S, H, W) one defocus map per input image (divided by ``defocus_scale``)
- ``depth``:   (B, H, W) one depth map per stack (divided by ``depth_scale``)
- ``aif``:     (B, 3, H, W) all-in-focus RGB (only with an AiF branch)
- ``edges``:   (B, H, W) edge logits (only with an AiF branch)

Images of any size are replicate-padded to a multiple of 16 and the outputs cropped back. Any stack
length works (1 to 10 and beyond), and the outputs do not depend on the order of the images. A model
moved to channels_last (``model.to(memory_format=torch.channels_last)``) runs its convolutions in it.
"""

from __future__ import annotations

import torch
from torch import nn

from ._stack import memory_format, pad_to_multiple
from .aifnet import AiFNet, aifnet, aifnet_direct
from .defocusnet import DefocusNet, defocusnet
from .depthnet import DepthNet, depthnet


class FocusOnDefocus(nn.Module):
    def __init__(
        self,
        defocus_net: DefocusNet,
        depth_net: DepthNet,
        aif_net: AiFNet | None = None,
        single_image: bool = False,
    ):
        super().__init__()
        self.defocus_net = defocus_net
        self.depth_net = depth_net
        self.aif_net = aif_net
        self.single_image = single_image
        self.multiple = 2 ** max(defocus_net.levels, depth_net.levels)

    @property
    def has_aif(self) -> bool:
        return self.aif_net is not None

    def forward(self, stack: torch.Tensor, focus: torch.Tensor) -> dict[str, torch.Tensor]:
        """stack: (B, S, 3, H, W) in [0, 1]; focus: (B, S) normalised focus distances."""
        if stack.ndim != 5 or stack.shape[2] != 3:
            raise ValueError(f"stack: expected shape (B, S, 3, H, W), got {tuple(stack.shape)}")
        if focus.shape != stack.shape[:2]:
            raise ValueError(f"focus: expected shape {tuple(stack.shape[:2])}, got {tuple(focus.shape)}")
        if self.single_image and stack.shape[1] > 1:
            # The single-image ablation sees one image: the one with the median focus distance, which
            # does not depend on the order of the stack.
            k = (stack.shape[1] - 1) // 2
            idx = focus.argsort(dim=1)[:, k]
            rows = torch.arange(stack.shape[0], device=stack.device)
            stack, focus = stack[rows, idx].unsqueeze(1), focus[rows, idx].unsqueeze(1)
        b, s = stack.shape[:2]
        x, (h, w) = pad_to_multiple(stack.flatten(0, 1), self.multiple)
        # A model moved to channels_last (model.to(memory_format=...)) gets its input in that format too.
        x = x.contiguous(memory_format=memory_format(self.defocus_net))
        defocus, skips = self.defocus_net(x, s)
        plane = focus.reshape(b * s, 1, 1, 1).to(defocus.dtype).expand_as(defocus)
        depth = self.depth_net(torch.cat([defocus, plane], dim=1), s, skips)
        out = {
            "defocus": defocus[..., :h, :w].reshape(b, s, h, w),
            "depth": depth[:, 0, :h, :w],
        }
        if self.aif_net is not None:
            y = self.aif_net(x, s, defocus)
            out["aif"] = y[:, :3, :h, :w]
            out["edges"] = y[:, 3, :h, :w]
        return out


def fod(*, width: int = 16, aif_width: int = 32, aif_blocks: int = 4) -> FocusOnDefocus:
    """The full model: DefocusNet + DepthNet + AiFNet (AiF from images and defocus maps)."""
    return FocusOnDefocus(defocusnet(width=width), depthnet(width=width), aifnet(width=aif_width, blocks=aif_blocks))


def fod_depth(*, width: int = 16) -> FocusOnDefocus:
    """DefocusNet + DepthNet only (no AiF branch): defocus and depth."""
    return FocusOnDefocus(defocusnet(width=width), depthnet(width=width))


def fod_aif_direct(*, width: int = 16, aif_width: int = 32, aif_blocks: int = 4) -> FocusOnDefocus:
    """Ablation: the AiF branch sees the stack only (stack -> AiF directly, no defocus maps)."""
    return FocusOnDefocus(defocusnet(width=width), depthnet(width=width), aifnet_direct(width=aif_width, blocks=aif_blocks))


def fod_single(*, width: int = 16, aif_width: int = 32, aif_blocks: int = 4) -> FocusOnDefocus:
    """Ablation: a single image instead of a stack (the image with the median focus distance), AiF from the
    image and its predicted defocus map (the paper's "single image -> defocus -> AiF")."""
    return FocusOnDefocus(
        defocusnet(width=width),
        depthnet(width=width),
        aifnet(width=aif_width, blocks=aif_blocks),
        single_image=True,
    )


def fod_single_direct(*, width: int = 16, aif_width: int = 32, aif_blocks: int = 4) -> FocusOnDefocus:
    """Ablation: a single image, AiF from the image alone (the paper's "single image -> AiF")."""
    return FocusOnDefocus(
        defocusnet(width=width),
        depthnet(width=width),
        aifnet_direct(width=aif_width, blocks=aif_blocks),
        single_image=True,
    )
