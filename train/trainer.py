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

The settings are ``config.TrainConfig``; what a resumed run keeps and refuses is in ``resume``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from focalstack.dataset import DatasetError
from focalstack.dataset.files import output_folder, write_text_atomic

from .augment import CaptureAugment
from .checkpoint import CheckpointError, check_weights, inference_weights, load_checkpoint, resolve_checkpoint
from .config import TrainConfig
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
from .hooks import Checkpoints, LearningRate, MetricsCSV, Progress, RunLog, TensorBoard, Validation, WeightAverage
from .inference import validation_scores
from .losses import TERM, FocusLoss, LossWeights, describe_depth_loss
from .metrics import ALL_METRICS
from .models import FocusOnDefocus, build_model, count_parameters
from .plan import PlanSettings, Share, plan_epoch, plan_eval, share_batch, split_scenes
from .resume import (
    absolute_specs,
    check_data_defaults,
    clear_run_without_checkpoint,
    epochs_logged,
    refuse_other_scene_counts,
    resumed_config,
    run_settings,
)


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
        cfg, ckpt, data_defaults = resumed_config(cfg, out / "last.pt", given)
    elif (out / "last.pt").exists():
        raise ValueError(f"{out}: already holds a run (last.pt); pass --resume to continue it or choose another --out")
    elif (out / "best.pt").exists():  # a new run would replace it, and its config would no longer describe it
        raise ValueError(f"{out}: already holds a run's best.pt (no last.pt to resume from); choose another --out")
    elif (out / "config.json").exists() and run_settings(out / "config.json") is None:
        raise ValueError(f"{out}: holds a config.json that is not a run's settings; choose another --out")
    elif epochs_logged(out / "metrics.csv"):  # last.pt is written every epoch: its checkpoints were moved away
        raise ValueError(
            f"{out}: holds the metrics.csv of a run whose checkpoints were removed, its only record; choose another --out"
        )
    cfg.check()
    # Absolute data paths: a resumed run (from another working folder, or a moved run folder) reads the same files.
    cfg.data, cfg.val_data = absolute_specs(cfg.data), absolute_specs(cfg.val_data)
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
        refuse_other_scene_counts(ckpt.get("scenes"), data, cfg)
    check_data_defaults(data_defaults or {}, data, out)
    criterion, terms = _loss(cfg, data, model, device)
    # the run's checks have passed: what a run that left no checkpoint wrote goes now, not before a refusal
    cleared = clear_run_without_checkpoint(out) if writer and ckpt is None else []
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


def _camera_text(camera: dict) -> str:
    size = camera.get("image_size") or ["?", "?"]
    focus = ", ".join(f"{d:g}" for d in camera.get("focus_distances") or [])
    lens = ", ".join(
        f"{k} {camera[k]:g}" for k in ("f_number", "focal_length_mm", "sensor_width_mm") if camera.get(k) is not None
    )
    return f"{camera.get('stack_size')} slices of {size[0]} x {size[1]} px focused at {focus} m{f' ({lens})' if lens else ''}"


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
