"""Where and in which precision the networks run: the device, bf16 autocast, and the memory format.

The command-line words (``--device``, ``--amp``, ``--channels-last``) are resolved here once, for
training, evaluation and prediction alike; each resolver raises ValueError naming the option.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

AMP_CHOICES = ("auto", "bf16", "off")
CHANNELS_LAST_CHOICES = ("auto", "on", "off")


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; otherwise a torch device name. ValueError if unusable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__})")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    return dev


def resolve_amp(name: str, device: torch.device) -> torch.dtype | None:
    """'auto' -> bfloat16 on a CUDA device that supports it, else None (float32); 'bf16'; 'off'."""
    if name == "off":
        return None
    if name == "bf16":
        return torch.bfloat16
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    raise ValueError(f"--amp {name!r}: expected {', '.join(AMP_CHOICES)}")


def resolve_channels_last(name: str, device: torch.device) -> bool:
    """'auto' -> channels-last on CUDA (where cuDNN's convolutions are faster in it), 'on', 'off'."""
    choice = {"auto": device.type == "cuda", "on": True, "off": False}.get(name)
    if choice is None:
        raise ValueError(f"--channels-last {name!r}: expected {', '.join(CHANNELS_LAST_CHOICES)}")
    return choice


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device``; a no-op context for None (float32)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
