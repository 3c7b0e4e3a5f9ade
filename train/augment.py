"""Capture augmentation: training stacks re-captured by a noisier camera than the renderer's.

Rendered slices are clean; a phone's are not. ``--capture-augment FULL_WELL,READ_NOISE,JPEG_QUALITY[,SHARE]``
gives a share of the training samples (SHARE, by default one half: the network must still read clean stacks)
the sensor noise and JPEG that ``focalstack-render --sensor-noise FULL_WELL,READ_NOISE --jpeg-quality
JPEG_QUALITY`` renders (``focalstack.dataset.capture``), at a strength drawn per sample up to that: the full
well log-uniform between FULL_WELL and ten times it, the read noise uniform between 0 and READ_NOISE, the
JPEG quality uniform between JPEG_QUALITY and 100 (0: no JPEG). The planner draws each sample's ``Capture``
(``focalstack.train.plan``), so a resumed run sees the same noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from focalstack.dataset.capture import MAX_FULL_WELL, recapture_srgb8
from focalstack.dataset.numbers import is_finite_number


@dataclass(frozen=True)
class Capture:
    """One sample's camera: what ``recapture_srgb8`` takes, and the seed of its noise."""

    full_well: float
    read_noise: float
    jpeg_quality: int
    seed: int


@dataclass(frozen=True)
class CaptureAugment:
    """The strongest capture the augmentation draws (``--capture-augment``), and how often it draws one."""

    full_well: float  # electrons at full scale; 0: no shot noise
    read_noise: float  # standard deviation on linear [0, 1] values; 0: none
    jpeg_quality: int  # the lowest quality; 0: no JPEG
    probability: float = 0.5  # the share of samples re-captured; the others stay clean

    @classmethod
    def parse(cls, text: str) -> "CaptureAugment":
        """From "FULL_WELL,READ_NOISE,JPEG_QUALITY[,SHARE]"; ValueError naming the option otherwise."""
        parts = [p.strip() for p in str(text).split(",")]
        try:
            if len(parts) not in (3, 4):
                raise ValueError
            share = (float(parts[3]),) if len(parts) == 4 else ()
            augment = cls(float(parts[0]), float(parts[1]), int(parts[2]), *share)
        except ValueError:
            raise ValueError(
                f"--capture-augment {text!r}: expected FULL_WELL,READ_NOISE,JPEG_QUALITY[,SHARE], e.g. 1000,0.002,90"
            ) from None
        return augment.check()

    @classmethod
    def from_list(cls, values) -> "CaptureAugment":
        """From the stored [FULL_WELL, READ_NOISE, JPEG_QUALITY(, SHARE)] (a run's configuration)."""
        if not isinstance(values, (list, tuple)) or len(values) not in (3, 4):
            raise ValueError(f"capture_augment {values!r}: expected [FULL_WELL, READ_NOISE, JPEG_QUALITY(, SHARE)]")
        quality = values[2]
        if not isinstance(quality, int) or isinstance(quality, bool):
            raise ValueError(f"capture_augment JPEG quality {quality!r}: expected an integer 0 to 100")
        return cls(*values[:2], quality, *values[3:]).check()

    def to_list(self) -> list:
        """What a run's configuration stores: the share only when it is not the default half."""
        share = [self.probability] if self.probability != CaptureAugment.probability else []
        return [self.full_well, self.read_noise, self.jpeg_quality, *share]

    def check(self) -> "CaptureAugment":
        for name, value in (("full well", self.full_well), ("read noise", self.read_noise)):
            if not is_finite_number(value) or value < 0:
                raise ValueError(f"--capture-augment {name} {value!r}: expected a finite number >= 0")
        if self.full_well > MAX_FULL_WELL:
            raise ValueError(
                f"--capture-augment full well {self.full_well:g}: expected at most {MAX_FULL_WELL:g} electrons "
                "(a camera's is about 1e3 to 1e5)"
            )
        if not 0 <= self.jpeg_quality <= 100:
            raise ValueError(f"--capture-augment JPEG quality {self.jpeg_quality}: expected 0 (none) to 100")
        if not (self.full_well or self.read_noise or self.jpeg_quality):
            raise ValueError("--capture-augment 0,0,0: no noise and no JPEG; leave the option out instead")
        if not is_finite_number(self.probability) or not 0 < self.probability <= 1:
            raise ValueError(f"--capture-augment share {self.probability!r}: expected a number in (0, 1]")
        return self

    def draw(self, rng: np.random.Generator) -> Capture | None:
        """A sample's capture, or None for a clean sample. Always takes the same number of draws from
        ``rng``, so a clean sample and a noisy one leave the rest of the plan alike."""
        noisy = rng.random() < self.probability
        full_well = self.full_well * 10.0 ** rng.random()
        read_noise = self.read_noise * rng.random()
        quality = int(rng.integers(self.jpeg_quality, 101)) if self.jpeg_quality else 0
        seed = int(rng.integers(2**31))
        return Capture(float(full_well), float(read_noise), quality, seed) if noisy else None


def recapture_stack(stack: np.ndarray, capture: Capture) -> np.ndarray:
    """A uint8 stack (S, H, W, 3) with each slice re-captured by ``capture``; slice k draws its noise from
    (seed, k), so the slices' noise is independent, as a camera's frames are."""
    c = capture
    rngs = [np.random.default_rng([c.seed, k]) for k in range(len(stack))]
    return np.stack([recapture_srgb8(s, c.full_well, c.read_noise, c.jpeg_quality, rng) for s, rng in zip(stack, rngs)])
