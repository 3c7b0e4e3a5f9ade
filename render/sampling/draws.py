"""Small draws shared by the sampling modules: numbers from a Generator, vectors as JSON lists."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


def int_in(rng: np.random.Generator, pair) -> int:
    return int(rng.integers(int(pair[0]), int(pair[1]), endpoint=True))


def depth_at(u: float, lo: float, hi: float, distribution: str) -> float:
    """The depth at quantile ``u`` in [0, 1) of the distribution on [lo, hi]."""
    if hi <= lo:
        return float(hi)
    if distribution == "uniform":
        return float(lo + u * (hi - lo))
    if distribution == "log_uniform":
        return float(lo * (hi / lo) ** u)
    return float(1.0 / (1.0 / lo + u * (1.0 / hi - 1.0 / lo)))  # uniform in inverse depth


def vec(a) -> list[float]:
    return [float(x) for x in a]


@dataclass(frozen=True)
class Streams:
    """A scene's independent random streams, one per consumer: changing how one part draws (more objects,
    say) leaves every other part's draws unchanged. Spawned in this order from the scene's generator;
    new streams go at the end so that the existing ones keep their values."""

    background: np.random.Generator
    background_materials: np.random.Generator
    objects: np.random.Generator
    object_materials: np.random.Generator
    lights: np.random.Generator
    world: np.random.Generator
    focus: np.random.Generator
    meshes: np.random.Generator  # catalogue meshes for objects
    mirror_panels: np.random.Generator
    background_kind: np.random.Generator
    mirrors: np.random.Generator  # which objects are mirrors
    envmaps: np.random.Generator  # whether and which environment map lights the scene

    @classmethod
    def spawn(cls, rng: np.random.Generator) -> "Streams":
        return cls(*rng.spawn(len(fields(cls))))
