"""Training a network: ``fit(TrainConfig(...))`` builds the data, the model, AdamW and the hooks, and
runs the loop (``engine.Trainer``; the hooks are in ``hooks``). bf16 autocast on CUDA, channels-last on
CUDA and oneDNN CPUs.

Outputs in ``--out``: ``last.pt`` (after every epoch, every ``checkpoint_every`` steps and when
stopped by ``max_steps``), ``best.pt`` (lowest validation loss; the last epoch without validation
data), ``metrics.csv`` (one row per epoch), ``train.log``, and TensorBoard events in ``tb/``.

Determinism: the weights are initialised from ``seed`` and every epoch's batches are drawn from
``(seed, epoch)`` (``data.plan_epoch``), so ``--resume`` after a kill continues exactly where the last
checkpoint left off, in the middle of an epoch too. On the CPU a resumed run ends with the same
weights as an uninterrupted one.

Several processes (``torchrun --nproc-per-node N -m focalstack.train fit ...``): DistributedDataParallel,
each process training on its share of every global batch of ``batch_size`` stacks, rank 0 writing the
files; the run is the one-process run up to float rounding (``distributed`` says how).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from focalstack.dataset import DatasetError
from focalstack.dataset.files import output_folder, write_text_atomic
from focalstack.dataset.numbers import is_finite_number

from .augment import CaptureAugment
from .checkpoint import CheckpointError, check_weights, inference_weights, load_checkpoint, resolve_checkpoint
from .data import (
    FocalStackDataset,
    Norm,
    SourceInfo,
    check_compatible,
    first_repeat,
    has_valid_depth,
    inspect_source,
    make_loader,
    parse_data_spec,
    shared_scenes,
)
from .device import resolve_amp, resolve_channels_last, resolve_device
from .distributed import Group, process_group
from .engine import Trainer
from .hooks import LR_SCHEDULES, Checkpoints, LearningRate, MetricsCSV, Progress, RunLog, TensorBoard, Validation, WeightAverage
from .inference import validation_scores
from .losses import DEPTH_LOSSES, TERM, FocusLoss, LossWeights, describe_depth_loss
from .metrics import ALL_METRICS
from .models import ARCHITECTURES, FocusOnDefocus, build_model, check_architecture, count_parameters
from .plan import PlanSettings, Share, plan_epoch, plan_eval, share_batch, split_scenes

# Settings that a resumed run may change; all others but --data (when given) come from the checkpoint.
RUNTIME_FIELDS = (
    "epochs",
    "device",
    "amp",
    "channels_last",
    "compile",
    "workers",
    "cache_data",
    "max_steps",
    "max_time",
    "checkpoint_every",
    "tensorboard",
    "progress",
    "log_every",
)


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


@dataclass
class FitResult:
    out: Path
    last: Path
    best: Path
    history: list[dict]
    stopped_early: bool


class RunData:
    """The run's files: training scenes (minus the held-out ones) and validation batches, planned here,
    read by one ``FocalStackDataset`` (train and validation files together)."""

    def __init__(self, cfg: TrainConfig, single_image: bool, pin: bool = False, group: Group | None = None):
        _refuse_repeated_files(cfg.data, cfg.val_data)
        self.train_sources = [inspect_source(p, w) for p, w in map(parse_data_spec, cfg.data)]
        val_sources = self.val_sources = [inspect_source(p) for p in cfg.val_data]
        crop = tuple(cfg.crop) if cfg.crop else None
        self.stack_size = check_compatible(self.train_sources, cfg.stack_size, crop, cfg.transposes)
        # Without --val-data a seeded fraction of each training file is held out.
        fraction = 0.0 if cfg.val_data else cfg.val_fraction
        splits = [split_scenes(s.n_scenes, fraction, cfg.seed) for s in self.train_sources]
        self.train_scenes = [tr for tr, _ in splits]
        val_scenes = [va for _, va in splits] + [np.arange(s.n_scenes) for s in val_sources]
        sources = self.train_sources + val_sources
        self.n_train = int(sum(len(t) for t in self.train_scenes))
        self.n_val = int(sum(len(v) for v in val_scenes))
        self.val_batches = plan_eval(sources, val_scenes, cfg.batch_size, "All", cfg.seed) if self.n_val else []
        self.settings = PlanSettings(
            batch_size=cfg.batch_size,
            stack_size=self.stack_size,
            random_stack=cfg.random_stack,
            single_image=single_image,  # the single-image ablation trains on one random slice
            crop=crop,
            flips=cfg.flips,
            transposes=cfg.transposes,
            samples_per_epoch=cfg.samples_per_epoch,
            capture=CaptureAugment.from_list(cfg.capture_augment) if cfg.capture_augment is not None else None,
        )
        self.seed, self.workers, self.pin, self.group = cfg.seed, cfg.workers, pin, group
        self.dataset = FocalStackDataset([s.path for s in sources], align_slices=cfg.align_slices)
        self.fraction = fraction

    def scene_counts(self) -> dict:
        """Complete scenes per training and validation file: the held-out scenes and each epoch's plan follow
        them, so a resumed run must find the same."""
        return {"data": [s.n_scenes for s in self.train_sources], "val_data": [s.n_scenes for s in self.val_sources]}

    def plan(self, epoch: int) -> list:
        """The epoch's batches of sample keys; with several processes, this one's ``Share`` of each."""
        batches = plan_epoch(self.train_sources, self.train_scenes, self.settings, self.seed, epoch)
        if self.group is None:
            return batches
        return [share_batch(b, self.group.rank, self.group.world_size) for b in batches]

    def loader(self, batches: list, start: int):
        if self.group is None:
            return make_loader(self.dataset, batches, self.workers, start=start, pin=self.pin)
        return self._shares(batches, start)

    def _shares(self, shares: list[Share], start: int):
        keys = [s.keys for s in shares]
        for share, batch in zip(shares[start:], make_loader(self.dataset, keys, self.workers, start, self.pin)):
            batch["counted"] = share.counted
            yield batch

    def ground_truth(self) -> frozenset:
        """The ground truth at least one training file holds (a loss term needs one to be computed)."""
        return frozenset().union(*(s.ground_truth for s in self.train_sources))

    def ground_truth_notes(self, terms: list[str], wanted: list[str]) -> list[str]:
        """One line per loss term that the training files cannot feed, wholly (off) or partly."""
        notes = []
        for term in wanted:
            if term == "depth":  # every training file holds depth
                continue
            name, what = TERM[term].needs, TERM[term].what
            lacking = [Path(s.path).name for s in self.train_sources if name not in s.ground_truth]
            if term not in terms:
                notes.append(f"{term} loss off: no training file holds {what} ({', '.join(lacking)})")
            elif lacking:
                notes.append(f"{term} loss only on the scenes of files that hold {what} (not {', '.join(lacking)})")
        return notes

    def check_depth(self, max_depth: float) -> None:
        """ValueError naming the first training file none of whose training scenes has a depth pixel the
        loss counts (finite, > 0, <= ``max_depth``): its depth term would be 0 at every step, unnoticed; or
        the first validation file none of whose scenes has one.
        Read a scene at a time, stopping at the first usable one (a sound file costs one read)."""
        for source, scenes in zip(self.train_sources, self.train_scenes):
            if len(scenes) and "depth" in source.ground_truth and not has_valid_depth(source.path, scenes, max_depth):
                raise ValueError(
                    f"{source.path}: none of its {len(scenes)} training scenes has depth ground truth in "
                    f"(0, {max_depth:g}] m, so the depth loss would learn nothing from it (check it with "
                    "focalstack-data validate; farther depth needs a larger --max-depth)"
                )
        for source in self.val_sources:  # its depth loss would read 0 and choose best.pt
            if "depth" in source.ground_truth and not has_valid_depth(source.path, range(source.n_scenes), max_depth):
                raise ValueError(
                    f"--val-data {source.path}: none of its {source.n_scenes} scenes has depth ground truth in "
                    f"(0, {max_depth:g}] m, so its depth loss would read 0 (check it with focalstack-data validate; "
                    "farther depth needs a larger --max-depth)"
                )

    def camera(self) -> dict:
        """The training camera, stored in checkpoints (predict's default focus distances and camera)."""
        first: SourceInfo = self.train_sources[0]
        return {**first.camera, "image_size": list(first.image_size), "stack_size": self.stack_size}


def fit(cfg: TrainConfig, resume: bool = False, given: tuple = ()) -> FitResult:
    """Train. With ``resume``, continue the run in ``cfg.out`` from its ``last.pt``: the training
    settings come from the checkpoint and only ``RUNTIME_FIELDS`` of ``cfg`` apply. ``given``: the
    settings the user set (``SETTING_PATHS``' keys); on resume one that differs from the run's is refused.

    Raises ValueError / CheckpointError / focalstack.dataset.DatasetError with one-line messages.
    """
    out = Path(cfg.out)
    ckpt, data_defaults = None, {}
    if resume:
        cfg, ckpt, data_defaults = _resumed_config(cfg, out / "last.pt", given)
    elif (out / "last.pt").exists():
        raise ValueError(f"{out}: already holds a run (last.pt); pass --resume to continue it or choose another --out")
    elif (out / "best.pt").exists():  # a new run would replace it, and its config would no longer describe it
        raise ValueError(f"{out}: already holds a run's best.pt (no last.pt to resume from); choose another --out")
    elif (out / "config.json").exists() and _run_settings(out / "config.json") is None:
        raise ValueError(f"{out}: holds a config.json that is not a run's settings; choose another --out")
    elif _epochs_logged(out / "metrics.csv"):  # last.pt is written every epoch: its checkpoints were moved away
        raise ValueError(
            f"{out}: holds the metrics.csv of a run whose checkpoints were removed, its only record; choose another --out"
        )
    cfg.check()
    # Absolute data paths: a resumed run (from another working folder, or a moved run folder) reads the same files.
    cfg.data, cfg.val_data = _absolute(cfg.data), _absolute(cfg.val_data)
    if cfg.init is not None and ckpt is None:  # recorded as the file it was, wherever the run is resumed from
        cfg.init = str(resolve_checkpoint(cfg.init).resolve())
    if cfg.vgg_weights is not None and ckpt is None:
        cfg.vgg_weights = str(Path(cfg.vgg_weights).resolve())
    group = process_group(cfg.device)  # None unless torchrun started this process
    with output_folder(out):  # a run refused while it is built leaves no empty --out behind
        if group is None or group.writer:  # a checkpoint write killed midway left its temporary file
            for stale in [*out.glob("last.pt.*.tmp"), *out.glob("best.pt.*.tmp")]:
                stale.unlink(missing_ok=True)
        trainer = build_trainer(cfg, ckpt, writer=group is None or group.writer, group=group, data_defaults=data_defaults)
    try:
        trainer.train()
    finally:
        trainer.data.dataset.close()
    history = next(h for h in trainer.hooks if isinstance(h, MetricsCSV)).history
    return FitResult(out, out / "last.pt", out / "best.pt", [dict(r) for r in history], trainer.stopped)


def _run_settings(path: Path) -> dict | None:
    """``path`` read as a run's config.json, or None when it is not one (missing, not JSON, other keys)."""
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return settings if isinstance(settings, dict) and {"arch", "data", "out", "epochs"} <= set(settings) else None


def _epochs_logged(path: Path) -> bool:
    """Whether ``path`` (a run's metrics.csv) holds a row for an epoch, beyond its header."""
    try:
        with open(path) as fh:
            return sum(1 for line in fh if line.strip()) > 1
    except OSError:
        return False


RUN_TRACES = ("train.log", "metrics.csv", "config.json", "tb")  # what a run writes besides its checkpoints


def _clear_run_without_checkpoint(out: Path) -> list[str]:
    """Remove the log, metrics, settings and TensorBoard events that a run killed before its first checkpoint
    left in ``out`` (fit refuses a folder with a checkpoint before this): a new run would append its log to
    theirs and mix its curves with theirs in TensorBoard. Only where ``config.json`` is a run's settings: a folder
    of other files (a project's own config.json, say) is left as it is. Returns the names removed."""
    if _run_settings(out / "config.json") is None:
        return []
    removed = []
    for name in RUN_TRACES:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def build_trainer(
    cfg: TrainConfig,
    ckpt: dict | None = None,
    writer: bool = True,
    group: Group | None = None,
    data_defaults: dict | None = None,
) -> Trainer:
    """Data, model, loss, AdamW and hooks of the run ``cfg`` (which has passed ``check()``), at the state
    of ``ckpt`` if given (``data_defaults``: settings given on resume that the run left to its data's
    default). With ``writer`` False the hooks keep their state but write no file (for every process but one,
    when several train together). With ``group`` this process trains its share of the run under
    DistributedDataParallel, on the group's device."""
    out = Path(cfg.out)
    log = RunLog(out / "train.log", quiet=not cfg.progress, writer=writer)
    device = group.device if group is not None else resolve_device(cfg.device)
    amp_dtype = resolve_amp(cfg.amp, device)
    channels_last = resolve_channels_last(cfg.channels_last, device)
    norm = Norm.from_dict(cfg.norm).check()
    model = _model(cfg, device, channels_last)
    started_from = _load_init(model, cfg) if cfg.init is not None and ckpt is None else None
    data = RunData(cfg, model.single_image, pin=device.type == "cuda", group=group)
    if ckpt is not None:
        _refuse_other_scene_counts(ckpt.get("scenes"), data, cfg)
    _check_data_defaults(data_defaults or {}, data, out)
    criterion, terms = _loss(cfg, data, model, device)
    # the run's checks have passed: what a run that left no checkpoint wrote goes now, not before a refusal
    cleared = _clear_run_without_checkpoint(out) if writer and ckpt is None else []
    if cfg.cache_data:
        started = time.perf_counter()
        held = data.dataset.cache_in_memory(copies=1 if group is None else group.local_world_size)
        seconds = time.perf_counter() - started
        log(f"decoded {data.n_train + data.n_val} scenes into memory ({held / 1e9:.2f} GB) in {seconds:.1f} s (--cache-data)")
    meta = {
        "arch": cfg.arch,
        "arch_kwargs": dict(cfg.arch_kwargs),
        "config": cfg.to_dict(),
        "norm": norm.to_dict(),
        "camera": data.camera(),
        "scenes": data.scene_counts(),
    }
    eval_model = torch.compile(model) if cfg.compile else model
    step_model = eval_model if group is None else _distributed(model, device, terms, cfg.compile)
    trainer = Trainer(
        model,
        torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
        criterion,
        data,
        norm,
        device,
        epochs=cfg.epochs,
        terms=terms,
        amp_dtype=amp_dtype,
        step_model=step_model,
        eval_model=eval_model,
        group=group,
        grad_clip=cfg.grad_clip,
        log_every=cfg.log_every,
        max_steps=cfg.max_steps,
        max_time=cfg.max_time,
        hooks=_hooks(cfg, data, model, meta, log, writer),
    )
    if ckpt is None:
        log(_start_line(cfg, model, data, device, group, amp_dtype, channels_last))
        if cleared:
            log(f"removed {', '.join(cleared)} of an earlier run that left no checkpoint")
        for source in data.train_sources + data.val_sources:
            if source.incomplete:
                log(f"{source.path}: {source.incomplete} incomplete scene(s) left out (a render stopped or still running)")
        if writer:  # a new run's, once: reading every description costs a second or two on large files
            for note in _overlap_notes(data):
                log(note)
        for source in data.val_sources:  # validation scores whole stacks: the start line's size is training's
            if source.n_slices != data.stack_size:
                log(f"{source.path}: validated on its stacks of {source.n_slices} slices (training takes {data.stack_size})")
        if started_from:
            log(started_from)
        if writer:
            write_text_atomic(out / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
    else:
        check_weights(model, ckpt["model"], out / "last.pt", cfg.arch)
        if ckpt.get("camera") not in (None, meta["camera"]):  # files that moved: they must be the same data
            raise ValueError(
                f"--data: the run trained on stacks of {_camera_text(ckpt['camera'])}; these files give "
                f"{_camera_text(meta['camera'])}"
            )
        trainer.load_state_dict(ckpt)
        log(f"resuming {out / 'last.pt'} at epoch {trainer.epoch + 1}, batch {trainer.batch}, step {trainer.global_step}")
    if model.has_aif and criterion.weights.perceptual > 0 and criterion.vgg is None:
        log("perceptual loss off: no --vgg-weights file given (VGG16 weights are never downloaded)")
    for note in data.ground_truth_notes(terms, criterion.active_terms(model.has_aif, held=None)):
        log(note)
    return trainer


def _start_line(cfg: TrainConfig, model, data: RunData, device, group: Group | None, amp_dtype, channels_last: bool) -> str:
    """The log's first line: what trains on what, with which data."""
    where = f"{group.world_size} processes ({device.type}, global batch {cfg.batch_size})" if group else device
    return (
        f"training {cfg.arch} ({count_parameters(model) / 1e6:.2f} M parameters) on {where}"
        f"{' with bf16 autocast' if amp_dtype else ''}{', channels-last' if channels_last else ''}: "
        f"{data.n_train} training and {data.n_val} validation scenes, stack size {data.stack_size}"
        f"{' (random subsets)' if cfg.random_stack else ''}"
        f"{', capture augmentation ' + ','.join(f'{v:g}' for v in cfg.capture_augment) if cfg.capture_augment else ''}"
        f"{f', weights averaged (--ema {cfg.ema:g})' if cfg.ema else ''}"
        f"{', ' + describe_depth_loss(cfg.to_dict()) if cfg.depth_loss != 'l1' else ''}"
    )


def _load_init(model: FocusOnDefocus, cfg: TrainConfig) -> str:
    """Load ``cfg.init``'s weights into ``model`` (float16 shipped weights load into float32); ValueError /
    CheckpointError when they are of another network or were trained with another normalisation, whose
    outputs would mean something else. Returns the log line."""
    init = load_checkpoint(cfg.init)
    if init["arch"] != cfg.arch:
        raise ValueError(f"--init {cfg.init}: the weights are of {init['arch']!r}, this run trains {cfg.arch!r} (--arch)")
    own, theirs = Norm.from_dict(cfg.norm), Norm.from_dict(init["norm"])
    names = [k for k in own.to_dict() if getattr(own, k) != getattr(theirs, k)]
    differ = [f"{k} {getattr(theirs, k)!r} (this run: {getattr(own, k)!r})" for k in names]
    if differ:
        raise ValueError(f"--init {cfg.init}: trained with another normalisation: {'; '.join(differ)}; give the same options")
    weights = inference_weights(init)
    try:
        check_weights(model, weights, cfg.init, cfg.arch)
    except CheckpointError as exc:
        theirs_kwargs, own_kwargs = dict(init.get("arch_kwargs") or {}), dict(cfg.arch_kwargs or {})
        if theirs_kwargs == own_kwargs or "do not fit" not in str(exc):  # NaN weights say so themselves
            raise
        raise ValueError(  # --width and the like build other tensors: say which options differ
            f"--init {cfg.init}: the weights are of {cfg.arch!r} built with {theirs_kwargs or 'its defaults'}, this run "
            f"builds it with {own_kwargs or 'its defaults'}; give the same options (--width, --aif-width, --aif-blocks)"
        ) from None
    model.load_state_dict(weights)
    return f"starting from the weights of {cfg.init} (step {init.get('global_step', '?')}); the optimiser starts afresh"


def _loss(cfg: TrainConfig, data: RunData, model: FocusOnDefocus, device: torch.device) -> tuple[FocusLoss, list[str]]:
    """The loss of the run and the terms it computes; ValueError when there is nothing to train."""
    vgg = None
    if cfg.vgg_weights:
        from .models.vgg import load_vgg16_features

        vgg = load_vgg16_features(cfg.vgg_weights).to(device)
    criterion = FocusLoss(
        LossWeights(**cfg.loss_weights),
        vgg,
        held=data.ground_truth(),
        depth_loss=cfg.depth_loss,
        relative_floor=cfg.relative_floor / Norm.from_dict(cfg.norm).depth_scale,
    )
    terms = criterion.active_terms(model.has_aif)
    if "depth" in terms:
        data.check_depth(Norm.from_dict(cfg.norm).max_depth)
    if not terms:
        raise ValueError(
            f"nothing to train: every loss term {cfg.arch!r} has is weighted 0 or lacks ground truth in "
            f"the training files (--loss-weight {' '.join(f'{k}={v:g}' for k, v in cfg.loss_weights.items())})"
        )
    return criterion, terms


def _absolute(specs: list[str]) -> list[str]:
    """ "path[:weight]" specs with absolute paths (the weight kept as written)."""
    out = []
    for spec in specs:
        path, _ = parse_data_spec(spec)
        out.append(str(Path(path).resolve()) + spec[len(path) :])
    return out


def run_finished(ckpt: dict, cfg: TrainConfig) -> bool:
    """True when the run that ``ckpt`` (a last.pt) saved has nothing left to do under ``cfg``: all its
    epochs, or its ``max_steps`` steps, or its ``max_time`` seconds of training."""
    if int(ckpt["epoch"]) >= cfg.epochs and int(ckpt.get("batch", 0)) == 0:
        return True
    if cfg.max_steps is not None and int(ckpt.get("global_step", 0)) >= cfg.max_steps:
        return True
    return cfg.max_time is not None and float(ckpt.get("elapsed", 0.0)) >= cfg.max_time


def training_differences(stored: TrainConfig, cfg: TrainConfig) -> list[str]:
    """The settings that make ``cfg`` another training than the run that ``stored`` describes, as
    'name: stored -> new': every field but where and how long it runs (``RUNTIME_FIELDS``) and the run's own
    folder; data files compared by name and weight (a run folder or its files may have moved)."""
    out = []
    skip = {*RUNTIME_FIELDS, "out", "data", "val_data"}
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        a, b = getattr(stored, f.name), getattr(cfg, f.name)
        if f.name in ("init", "vgg_weights"):  # by name: a moved run's files moved too
            a, b = (None if v is None else _named_file(v, f.name).name for v in (a, b))
        a, b = (list(v) if isinstance(v, tuple) else v for v in (a, b))
        if a != b:
            out.append(
                f"{f.name}: {_shown(a) if not isinstance(a, dict) else a} -> {_shown(b) if not isinstance(b, dict) else b}"
            )
    for name in ("data", "val_data"):
        a, b = _file_names(getattr(stored, name)), _file_names(getattr(cfg, name))
        if a != b:
            out.append(f"{name}: {', '.join(a) or 'none'} -> {', '.join(b) or 'none'}")
    return out


def _named_file(value: str, field_name: str) -> Path:
    """The file a path or shipped name (``init``) stands for, resolved: a shipped name, a relative path and
    a link are the file they name."""
    try:
        return Path(resolve_checkpoint(value) if field_name == "init" else value).resolve()
    except (CheckpointError, OSError):
        return Path(value)


def _file_names(specs: list[str]) -> list[str]:
    """'folder/name.h5:0.5' -> 'name.h5:0.5'."""
    out = []
    for spec in specs:
        path, _ = parse_data_spec(spec)
        out.append(Path(path).name + spec[len(path) :])
    return out


def _resumed_config(cfg: TrainConfig, last_path: Path, given: tuple = ()) -> tuple[TrainConfig, dict, dict]:
    """The stored configuration of the run that ``last_path`` continues, with ``cfg``'s RUNTIME_FIELDS, its
    checkpoint, and the given settings whose default the data decides (checked by ``_check_data_defaults``).
    A setting in ``given`` whose value in ``cfg`` differs from the run's is refused: it would be ignored."""
    if not last_path.is_file():
        raise CheckpointError(f"{last_path}: no checkpoint to resume from")
    ckpt = load_checkpoint(last_path)
    stored = TrainConfig.from_dict(ckpt["config"])
    if cfg.arch is not None and cfg.arch != stored.arch:
        raise CheckpointError(f"{last_path}: the run is architecture {stored.arch!r}, --arch says {cfg.arch!r}")
    data_defaults = {}
    for option in given:
        if option in DATA_DEFAULTS and _setting(stored, option) is None:  # known once the data is read
            data_defaults[option] = _setting(cfg, option)
        elif option in SETTING_PATHS:
            want, had = _setting(cfg, option), _setting(stored, option)
            if had is None:  # not set when the run began: what it trained with is the default's value
                had = _effective_default(stored, option, ckpt)
            if want != had and isinstance(want, bool):  # a flag, given
                raise ValueError(
                    f"{option}: the run in {cfg.out} was trained without it, and a resumed run keeps its training "
                    "settings; start a new --out to change it"
                )
            if want != had:
                raise ValueError(
                    f"{option} {_shown(want)}: the run in {cfg.out} was trained with "
                    f"{'the default' if had is None else _shown(had)}, and a resumed run "
                    "keeps its training settings (--epochs, --max-steps, --max-time, --device and the like apply); "
                    "start a new --out to change it"
                )
    for name in RUNTIME_FIELDS:
        if name == "epochs" and cfg.epochs is None:  # not given: the run's own
            continue
        setattr(stored, name, getattr(cfg, name))
    if cfg.data:
        _check_moved_data(stored.data, _absolute(cfg.data))
        stored.data = cfg.data
    if cfg.val_data:
        _check_moved_data(stored.val_data, _absolute(cfg.val_data), "--val-data")
        stored.val_data = cfg.val_data
    stored.out = cfg.out  # the folder given: a copied or moved run writes only there
    return stored, ckpt, data_defaults


# Settings whose default is a property of the training data: --samples-per-epoch's is the number of training
# scenes (an epoch of exactly that many is the same plan as the default's).
DATA_DEFAULTS = {"--samples-per-epoch": lambda data: data.n_train}


def _check_data_defaults(given: dict, data: RunData, out: Path) -> None:
    """ValueError for a setting, given on --resume, that the run left to its data's default and that differs
    from what that default amounts to."""
    for option, want in given.items():
        had = DATA_DEFAULTS[option](data)
        if want != had:
            data.dataset.close()
            raise ValueError(
                f"{option} {_shown(want)}: the run in {out} was trained with the default, {_shown(had)} here, and a "
                "resumed run keeps its training settings; start a new --out to change it"
            )


def _overlap_notes(data: RunData) -> list[str]:
    """A line for each two files that hold the same rendered scenes where that defeats validation: a scene held
    out of one training file is trained on through the other; a --val-data scene that is also a training scene."""
    train, val = data.train_sources, data.val_sources
    if len(train) + len(val) < 2 or (data.fraction == 0 and not val):
        return []  # nothing is held out of a file, or nothing to compare
    try:
        shared = shared_scenes([s.path for s in train + val])
    except (OSError, RuntimeError, DatasetError) as exc:  # training never reads the descriptions: say, go on
        return [f"warning: the files' scene descriptions could not be compared ({' '.join(str(exc).split())[:120]})"]
    notes = []
    for i, j, n in shared:
        if j < len(train) and data.fraction > 0:
            notes.append(
                f"warning: {train[j].path}: {n} of its rendered scenes are also in {train[i].path} (the same "
                "description): a scene held out of one is trained on through the other"
            )
        elif j >= len(train) and i < len(train):
            notes.append(
                f"warning: --val-data {val[j - len(train)].path}: {n} of its rendered scenes are training scenes of "
                f"{train[i].path} (the same description): best.pt is chosen partly on scenes it learnt"
            )
    return notes


def _refuse_repeated_files(data: list[str], val_data: list[str]) -> None:
    """ValueError for a file given twice (under any name): twice in --data it would be sampled twice as often
    without a word (FILE:WEIGHT says so), in --val-data as well it would choose best.pt on training scenes."""
    paths = [parse_data_spec(spec)[0] for spec in data]
    repeat = first_repeat(paths)
    if repeat:
        raise ValueError(
            f"--data {data[repeat[1]]}: the same file as --data {data[repeat[0]]}; give it once, with a weight "
            "(FILE:WEIGHT) to sample it more"
        )
    repeat = first_repeat([*paths, *val_data])  # the training files are distinct: the later one is a validation file
    if repeat:
        earlier, later = repeat[0], val_data[repeat[1] - len(paths)]
        if earlier < len(paths):
            raise ValueError(
                f"--val-data {later}: also a training file (--data {data[earlier]}); validation on training scenes "
                "would choose best.pt by how well they were learnt"
            )
        raise ValueError(f"--val-data {later}: the same file as --val-data {val_data[earlier - len(paths)]}; give it once")


def _refuse_other_scene_counts(had: dict | None, data: RunData, cfg: TrainConfig) -> None:
    """ValueError when a file of the run holds another number of complete scenes than when its last checkpoint
    was written (a render went on, or the file was replaced): the held-out scenes and the epoch plans follow
    the count, so the resumed run would train on scenes it validated on, or validate on others. Checkpoints from
    before the count was kept pass."""
    now = data.scene_counts()
    if had is None or had == now:
        return
    data.dataset.close()
    what = {
        "data": "which scenes are held out and each epoch's plan follow the count",
        "val_data": "the validation set would not be the one best.pt was chosen on",
    }
    paths = {"data": [parse_data_spec(d)[0] for d in cfg.data], "val_data": list(cfg.val_data)}
    for key, option in (("data", "--data"), ("val_data", "--val-data")):
        for path, then, count in zip(paths[key], had.get(key, []), now[key]):
            if then != count:
                raise ValueError(
                    f"{option} {path}: {count} complete scenes now, {then} when the run in {cfg.out} last saved "
                    f"last.pt (a render went on, or the file was replaced?); {what[key]}: resume with the file as it "
                    "was, or start a new --out (--init with this run's last.pt keeps its weights)"
                )
    raise ValueError(f"--data: the run in {cfg.out} saved last.pt with other files' scene counts ({had}, now {now})")


def _camera_text(camera: dict) -> str:
    size = camera.get("image_size") or ["?", "?"]
    focus = ", ".join(f"{d:g}" for d in camera.get("focus_distances") or [])
    lens = ", ".join(
        f"{k} {camera[k]:g}" for k in ("f_number", "focal_length_mm", "sensor_width_mm") if camera.get(k) is not None
    )
    return f"{camera.get('stack_size')} slices of {size[0]} x {size[1]} px focused at {focus} m{f' ({lens})' if lens else ''}"


def _check_moved_data(trained: list[str], given: list[str], option: str = "--data") -> None:
    """--data (or --val-data) on --resume names the run's own files where they moved to: ValueError for other
    files (a run that switched data would compare validation losses of two data sets, and mix two trainings)."""
    if len(given) != len(trained):
        raise ValueError(
            f"{option}: {len(given)} file(s), the run used {len(trained)}; on --resume {option} only says where they moved"
        )
    for old, new in zip(trained, given):
        (old_path, old_weight), (new_path, new_weight) = parse_data_spec(old), parse_data_spec(new)
        if old_weight != new_weight:
            raise ValueError(f"{option} {new}: the run sampled {old_path} with weight {old_weight:g}; a resumed run keeps it")
        if Path(old_path).exists() and not os.path.samefile(old_path, new_path):
            raise ValueError(
                f"{option} {new}: the run used {old}, which is still there; on --resume {option} only says where "
                "the run's files moved (start a new --out, or fine-tune with --init, to train on others)"
            )


# Every fit option that sets how the network is trained (not where, or for how long): option -> its place in
# TrainConfig (a field, or a field and a key). --data and --val-data may name moved files on resume; --arch is checked.
SETTING_PATHS: dict[str, tuple[str, ...]] = {
    "--width": ("arch_kwargs", "width"),
    "--aif-width": ("arch_kwargs", "aif_width"),
    "--aif-blocks": ("arch_kwargs", "aif_blocks"),
    "--no-flip": ("flips",),
    **{f"--loss-weight {term}": ("loss_weights", term) for term in LossWeights().to_dict()},
    **{f"--{name.replace('_', '-')}": ("norm", name) for name in Norm().to_dict()},
    **{
        f"--{name.replace('_', '-')}": (name,)
        for name in (
            "val_fraction",
            "batch_size",
            "stack_size",
            "random_stack",
            "align_slices",
            "crop",
            "transposes",
            "capture_augment",
            "init",
            "ema",
            "lr",
            "lr_schedule",
            "weight_decay",
            "grad_clip",
            "depth_loss",
            "relative_floor",
            "vgg_weights",
            "seed",
            "samples_per_epoch",
        )
    },
}


def _setting(cfg: TrainConfig, option: str):
    """The value ``option`` sets in ``cfg``, comparable across a stored and a new configuration."""
    path = SETTING_PATHS[option]
    value = getattr(cfg, path[0])
    if len(path) == 2:
        value = (value or {}).get(path[1])
    if path[0] in ("init", "vgg_weights") and value is not None:
        return str(_named_file(value, path[0]))
    return list(value) if isinstance(value, tuple) else value


def _effective_default(stored: TrainConfig, option: str, ckpt: dict):
    """What a setting the run left unset amounted to, where that is known: the architecture's own default
    width, the stack size of its data; else None."""
    path = SETTING_PATHS[option]
    if path[0] == "arch_kwargs":
        default = inspect.signature(ARCHITECTURES[stored.arch]).parameters.get(path[1])
        return None if default is None or default.default is inspect.Parameter.empty else default.default
    if path[0] == "stack_size":
        return (ckpt.get("camera") or {}).get("stack_size")
    return None


def _shown(value) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) if value else "none"
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _distributed(model: FocusOnDefocus, device: torch.device, terms: list[str], compile_: bool):
    """``model`` under DistributedDataParallel (then torch.compile'd, as PyTorch recommends)."""
    from torch.nn.parallel import DistributedDataParallel

    read = {TERM[t].output for t in terms}  # a network whose outputs no active term reads gets no gradient
    unused = "depth" not in read or (model.has_aif and not read & {"aif", "edges"})  # loss weights of 0
    ddp = DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused
    )
    return torch.compile(ddp) if compile_ else ddp


