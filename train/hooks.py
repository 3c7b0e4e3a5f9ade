"""What a training run does around its steps, one hook per concern (the loop is ``engine.Trainer``):

- ``Validation``   runs the validation batches after each epoch and adds val_* to the epoch's row
- ``MetricsCSV``   ``metrics.csv``, one row per epoch, rewritten atomically
- ``Checkpoints``  ``last.pt`` after each epoch, every N steps and when stopped by --max-steps;
                   ``best.pt`` on the lowest validation loss (without validation data, the last epoch)
- ``TensorBoard``  scalars and the validation picture in ``tb/``
- ``Progress``     tqdm bars and the log lines (``RunLog``: ``train.log`` and the terminal)
- ``LearningRate`` the learning rate before each step, by ``--lr-schedule`` (none for ``constant``)
- ``WeightAverage`` an exponential moving average of the weights after each step (``--ema``): what
                   validation scores and what the run's checkpoints stand for

WeightAverage comes before Checkpoints, so that a checkpoint holds the average of the steps it records.
Order matters after an epoch: Validation first (the others read its numbers); MetricsCSV before
Checkpoints, so that a kill between the two repeats the epoch rather than losing its row; Progress,
which says whether the epoch was the best, after Checkpoints.

Hooks that write files take ``writer``: when several processes train one run (``distributed``), rank 0
writes and the others keep the same state without writing.
"""

from __future__ import annotations

import contextlib
import csv
import math
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from focalstack.dataset.files import atomic_path

from .checkpoint import save_checkpoint
from .engine import Hook
from .results import write_csv


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


class RunLog:
    """Log lines: appended to ``train.log`` with the time, and shown on the terminal unless ``quiet``."""

    def __init__(self, path: Path, quiet: bool = False, writer: bool = True):
        self.path, self.quiet, self.writer = Path(path), quiet, writer

    def __call__(self, msg: str) -> None:
        if not self.writer:
            return
        from tqdm import tqdm

        with open(self.path, "a") as fh:
            fh.write(f"{datetime.now().strftime('%H:%M:%S')} {msg}\n")
        if not self.quiet:
            tqdm.write(msg)  # above the progress bar, not through it


# What validation calls after each epoch: (trainer, batches, merge) -> (means by key, a sample for pictures).
# ``merge`` gathers (sums, counts) over processes (None with one). ``inference.validation_scores`` is one.
ValidationScore = Callable[[Any, list, Callable | None], tuple[dict[str, float], dict | None]]


def average_decay(decay: float, updates: int) -> float:
    """The weight of the old average at update ``updates`` (0-based): ``decay``, less at first so that
    the weights a run started from fade within its first steps rather than over ~1/(1 - decay) of them."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightAverage(Hook):
    """An exponential moving average of the network's floating-point tensors, updated after each optimiser
    step (``average_decay``), kept in float32 on the training device. Averaged weights wander less from
    checkpoint to checkpoint than the raw ones. Stored in checkpoints under ``state_key`` beside the raw
    weights (which resuming needs); ``checkpoint.inference_weights`` picks the average. Every process of a
    distributed run holds the same weights after a step, so each keeps the same average without talking."""

    state_key = "weight_average"

    def __init__(self, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema {decay!r}: expected a decay in (0, 1), such as 0.999")
        self.decay, self.updates = float(decay), 0
        self.average: dict[str, torch.Tensor] | None = None  # None until training starts or a checkpoint loads
        self.live: dict[str, torch.Tensor] = {}
        self._pairs: tuple[list, list] = ([], [])

    def before_train(self) -> None:
        # the network's own tensors (the optimiser and load_state_dict change them in place); the average is
        # built in their order, as after_step pairs the two by position
        self.live = {k: v for k, v in self.trainer.model.state_dict().items() if v.is_floating_point()}
        if self.average is None:
            self.average = {k: v.detach().float().clone() for k, v in self.live.items()}
        else:  # loaded from a checkpoint, on the CPU
            self.average = {k: self.average[k].to(device=v.device, dtype=torch.float32) for k, v in self.live.items()}
        self._pairs = (list(self.average.values()), list(self.live.values()))  # built once, used every step

    def after_step(self) -> None:
        weight = 1.0 - average_decay(self.decay, self.updates)
        with torch.no_grad():  # one fused kernel per device and dtype, as torch.optim.swa_utils' EMA does
            torch._foreach_lerp_(*self._pairs, weight)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self):
        """The averaged weights in the network for the ``with`` block; the raw ones back afterwards."""
        assert self.average is not None
        raw = {k: v.clone() for k, v in self.live.items()}
        with torch.no_grad():
            for k, v in self.live.items():
                v.copy_(self.average[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in self.live.items():
                    v.copy_(raw[k])

    def state_dict(self) -> dict:
        assert self.average is not None
        return {"decay": self.decay, "updates": self.updates, "model": {k: v.detach().cpu() for k, v in self.average.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        self.average = {k: v.float() for k, v in state["model"].items()}


class Validation(Hook):
    """After each epoch: ``score`` over ``batches`` (the loss, its terms and ``metrics``) as val_* in the epoch's
    row, as detectron2's EvalHook calls its function; with ``average``, of the averaged weights. With several
    processes each scores its part of the batches and the means are gathered over all."""

    def __init__(self, score: ValidationScore, batches: list, metrics: list[str], average: WeightAverage | None = None):
        self.score, self.batches, self.metrics, self.average = score, batches, list(metrics), average

    def after_epoch(self) -> None:
        t, group = self.trainer, self.trainer.group
        batches = self.batches if group is None else group.split(self.batches)
        with self.average.applied() if self.average is not None else contextlib.nullcontext():
            means, sample = self.score(t, batches, None if group is None else group.merge_means)
        row = t.summary.row
        row["val_loss"] = means.get("loss")
        row.update({f"val_{k}": means.get(k) for k in (*t.terms, *self.metrics)})
        t.summary.val_sample = sample


LR_SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, progress: float) -> float:
    """The learning rate's multiplier at ``progress`` through the run (0 at its start, 1 at its end):
    ``constant`` 1; ``cosine`` half a cosine from 1 down to 0."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    raise ValueError(f"lr_schedule {schedule!r}: expected one of {', '.join(LR_SCHEDULES)}")


