"""VGG16 features up to relu3_3, for the perceptual loss. Never downloads anything.

The layer indices match torchvision's ``vgg16().features``, so a torchvision VGG16 state dict
(``features.0.weight`` ...; the ``classifier.*`` entries are ignored) loads as it is. The user names
the file; without one the perceptual term is off.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

# (index in torchvision's vgg16().features, in, out) for the convolutions up to relu3_3
_CONVS = ((0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256), (14, 256, 256))
_POOLS = (4, 9)
_TAPS = (3, 8, 15)  # relu1_2, relu2_2, relu3_3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        convs = {i: (a, b) for i, a, b in _CONVS}
        for i in range(_TAPS[-1] + 1):
            if i in convs:
                layers.append(nn.Conv2d(*convs[i], kernel_size=3, padding=1))
            elif i in _POOLS:
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.ReLU(inplace=False))
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) RGB in [0, 1]; returns the relu1_2, relu2_2 and relu3_3 activations."""
        x = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
        return out


def load_vgg16_features(path: str | os.PathLike) -> VGGFeatures:
    """VGG16 features from a torchvision-style state dict file (.pth via ``torch.load(weights_only=True)``,
    or .safetensors when the safetensors package is installed). Raises ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such VGG weights file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ValueError(f"{path}: reading .safetensors needs the safetensors package") from None
        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is "not a weights file"
            raise ValueError(f"{path}: not a loadable VGG16 state dict ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a VGG16 state dict, found a {type(state).__name__}")
    model = VGGFeatures()
    wanted = model.state_dict()
    picked = {}
    for key, ref in wanted.items():
        value = state.get(key)
        if value is None:
            raise ValueError(f"{path}: no {key!r}: not a torchvision VGG16 state dict")
        if tuple(value.shape) != tuple(ref.shape):
            raise ValueError(f"{path}: {key!r} has shape {tuple(value.shape)}, VGG16 has {tuple(ref.shape)}")
        picked[key] = value.float()
    model.load_state_dict(picked)
    return model
