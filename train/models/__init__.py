"""Networks of "Focus on defocus", torchvision style: one file per architecture, a builder function each,
no training logic. ``build_model(name, **kwargs)`` builds one of ``ARCHITECTURES`` by name; the name and
keyword arguments are what a checkpoint stores to rebuild the network."""

from __future__ import annotations

import inspect

from torch import nn

from .aifnet import AiFNet, aifnet, aifnet_direct
from .defocusnet import DefocusNet, defocusnet
from .depthnet import DepthNet, depthnet
from .fod import FocusOnDefocus, fod, fod_aif_direct, fod_depth, fod_single, fod_single_direct

# Complete models (what the trainer trains), by the name used on the command line and in checkpoints.
ARCHITECTURES = {
    "fod": fod,
    "fod-depth": fod_depth,
    "fod-aif-direct": fod_aif_direct,
    "fod-single": fod_single,
    "fod-single-direct": fod_single_direct,
}


def architecture_kwargs(name: str) -> list[str]:
    """Keyword arguments the builder of ``name`` takes."""
    return list(inspect.signature(ARCHITECTURES[name]).parameters)


def build_model(name: str, **kwargs) -> FocusOnDefocus:
    """Build the architecture ``name`` with builder keyword arguments (unknown ones are an error)."""
    check_architecture(name, kwargs)
    return ARCHITECTURES[name](**kwargs)


def check_architecture(name: str, kwargs: dict) -> None:
    """ValueError naming the first problem: an unknown architecture, option, or a count below its least."""
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture {name!r}: expected one of {', '.join(ARCHITECTURES)}")
    allowed = architecture_kwargs(name)
    bad = [k for k in kwargs if k not in allowed]
    if bad:
        raise ValueError(f"architecture {name!r} takes no option(s) {', '.join(bad)} (takes {', '.join(allowed)})")
    for key, value in kwargs.items():  # widths and block counts: every builder keyword is a count
        least = 0 if key.endswith("blocks") else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"--{key.replace('_', '-')} {value!r}: expected an integer >= {least}")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "ARCHITECTURES",
    "AiFNet",
    "DefocusNet",
    "DepthNet",
    "FocusOnDefocus",
    "aifnet",
    "aifnet_direct",
    "architecture_kwargs",
    "build_model",
    "check_architecture",
    "count_parameters",
    "defocusnet",
    "depthnet",
    "fod",
    "fod_aif_direct",
    "fod_depth",
    "fod_single",
    "fod_single_direct",
]
