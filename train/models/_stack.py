"""Building blocks shared by the networks: the stack folded into the batch axis, and stack pooling.

Every network sees a batch of focal stacks as one tensor of shape (B * S, C, H, W): the S images of a
stack are consecutive along the batch axis and go through one shared-weight branch together, with no
Python loop over slices. Information is exchanged across the stack by global max-pooling: the
element-wise maximum over the S branches (``stack_max``) is concatenated back onto every branch.

``StackConv`` is the 3x3 convolution that follows such a concatenation. Because a convolution is linear
in its input channels, ``conv(cat(x, broadcast(m)))`` equals ``conv_x(x) + conv_m(m)`` broadcast over the
stack, where conv_x and conv_m use the two halves of the same weight. The pooled half is therefore
computed once per stack instead of once per slice, and the S-fold copy of the pooled tensor is never
materialised. The parameters are exactly those of one ``nn.Conv2d`` over the concatenated channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NEGATIVE_SLOPE = 0.2


def act() -> nn.Module:
    return nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1)


def init_weights(module: nn.Module) -> None:
    """He initialisation for LeakyReLU(0.2) on every conv, zero biases.

    PyTorch's default conv initialisation shrinks the signal by about 1/sqrt(3) per layer; through the
    ~20 layers of DefocusNet + DepthNet the depth output then hardly depends on the input at the start
    and training is slow. With He initialisation the signal keeps its scale. The output convs
    (``out``) are scaled down so that the first predictions are small.
    """
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=NEGATIVE_SLOPE, nonlinearity="leaky_relu")
            if name.split(".")[-1] == "out":
                m.weight.data.mul_(0.1)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether a 4-D tensor is laid out channels-last (and not also contiguous, as 1-channel maps are)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def stack_max(x: torch.Tensor, s: int) -> torch.Tensor:
    """(B*S, C, H, W) -> (B, C, H, W): element-wise maximum over the S images of each stack, in the
    memory format of ``x`` (a plain ``amax`` over the stack axis would turn channels-last into NCHW and
    cost a conversion in every convolution that follows)."""
    if is_channels_last(x):
        return x.permute(0, 2, 3, 1).unflatten(0, (-1, s)).amax(dim=1).permute(0, 3, 1, 2)
    return x.unflatten(0, (-1, s)).amax(dim=1)


class StackConv(nn.Module):
    """3x3 conv over ``cat(branch, broadcast(pooled))``, computed without building the concatenation.

    ``branch`` is (B*S, c_branch, H, W), ``pooled`` is (B, c_pooled, H, W); the result is
    (B*S, c_out, H, W). Weight layout: input channels [0, c_branch) act on the branch, the rest on the
    pooled map, as in ``nn.Conv2d(c_branch + c_pooled, c_out, 3, padding=1)``.
    """

    def __init__(self, c_branch: int, c_pooled: int, c_out: int):
        super().__init__()
        self.c_branch, self.c_pooled = c_branch, c_pooled
        self.conv = conv3x3(c_branch + c_pooled, c_out)
        # True: build the concatenation and convolve it, as a network written the plain way would
        # (same weights, same outputs); benchmarks/train_bench.py measures both.
        self.concat = False

    def forward(self, branch: torch.Tensor, pooled: torch.Tensor, s: int) -> torch.Tensor:
        if self.concat:
            both = torch.cat([branch.unflatten(0, (-1, s)), pooled.unsqueeze(1).expand(-1, s, -1, -1, -1)], dim=2)
            return self.conv(both.flatten(0, 1))
        w, b = self.conv.weight, self.conv.bias
        y = F.conv2d(branch, w[:, : self.c_branch], None, padding=1)
        z = F.conv2d(pooled, w[:, self.c_branch :], b, padding=1)
        return (y.unflatten(0, (-1, s)) + z.unsqueeze(1)).flatten(0, 1)


class UpConv(nn.Module):
    """Bilinear x2 up-sampling followed by a 3x3 conv and LeakyReLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv3x3(c_in, c_out)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.act(self.conv(x))


class StackEncoder(nn.Module):
    """The shared encoder of DefocusNet and DepthNet.

    Level 0: two 3x3 convs (c_in -> w -> w). Levels 1..L-1: two 3x3 convs whose first takes the
    branch's pooled features concatenated with their maximum over the stack (2 * c -> 2c). Every level
    ends with 2x2 max pooling followed by stack pooling; the bridge is one conv on the last pooled level
    (again concatenated with its stack maximum). Returns the pre-pooling features of every level (the
    skip connections, full resolution first) and the bridge output.
    """

    def __init__(self, c_in: int, width: int, levels: int = 4):
        super().__init__()
        self.levels = levels
        self.first = nn.ModuleList([conv3x3(c_in, width)])
        self.second = nn.ModuleList([conv3x3(width, width)])
        for i in range(1, levels):
            c = width * 2 ** (i - 1)  # channels of the previous level
            self.first.append(StackConv(c, c, 2 * c))
            self.second.append(conv3x3(2 * c, 2 * c))
        c = width * 2 ** (levels - 1)
        self.bridge = StackConv(c, c, 2 * c)
        self.act = act()
        self.out_channels = 2 * c

    def forward(self, x: torch.Tensor, s: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        pooled = None
        for i in range(self.levels):
            x = self.first[i](x) if i == 0 else self.first[i](x, pooled, s)
            x = self.act(x)
            x = self.act(self.second[i](x))
            skips.append(x)
            x = F.max_pool2d(x, 2)
            pooled = stack_max(x, s)
        return skips, self.act(self.bridge(x, pooled, s))


def memory_format(module: nn.Module) -> torch.memory_format:
    """The memory format of ``module``'s first convolution weight: channels_last if it was moved there."""
    w = next(m.weight for m in module.modules() if isinstance(m, nn.Conv2d))
    if not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad the last two axes of a 4-D tensor up to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)
