"""The settings of a training run (``TrainConfig``): what ``focalstack-train fit`` and experiment files set,
stored in every run's config.json and checkpoint, and checked (``check``) before any file is read."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from focalstack.dataset.numbers import is_finite_number

from .augment import CaptureAugment
from .data import Norm
from .hooks import LR_SCHEDULES
from .losses import DEPTH_LOSSES, LossWeights
from .models import ARCHITECTURES, check_architecture


@dataclass
class TrainConfig:
    data: list[str]  # "path" or "path:weight"
    out: str
    val_data: list[str] = field(default_factory=list)
    val_fraction: float = 0.1
    arch: str = "fod"
    arch_kwargs: dict = field(default_factory=dict)
    epochs: int = 50
    batch_size: int = 8
    stack_size: int | None = None
    random_stack: bool = False
    align_slices: bool = False  # warp slices into the reference view by their stored homographies
    crop: list[int] | None = None  # [h, w]
    flips: bool = True
    transposes: bool = False  # random transposes too: all eight orientations of a square sample
    capture_augment: list | None = None  # [full well, read noise, JPEG quality]: the strongest drawn (augment)
    init: str | None = None  # start from these weights (a checkpoint file or shipped name): fine-tuning
    ema: float = 0.0  # decay of the moving average of the weights that validation and checkpoints use; 0: off
    lr: float = 1e-4
    lr_schedule: str = "constant"  # constant | cosine: down to 0 at the run's end (its epochs, max_steps or max_time)
    weight_decay: float = 1e-4
    grad_clip: float = 1.0  # max gradient norm; 0: off
    loss_weights: dict = field(default_factory=lambda: LossWeights().to_dict())
    depth_loss: str = "l1"  # l1 | relative: the depth error over the true depth (near pixels weigh more)
    relative_floor: float = 0.0  # metres: the relative loss divides by at least this (pixels nearer weigh alike)
    vgg_weights: str | None = None
    norm: dict = field(default_factory=lambda: Norm().to_dict())
    seed: int = 0
    samples_per_epoch: int | None = None
    workers: int = 0
    cache_data: bool = False  # decode every scene once into memory, shared by the DataLoader workers
    device: str = "auto"
    amp: str = "auto"  # auto | bf16 | off
    channels_last: str = "auto"  # auto (CUDA; CPUs with oneDNN) | on | off
    compile: bool = False
    checkpoint_every: int = 0  # optimiser steps; 0: at the end of each epoch only
    max_steps: int | None = None  # stop (with a checkpoint) after this many optimiser steps in total
    max_time: float | None = None  # stop (with a checkpoint) after this many seconds of training in total
    log_every: int = 10
    tensorboard: bool = True
    progress: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def check(self) -> "TrainConfig":
        """ValueError naming the option of the first unusable value (numbers must be finite)."""
        if not self.data:
            raise ValueError("--data: give at least one training file")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"--arch {self.arch!r}: expected one of {', '.join(ARCHITECTURES)}")
        check_architecture(self.arch, dict(self.arch_kwargs))
        for name, least in (
            ("epochs", 1),
            ("batch_size", 1),
            ("log_every", 1),
            ("workers", 0),
            ("checkpoint_every", 0),
            ("seed", 0),
        ):
            value = getattr(self, name)
            _require(_is_int(value) and value >= least, name, value, "a positive integer" if least else "an integer >= 0")
        for name in ("stack_size", "samples_per_epoch", "max_steps"):  # None: not set
            value = getattr(self, name)
            _require(value is None or (_is_int(value) and value >= 1), name, value, "a positive integer")
        if self.crop is not None:
            _require(len(self.crop) == 2 and all(_is_int(v) and v >= 1 for v in self.crop), "crop", self.crop, "a positive size")
        _require(
            self.max_time is None or (is_finite_number(self.max_time) and self.max_time > 0),
            "max_time",
            self.max_time,
            "a number of seconds > 0",
        )
        _require(is_finite_number(self.lr) and self.lr > 0, "lr", self.lr, "a finite number > 0")
        _require(self.lr_schedule in LR_SCHEDULES, "lr_schedule", self.lr_schedule, f"one of {', '.join(LR_SCHEDULES)}")
        for name in ("weight_decay", "grad_clip"):
            value = getattr(self, name)
            _require(is_finite_number(value) and value >= 0, name, value, "a finite number >= 0")
        fraction = self.val_fraction
        _require(is_finite_number(fraction) and 0 <= fraction < 1, "val_fraction", fraction, "a number in [0, 1)")
        Norm.from_dict(self.norm).check()
        LossWeights(**self.loss_weights).check()
        _require(self.depth_loss in DEPTH_LOSSES, "depth_loss", self.depth_loss, f"one of {', '.join(DEPTH_LOSSES)}")
        floor = self.relative_floor
        _require(is_finite_number(floor) and floor >= 0, "relative_floor", floor, "a depth in metres >= 0")
        _require(floor == 0 or self.depth_loss == "relative", "relative_floor", floor, "0 unless --depth-loss relative")
        if self.capture_augment is not None:
            CaptureAugment.from_list(self.capture_augment)
        _require(is_finite_number(self.ema) and 0 <= self.ema < 1, "ema", self.ema, "a decay in [0, 1), such as 0.999 (0: off)")
        _require(self.init is None or (isinstance(self.init, str) and bool(self.init)), "init", self.init, "a checkpoint")
        return self


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, name: str, value, expected: str) -> None:
    if not ok:
        raise ValueError(f"--{name.replace('_', '-')} {value!r}: expected {expected}")
