"""DefocusNet: one signed (or absolute) defocus map per image of a focal stack.

A U-Net with one shared-weight branch per image: two 3x3 convs + LeakyReLU(0.2) per level, 2x2 max
pooling, 16 filters at the first level doubling per level, four pooled levels and a bridge (the
reference code's ``n_blocks = 3`` plus its first level), and a decoder of bilinear up-sampling + conv,
skip connections and one more conv per level. After every pooling level the maximum over the stack is
concatenated back onto each branch (see ``_stack``), so the output does not depend on the order of the
images and any stack length works. 1.77 M parameters at width 16, as the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from ._stack import StackEncoder, UpConv, act, conv3x3, init_weights

LEVELS = 4


class DefocusNet(nn.Module):
    def __init__(self, in_channels: int = 3, width: int = 16, levels: int = LEVELS):
        super().__init__()
        self.in_channels, self.width, self.levels = in_channels, width, levels
        self.encoder = StackEncoder(in_channels, width, levels)
        ups, joints = [], []
        c = self.encoder.out_channels  # 16 w at the bridge
        for _ in range(levels):
            ups.append(UpConv(c, c // 2))
            joints.append(conv3x3(c, c // 2))  # cat(up, skip) -> c // 2
            c //= 2
        self.up = nn.ModuleList(ups)
        self.joint = nn.ModuleList(joints)
        self.end = conv3x3(width, width)
        self.out = conv3x3(width, 1)
        self.act = act()
        init_weights(self)

    def forward(self, x: torch.Tensor, s: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B*S, in_channels, H, W) with H, W multiples of 2**levels.

        Returns the defocus maps (B*S, 1, H, W) and the encoder's skip features (full resolution
        first), which DepthNet's decoder receives.
        """
        skips, y = self.encoder(x, s)
        for i in range(self.levels):
            y = self.up[i](y)
            y = self.act(self.joint[i](torch.cat([y, skips[-1 - i]], dim=1)))
        y = self.act(self.end(y))
        return self.out(y), skips


def defocusnet(*, width: int = 16, in_channels: int = 3) -> DefocusNet:
    """DefocusNet with ``width`` filters at the first level (reference: 16, 1.77 M parameters)."""
    return DefocusNet(in_channels=in_channels, width=width)
