"""What the focalstack-train commands share: defaults read from signatures, data paths, threads, errors."""

from __future__ import annotations

import glob
import inspect

import click

from focalstack.dataset import DatasetError
from focalstack.dataset.cliutil import one_line_errors

from .checkpoint import CheckpointError
from .data import parse_data_spec

# Input errors end a command with one line naming the file or value.
errors = one_line_errors(ValueError, DatasetError, CheckpointError, FloatingPointError, OSError)


def defaults(fn) -> dict:
    """The default of every keyword of a function or dataclass that has a plain one."""
    return {n: p.default for n, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}


def expand_paths(paths: tuple[str, ...]) -> list[str]:
    """Expand glob patterns the shell left alone (e.g. quoted 'test_*.h5'); keep other paths as given."""
    out = []
    for p in paths:
        try:
            path, _ = parse_data_spec(p)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        suffix = p[len(path) :]  # ":WEIGHT" or ""
        matches = sorted(glob.glob(path)) if any(c in path for c in "*?[") else []
        out.extend([m + suffix for m in matches] if matches else [p])
    return out


def set_threads(n: int | None) -> None:
    """torch's CPU threads, when given."""
    if n:
        import torch

        torch.set_num_threads(n)