class LearningRate(Hook):
    """Before each step, the learning rate ``lr`` x ``lr_factor(schedule, progress)``. Progress is the larger
    of the steps taken over the run's steps (its epochs', or --max-steps where that ends it first) and the
    share of --max-time spent, so that a run ends at the end of its schedule whichever limit stops it. With
    --max-time the rate follows the clock (read on the log steps, agreed by all processes): such a run is
    not repeatable step for step, as where it stops is not."""

    def __init__(self, schedule: str, lr: float, steps_per_epoch: int):
        lr_factor(schedule, 0.0)  # refuses an unknown schedule here, not at the first step
        self.schedule, self.lr, self.steps_per_epoch = schedule, lr, steps_per_epoch
        self.total = 1

    def before_train(self) -> None:
        t = self.trainer
        total = t.epochs * self.steps_per_epoch
        self.total = max(1, total if t.max_steps is None else min(total, t.max_steps))

    def before_step(self) -> None:
        t = self.trainer
        lr = self.lr * lr_factor(self.schedule, max(t.global_step / self.total, t.time_used))
        for group in t.optimizer.param_groups:
            group["lr"] = lr


class MetricsCSV(Hook):
    """``metrics.csv``: one row per finished epoch, the whole file rewritten atomically each time."""

    def __init__(self, path: Path, writer: bool = True):
        self.path, self.writer = Path(path), writer
        self.history: list[dict] = []

    def before_train(self) -> None:
        # A resumed run keeps the rows of the epochs its checkpoint holds; later ones will run again.
        self.history = [r for r in read_csv(self.path) if int(r["epoch"]) <= self.trainer.epoch]

    def after_epoch(self) -> None:
        self.history.append(self.trainer.summary.row)
        if self.writer:
            write_csv(self.path, self.history, list(self.trainer.summary.row))


