"""The training loop: AdamW, bf16 autocast + channels-last on CUDA, seedable, atomic checkpoints, resume.

Outputs in ``--out``: ``last.pt`` (after every epoch, every ``checkpoint_every`` steps and when
stopped by ``max_steps``), ``best.pt`` (lowest validation loss; the last epoch without validation
data), ``metrics.csv`` (one row per epoch), ``train.log``, and TensorBoard events in ``tb/``.

Determinism: the weights are initialised from ``seed`` and every epoch's batches are drawn from
``(seed, epoch)`` (``data.plan_epoch``), so ``--resume`` after a kill continues exactly where the last
checkpoint left off, in the middle of an epoch too. On the CPU a resumed run ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from .data import (
    FocalStackDataset,
    Norm,
    PlanSettings,
    check_compatible,
    inspect_source,
    make_loader,
    parse_data_spec,
    plan_epoch,
    plan_eval,
    split_scenes,
    to_model_inputs,
)
from .device import autocast, resolve_amp, resolve_channels_last, resolve_device
from .evaluate import run_batches
from .losses import FocusLoss, LossWeights
from .models import ARCHITECTURES, build_model, count_parameters

# Settings that a resumed run may change; all others come from the checkpoint.
RUNTIME_FIELDS = (
    "epochs", "device", "amp", "channels_last", "compile", "workers", "max_steps", "checkpoint_every",
    "tensorboard", "progress", "log_every",
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
    lr: float = 1e-4
    weight_decay: float = 1e-4
    grad_clip: float = 1.0  # max gradient norm; 0: off
    loss_weights: dict = field(default_factory=lambda: LossWeights().to_dict())
    vgg_weights: str | None = None
    norm: dict = field(default_factory=lambda: Norm().to_dict())
    seed: int = 0
    samples_per_epoch: int | None = None
    workers: int = 0
    device: str = "auto"
    amp: str = "auto"  # auto | bf16 | off
    channels_last: str = "auto"  # auto (on CUDA) | on | off
    compile: bool = False
    checkpoint_every: int = 0  # optimiser steps; 0: at the end of each epoch only
    max_steps: int | None = None  # stop (with a checkpoint) after this many optimiser steps in total
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
        """ValueError naming the first unusable value."""
        if not self.data:
            raise ValueError("--data: give at least one training file")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"--arch {self.arch!r}: expected one of {', '.join(ARCHITECTURES)}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} {value!r}: expected a positive integer")
        if self.stack_size is not None and self.stack_size < 1:
            raise ValueError(f"--stack-size {self.stack_size}: expected a positive integer")
        if self.crop is not None and (len(self.crop) != 2 or min(self.crop) < 1):
            raise ValueError(f"--crop {self.crop}: expected a positive size")
        if not self.lr > 0:
            raise ValueError(f"--lr {self.lr}: expected a number > 0")
        if self.workers < 0:
            raise ValueError(f"--workers {self.workers}: expected 0 or more")
        Norm.from_dict(self.norm).check()
        LossWeights(**self.loss_weights)
        return self


@dataclass
class FitResult:
    out: Path
    last: Path
    best: Path
    history: list[dict]
    stopped_early: bool


class _Log:
    def __init__(self, path: Path, quiet: bool):
        self.path, self.quiet = path, quiet

    def __call__(self, msg: str) -> None:
        from tqdm import tqdm

        stamp = datetime.now().strftime("%H:%M:%S")
        with open(self.path, "a") as fh:
            fh.write(f"{stamp} {msg}\n")
        if not self.quiet:
            tqdm.write(msg)


def _grid(first: dict, norm: Norm, n: int = 4) -> torch.Tensor:
    """(3, H', W') picture: per sample, first and last slice, true and predicted depth (and AiF)."""
    inp, tgt, out = first["inputs"], first["targets"], first["outputs"]
    grey = lambda d: (d / norm.depth_scale).clamp(0, 1)[None].expand(3, -1, -1)  # noqa: E731
    rows = []
    for i in range(min(n, inp["stack"].shape[0])):
        tiles = [inp["stack"][i, 0], inp["stack"][i, -1], grey(tgt["depth"][i] * norm.depth_scale),
                 grey(out["depth"][i] * norm.depth_scale)]
        if "aif" in out:
            tiles += [tgt["aif"][i], out["aif"][i].clamp(0, 1)]
        rows.append(torch.cat(tiles, dim=2))
    return torch.cat(rows, dim=1)


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})
    os.replace(tmp, path)


def fit(cfg: TrainConfig, resume: bool = False) -> FitResult:
    """Train. With ``resume``, continue the run in ``cfg.out`` from its ``last.pt``: the training
    settings come from the checkpoint and only ``RUNTIME_FIELDS`` of ``cfg`` apply.

    Raises ValueError / CheckpointError / focalstack.dataset.DatasetError with one-line messages.
    """
    out = Path(cfg.out)
    last_path, best_path = out / "last.pt", out / "best.pt"
    ckpt = None
    if resume:
        if not last_path.is_file():
            raise CheckpointError(f"{last_path}: no checkpoint to resume from")
        ckpt = load_checkpoint(last_path)
        stored = TrainConfig.from_dict(ckpt["config"])
        if cfg.arch is not None and cfg.arch != stored.arch:
            raise CheckpointError(f"{last_path}: the run is architecture {stored.arch!r}, --arch says {cfg.arch!r}")
        for name in RUNTIME_FIELDS:
            setattr(stored, name, getattr(cfg, name))
        if cfg.data:
            stored.data = cfg.data
        cfg = stored
    elif last_path.exists():
        raise ValueError(f"{out}: already holds a run (last.pt); pass --resume to continue it or choose another --out")
    cfg.check()
    out.mkdir(parents=True, exist_ok=True)
    log = _Log(out / "train.log", quiet=not cfg.progress)

    device = resolve_device(cfg.device)
    amp_dtype = resolve_amp(cfg.amp, device)
    channels_last = resolve_channels_last(cfg.channels_last, device)
    norm = Norm.from_dict(cfg.norm).check()
    weights = LossWeights(**cfg.loss_weights)

    # -- data ------------------------------------------------------------------------------------
    specs = [parse_data_spec(s) for s in cfg.data]
    train_sources = [inspect_source(p, w) for p, w in specs]
    val_sources = [inspect_source(p) for p in cfg.val_data]
    crop = tuple(cfg.crop) if cfg.crop else None
    stack_size = check_compatible(train_sources, cfg.stack_size, crop)
    sources = train_sources + val_sources
    train_scenes, val_scenes = [], []
    for src in train_sources:
        tr, va = split_scenes(src.n_scenes, 0.0 if cfg.val_data else cfg.val_fraction, cfg.seed)
        train_scenes.append(tr)
        val_scenes.append(va)
    train_scenes += [np.arange(0)] * len(val_sources)
    val_scenes += [np.arange(s.n_scenes) for s in val_sources]
    n_val = int(sum(len(v) for v in val_scenes))
    dataset = FocalStackDataset([s.path for s in sources], align_slices=cfg.align_slices)
    val_batches = plan_eval(sources, val_scenes, cfg.batch_size, "All", cfg.seed) if n_val else []

    # -- model, optimiser, loss ------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, **cfg.arch_kwargs)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    settings = PlanSettings(
        batch_size=cfg.batch_size,
        stack_size=stack_size,
        random_stack=cfg.random_stack,
        single_image=model.single_image,  # the single-image ablation trains on one random slice
        crop=crop,
        flips=cfg.flips,
        samples_per_epoch=cfg.samples_per_epoch,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    vgg = None
    if cfg.vgg_weights:
        from .models.vgg import load_vgg16_features

        vgg = load_vgg16_features(cfg.vgg_weights).to(device)
    criterion = FocusLoss(weights, vgg)
    terms = criterion.active_terms(model.has_aif)

    start_epoch, start_batch, global_step = 0, 0, 0
    best_val, best_epoch = math.inf, -1
    partial = {}
    if ckpt is not None:
        load_weights(model, ckpt["model"], last_path, cfg.arch)
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, start_batch = int(ckpt["epoch"]), int(ckpt["batch"])
        global_step = int(ckpt["global_step"])
        best_val = float(ckpt["best"]["val_loss"])
        best_epoch = int(ckpt["best"]["epoch"])
        partial = dict(ckpt.get("partial", {}))
    step_model = torch.compile(model) if cfg.compile else model

    camera = dict(train_sources[0].camera)
    camera.update(image_size=list(train_sources[0].image_size), stack_size=stack_size)

    def payload(epoch: int, batch: int, partial_sums: dict) -> dict:
        return {
            "arch": cfg.arch,
            "arch_kwargs": dict(cfg.arch_kwargs),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(),
            "config": cfg.to_dict(),
            "norm": norm.to_dict(),
            "camera": camera,
            "epoch": epoch,
            "batch": batch,
            "global_step": global_step,
            "partial": {k: float(v) for k, v in partial_sums.items()},
            "best": {"val_loss": float(best_val), "epoch": int(best_epoch)},
            "torch_version": str(torch.__version__),
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    # -- logs ------------------------------------------------------------------------------------
    if not resume:
        log(
            f"training {cfg.arch} ({count_parameters(model) / 1e6:.2f} M parameters) on {device}"
            f"{' with bf16 autocast' if amp_dtype else ''}{', channels-last' if channels_last else ''}: "
            f"{sum(len(t) for t in train_scenes)} training and {n_val} validation scenes, stack size {stack_size}"
            f"{' (random subsets)' if cfg.random_stack else ''}"
        )
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    else:
        log(f"resuming {last_path} at epoch {start_epoch + 1}, batch {start_batch}, step {global_step}")
    if model.has_aif and weights.perceptual > 0 and vgg is None:
        log("perceptual loss off: no --vgg-weights file given (VGG16 weights are never downloaded)")
    columns = ["epoch", "step", "seconds", "lr", "train_loss", *(f"train_{t}" for t in terms)]
    if n_val:
        from .metrics import ALL_METRICS

        val_metrics = [m for m in ALL_METRICS if model.has_aif or not m.startswith("aif_")]
        columns += ["val_loss", *(f"val_{t}" for t in terms), *(f"val_{m}" for m in val_metrics)]
    csv_path = out / "metrics.csv"
    history = [r for r in _read_csv(csv_path) if int(r["epoch"]) <= start_epoch]
    tb = None
    if cfg.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(out / "tb"), purge_step=global_step if resume else None)
        except ImportError:
            log("TensorBoard logs off: the tensorboard package is not installed")

    from tqdm import tqdm

    stopped = False
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.time()
            batches = plan_epoch(train_sources, train_scenes[: len(train_sources)], settings, cfg.seed, epoch)
            first_batch = start_batch if epoch == start_epoch else 0
            sums = {k: partial.get(k, 0.0) for k in ["n", "loss", *terms]} if first_batch else {
                k: 0.0 for k in ["n", "loss", *terms]
            }
            pending: list[tuple[torch.Tensor, dict, int]] = []
            done = first_batch

            def flush() -> None:
                for loss_t, term_t, b in pending:
                    if not math.isfinite(float(loss_t)):
                        raise FloatingPointError(f"training loss became {float(loss_t)} (epoch {epoch + 1}); try a lower --lr")
                    sums["n"] += b
                    sums["loss"] += float(loss_t) * b
                    for k, v in term_t.items():
                        sums[k] += float(v) * b
                pending.clear()

            model.train()
            loader = make_loader(dataset, batches, cfg.workers, start=first_batch, pin=device.type == "cuda")
            bar = tqdm(total=len(batches), initial=first_batch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       disable=not cfg.progress, dynamic_ncols=True)
            with bar:
                for bi, batch in enumerate(loader, start=first_batch):
                    inputs, targets = to_model_inputs(batch, norm, device)
                    with autocast(device, amp_dtype):
                        outputs = step_model(inputs["stack"], inputs["focus"])
                    loss, term_values = criterion(outputs, targets)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    opt.step()
                    global_step += 1
                    pending.append((loss.detach(), term_values, inputs["stack"].shape[0]))
                    bar.update(1)
                    if global_step % cfg.log_every == 0 or bi == len(batches) - 1:
                        flush()
                        bar.set_postfix(loss=f"{sums['loss'] / max(sums['n'], 1):.4g}")
                        if tb is not None:
                            tb.add_scalar("train/loss", float(loss.detach()), global_step)
                            for k, v in term_values.items():
                                tb.add_scalar(f"train/{k}", float(v), global_step)
                    done = bi + 1
                    stop = cfg.max_steps is not None and global_step >= cfg.max_steps
                    periodic = cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0
                    if done < len(batches) and (stop or periodic):
                        flush()
                        save_checkpoint(last_path, payload(epoch, done, sums))
                    if stop:
                        stopped = True
                        log(f"stopped after {global_step} steps (--max-steps); continue with --resume")
                        break
            flush()
            if stopped and done < len(batches):
                break  # mid-epoch: last.pt already holds the position
            start_batch = 0
            partial = {}
            row = {
                "epoch": epoch + 1,
                "step": global_step,
                "seconds": round(time.time() - t0, 3),
                "lr": opt.param_groups[0]["lr"],
                "train_loss": sums["loss"] / max(sums["n"], 1),
                **{f"train_{t}": sums[t] / max(sums["n"], 1) for t in terms},
            }
            first = None
            if val_batches:
                means, first = run_batches(step_model, dataset, val_batches, norm, device, amp_dtype, criterion, cfg.workers)
                row["val_loss"] = means.get("loss")
                row.update({f"val_{t}": means.get(t) for t in terms})
                row.update({f"val_{m}": means.get(m) for m in val_metrics})
                score = row["val_loss"]
            else:
                score = -epoch  # no validation data: the latest epoch is the best
            is_best = score < best_val
            if is_best:
                best_val, best_epoch = score, epoch + 1
            history.append(row)
            _write_csv(csv_path, history, columns)
            save_checkpoint(last_path, payload(epoch + 1, 0, {}))
            if is_best:
                save_checkpoint(best_path, payload(epoch + 1, 0, {}))
            if tb is not None:
                for k, v in row.items():
                    if k.startswith("val_") and v is not None:
                        tb.add_scalar(k.replace("val_", "val/", 1), float(v), global_step)
                tb.add_scalar("train/epoch_loss", row["train_loss"], global_step)
                if first is not None:
                    tb.add_image("val/stack_first_last_depth_true_pred_aif_true_pred", _grid(first, norm), global_step)
                tb.flush()
            msg = f"epoch {epoch + 1}: train loss {row['train_loss']:.4g}"
            if "val_loss" in row:
                msg += f", val loss {row['val_loss']:.4g}, val depth RMSE {row['val_depth_rmse']:.4g} m"
            log(msg + (" (best)" if is_best else ""))
            if stopped:
                break
    finally:
        dataset.close()
        if tb is not None:
            tb.close()
    if not best_path.exists() and last_path.exists():  # stopped before the first epoch ended
        save_checkpoint(best_path, load_checkpoint(last_path))
    return FitResult(out, last_path, best_path, [dict(r) for r in history], stopped)
