"""Where and in which precision the networks run: the device, bf16 autocast, and the memory format.

The command-line words (``--device``, ``--amp``, ``--channels-last``) are resolved here once, for
training, evaluation and prediction alike; each resolver raises ValueError naming the option.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

AMP_CHOICES = ("auto", "bf16", "off")
CHANNELS_LAST_CHOICES = ("auto", "on", "off")


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """'auto' -> cuda if available else cpu; otherwise a torch device name. ValueError if unusable.

    ``local_rank`` (a process started by torchrun): 'auto' and 'cuda' mean that process's GPU,
    cuda:LOCAL_RANK; another GPU index is refused.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__})")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and local_rank is not None:
        if dev.index not in (None, local_rank):
            raise ValueError(
                f"--device {name}: under torchrun each process takes the GPU of its LOCAL_RANK "
                f"(cuda:{local_rank} here); pass --device cuda or auto"
            )
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"--device {name}: LOCAL_RANK {local_rank}, but only {torch.cuda.device_count()} "
                "GPU(s) are visible; start at most that many processes per node"
            )
        dev = torch.device("cuda", local_rank)
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
    """'auto' -> channels-last on CUDA (cuDNN) and on CPUs with oneDNN, where the networks' convolutions,
    pooling and up-sampling are faster in it (benchmarks/train_bench.py measures both); 'on'; 'off'."""
    auto = device.type == "cuda" or (device.type == "cpu" and torch.backends.mkldnn.is_available())
    choice = {"auto": auto, "on": True, "off": False}.get(name)
    if choice is None:
        raise ValueError(f"--channels-last {name!r}: expected {', '.join(CHANNELS_LAST_CHOICES)}")
    return choice


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device``; a no-op context for None (float32)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