class Checkpoints(Hook):
    """``last.pt`` and ``best.pt`` in ``folder``: the trainer's state plus ``meta`` (what rebuilds the
    model and describes the run: arch, arch_kwargs, config, norm, camera)."""

    state_key = "best"

    def __init__(self, folder: Path, meta: dict, every: int = 0, writer: bool = True):
        self.last, self.best = Path(folder) / "last.pt", Path(folder) / "best.pt"
        self.meta, self.every, self.writer = meta, every, writer
        self.best_loss, self.best_epoch = math.inf, -1

    def state_dict(self) -> dict:
        return {"val_loss": float(self.best_loss), "epoch": int(self.best_epoch)}

    def load_state_dict(self, state: dict) -> None:
        self.best_loss, self.best_epoch = float(state["val_loss"]), int(state["epoch"])

    def after_step(self) -> None:
        t = self.trainer
        periodic = self.every and t.global_step % self.every == 0
        if not t.epoch_done and (t.stopped or periodic):  # at an epoch's end, after_epoch saves
            t.flush_loss()  # in every process, writer or not: the loss sums must agree everywhere
            self._save(self.last)

    def after_epoch(self) -> None:
        t = self.trainer
        # Without validation data a later epoch always scores lower: the latest is the best.
        score = t.summary.row["val_loss"] if "val_loss" in t.summary.row else -t.epoch
        t.summary.is_best = score < self.best_loss
        if t.summary.is_best:
            self.best_loss, self.best_epoch = score, t.epoch + 1
        payload = self._save(self.last)
        if t.summary.is_best:
            self._save(self.best, payload)

    def after_train(self) -> None:
        if self.writer and not self.best.exists() and self.last.exists():  # stopped before an epoch ended
            with atomic_path(self.best, fsync=True) as tmp:
                shutil.copyfile(self.last, tmp)

    def _save(self, path: Path, payload: dict | None = None) -> dict | None:
        if not self.writer:
            return None
        if payload is None:
            payload = {
                **self.meta,
                **self.trainer.state_dict(),
                "torch_version": str(torch.__version__),
                "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        save_checkpoint(path, payload)
        return payload


def validation_picture(sample: dict, n: int = 4) -> torch.Tensor:
    """(3, H', W') picture: per sample, first and last slice, true and predicted depth (and AiF).
    Depth is grey from 0 (black) to ``Norm.depth_scale`` (white): the normalised depth clamped to [0, 1]."""
    inp, tgt, out = sample["inputs"], sample["targets"], sample["outputs"]
    grey = lambda d: d.clamp(0, 1)[None].expand(3, -1, -1)  # noqa: E731
    rows = []
    for i in range(min(n, inp["stack"].shape[0])):
        tiles = [inp["stack"][i, 0], inp["stack"][i, -1], grey(tgt["depth"][i]), grey(out["depth"][i])]
        if "aif" in out:
            tiles += [tgt["aif"][i], out["aif"][i].clamp(0, 1)]
        rows.append(torch.cat(tiles, dim=2))
    return torch.cat(rows, dim=1)


class TensorBoard(Hook):
    """TensorBoard events in ``folder``: the loss at log steps, every epoch's numbers and picture."""

    def __init__(self, folder: Path, log: RunLog, writer: bool = True):
        self.folder, self.log, self.writer = Path(folder), log, writer
        self.tb = None

    def before_train(self) -> None:
        if not self.writer:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.log("TensorBoard logs off: the tensorboard package is not installed")
            return
        # A resumed run drops the events that a killed run wrote after its checkpoint.
        self.tb = SummaryWriter(str(self.folder), purge_step=self.trainer.global_step or None)

    def after_step(self) -> None:
        t = self.trainer
        if self.tb is None or not t.log_step:
            return
        for k, v in t.loss.latest.items():  # the latest step's loss and terms, of the whole batch
            self.tb.add_scalar(f"train/{k}", v, t.global_step)

    def after_epoch(self) -> None:
        if self.tb is None:
            return
        t, row = self.trainer, self.trainer.summary.row
        for k, v in row.items():
            if k.startswith("val_") and v is not None:
                self.tb.add_scalar(k.replace("val_", "val/", 1), float(v), t.global_step)
        self.tb.add_scalar("train/epoch_loss", row["train_loss"], t.global_step)
        if t.summary.val_sample is not None:
            picture = validation_picture(t.summary.val_sample)
            self.tb.add_image("val/stack_first_last_depth_true_pred_aif_true_pred", picture, t.global_step)
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


class Progress(Hook):
    """A tqdm bar per epoch (with ``bars``) and log lines: each epoch's losses, a stop by --max-steps."""

    def __init__(self, log: RunLog, bars: bool = True):
        self.log, self.bars = log, bars
        self.bar = None

    def before_epoch(self) -> None:
        from tqdm import tqdm

        t = self.trainer
        self.bar = tqdm(
            total=len(t.batches),
            initial=t.batch,
            desc=f"epoch {t.epoch + 1}/{t.epochs}",
            disable=not self.bars,
            dynamic_ncols=True,
        )

    def after_step(self) -> None:
        t = self.trainer
        self.bar.update(1)
        if t.log_step:
            self.bar.set_postfix(loss=f"{t.loss.mean('loss'):.4g}")
        if t.epoch_done:
            self.close()  # before validation runs
        if t.stopped:
            self.log(f"stopped after {t.global_step} steps ({self._limit()}); continue with --resume")

    def before_train(self) -> None:
        t = self.trainer
        if t.stopped:  # resumed at its limit: the engine takes no step
            self.log(f"nothing to do: the run reached {self._limit()} before (step {t.global_step}); raise it to go on")

    def _limit(self) -> str:
        t = self.trainer
        if t.max_steps is not None and t.global_step >= t.max_steps:
            return f"--max-steps {t.max_steps}"
        return f"--max-time {t.max_time:g} s"

    def after_epoch(self) -> None:
        t, row = self.trainer, self.trainer.summary.row
        msg = f"epoch {row['epoch']}: train loss {row['train_loss']:.4g}"
        if "val_loss" in row:
            rmse = row["val_depth_rmse"]  # None where no validation pixel has usable depth
            msg += f", val loss {row['val_loss']:.4g}, val depth RMSE " + ("-" if rmse is None else f"{rmse:.4g} m")
        if t.summary.is_best:  # best.pt is chosen by validation loss, not by the RMSE beside it
            msg += "; saved as best.pt (lowest val loss so far)" if "val_loss" in row else "; saved as best.pt"
        self.log(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