def _model(cfg: TrainConfig, device: torch.device, channels_last: bool) -> FocusOnDefocus:
    """The network, initialised from ``cfg.seed`` without touching torch's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.arch, **cfg.arch_kwargs)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def _hooks(cfg: TrainConfig, data: RunData, model: FocusOnDefocus, meta: dict, log: RunLog, writer: bool) -> list:
    """The hooks in the order they must run (see ``hooks``)."""
    hooks = []
    if cfg.lr_schedule != "constant":  # (constant: no hook, the optimiser keeps --lr)
        hooks.append(LearningRate(cfg.lr_schedule, cfg.lr, len(data.plan(0))))
    average = WeightAverage(cfg.ema) if cfg.ema else None
    if average is not None:
        hooks.append(average)
    if data.val_batches:
        metrics = [m for m in ALL_METRICS if model.has_aif or not m.startswith("aif_")]
        hooks.append(Validation(validation_scores(data.dataset, cfg.workers), data.val_batches, metrics, average))
    out = Path(cfg.out)
    hooks += [MetricsCSV(out / "metrics.csv", writer), Checkpoints(out, meta, cfg.checkpoint_every, writer)]
    if cfg.tensorboard:
        hooks.append(TensorBoard(out / "tb", log, writer))
    hooks.append(Progress(log, bars=cfg.progress and writer))
    return hooks
