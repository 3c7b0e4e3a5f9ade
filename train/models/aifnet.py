"""AiFNet: the all-in-focus image and its edge map from a focal stack.

A refining network at full resolution (no auto-encoder): each branch takes one image of the stack and,
unless built as the "stack -> AiF directly" ablation, its predicted defocus map. A stem conv is followed
by residual blocks; the first conv of every block sees the branch's features concatenated with their
maximum over the stack. The head takes the maximum over the stack of the last features and outputs
the RGB all-in-focus image (linear, in [0, 1] when trained) and one edge logit per pixel.
"""

from __future__ import annotations

import torch
from torch import nn

from ._stack import StackConv, act, conv3x3, init_weights, stack_max


class StackResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = StackConv(width, width, width)
        self.conv2 = conv3x3(width, width)
        self.act = act()

    def forward(self, x: torch.Tensor, s: int) -> torch.Tensor:
        y = self.act(self.conv1(x, stack_max(x, s), s))
        return x + self.conv2(y)


class AiFNet(nn.Module):
    def __init__(self, width: int = 32, blocks: int = 4, use_defocus: bool = True):
        super().__init__()
        self.width, self.use_defocus = width, use_defocus
        self.stem = conv3x3(4 if use_defocus else 3, width)
        self.blocks = nn.ModuleList(StackResBlock(width) for _ in range(blocks))
        self.head = conv3x3(width, width)
        self.out = conv3x3(width, 4)
        self.act = act()
        init_weights(self)

    def forward(self, images: torch.Tensor, s: int, defocus: torch.Tensor | None = None) -> torch.Tensor:
        """images (B*S, 3, H, W), defocus (B*S, 1, H, W) or None; returns (B, 4, H, W): RGB, edge logit."""
        x = torch.cat([images, defocus], dim=1) if self.use_defocus else images
        x = self.act(self.stem(x))
        for block in self.blocks:
            x = block(x, s)
        x = self.act(self.head(stack_max(x, s)))
        return self.out(x)


def aifnet(*, width: int = 32, blocks: int = 4) -> AiFNet:
    """AiFNet taking each image with its predicted defocus map."""
    return AiFNet(width=width, blocks=blocks, use_defocus=True)


def aifnet_direct(*, width: int = 32, blocks: int = 4) -> AiFNet:
    """Ablation: AiFNet taking the images only (stack -> AiF directly, no defocus maps)."""
    return AiFNet(width=width, blocks=blocks, use_defocus=False)
