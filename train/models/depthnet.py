"""DepthNet: one depth map per focal stack, from DefocusNet's defocus maps and the focus distances.

Each branch takes one predicted defocus map with its focus distance as a constant plane (2 channels),
through an encoder of DefocusNet's shape with stack pooling. The decoder up-samples per branch; at each
level it concatenates the branch's features, their maximum over the stack, and the skip connection from
DefocusNet's encoder at that resolution. After the last up-sampling the maximum over the stack goes
through the head, giving one depth map per stack. 1.96 M parameters at width 16 (reference: 1.96 M).
"""

from __future__ import annotations

import torch
from torch import nn

from ._stack import StackConv, StackEncoder, UpConv, act, conv3x3, init_weights, stack_max

LEVELS = 4


class DepthNet(nn.Module):
    def __init__(self, width: int = 16, levels: int = LEVELS, in_channels: int = 2):
        super().__init__()
        self.width, self.levels = width, levels
        self.encoder = StackEncoder(in_channels, width, levels)
        ups, joints = [], []
        c = self.encoder.out_channels
        for i in range(levels):
            ups.append(UpConv(c, c // 2))
            if i < levels - 1:
                # branch part: cat(up, DefocusNet skip) (c channels); pooled part: max_S(up) (c // 2)
                joints.append(StackConv(c, c // 2, c // 2))
            c //= 2
        self.up = nn.ModuleList(ups)
        self.joint = nn.ModuleList(joints)
        self.end = conv3x3(width, width)
        self.out = conv3x3(width, 1)
        self.act = act()
        init_weights(self)

    def forward(self, x: torch.Tensor, s: int, defocus_skips: list[torch.Tensor]) -> torch.Tensor:
        """x: (B*S, 2, H, W) = (defocus map, focus-distance plane) per image; returns (B, 1, H, W)."""
        _, y = self.encoder(x, s)
        for i in range(self.levels):
            y = self.up[i](y)
            if i < self.levels - 1:
                skip = defocus_skips[-1 - i]  # same resolution as y after i + 1 up-samplings
                y = self.act(self.joint[i](torch.cat([y, skip], dim=1), stack_max(y, s), s))
        y = stack_max(y, s)
        y = self.act(self.end(y))
        return self.out(y)


def depthnet(*, width: int = 16) -> DepthNet:
    """DepthNet with ``width`` filters at the first level (reference: 16, 1.96 M parameters)."""
    return DepthNet(width=width)
