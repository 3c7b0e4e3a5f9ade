"""The training loop: a short ``Trainer.train()`` that runs optimiser steps and calls hooks around them.

The idea is detectron2's (``engine/train_loop.py``, ``engine/hooks.py``): the loop knows epochs and
steps only; everything else a run does (validation, checkpoints, the metrics table, TensorBoard,
progress bars and log lines) is a ``Hook`` (see ``hooks``), called in list order at

    before_train
      before_epoch
        before_step, run_step, after_step     once per batch
      after_epoch                             only for an epoch that ran to its end
    after_train                               only when the loop ended without an error
    close                                     always, last: release files, bars, writers

The trainer's state (weights, optimiser, position in the run, the epoch's loss sums) together with each
hook's ``state_dict()``, stored under the hook's ``state_key``, is what a checkpoint needs to resume;
``load_state_dict`` puts a run back exactly where a checkpoint left it, in the middle of an epoch too.

Several processes (``group``, a ``distributed.Group``; DDP): ``data.plan`` gives this process its share
of each global batch, ``step_model`` wraps ``model`` (DistributedDataParallel, maybe torch.compile) and
``eval_model`` is the same network without DDP, for validation. Each process's loss is its share of
the global batch's loss (``FocusLoss``'s ``share``), multiplied by the number of processes before
``backward`` because DDP averages the gradients. Nothing in a step reads a value back from the device,
and the loss sums change only in ``RunningLoss.flush``, which every process reaches at the same steps
and where the shares are summed over the processes. Without ``group`` none of this happens: one
process computes exactly what it did before DDP existed.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import torch

from .data import Norm, to_model_inputs
from .device import autocast

# Keys of Trainer.state_dict(); hooks store their state under other keys (their state_key).
TRAINER_KEYS = ("model", "optimizer", "epoch", "batch", "global_step", "partial", "elapsed")


class Hook:
    """One concern of a training run. Every method is a no-op here; ``trainer`` is set by the Trainer.

    A hook with state that resuming needs names a ``state_key`` and implements ``state_dict`` /
    ``load_state_dict`` (plain data: numbers, strings, lists, dicts).
    """

    state_key: str | None = None
    trainer: Trainer

    def before_train(self) -> None: ...

    def before_epoch(self) -> None: ...

    def before_step(self) -> None: ...

    def after_step(self) -> None: ...

    def after_epoch(self) -> None: ...

    def after_train(self) -> None: ...

    def close(self) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class EpochData(Protocol):
    """Where the batches come from. Plans must depend on the epoch alone (resume replays them)."""

    def plan(self, epoch: int) -> Sequence:
        """The batches (of sample keys) that this process trains on in ``epoch``."""

    def loader(self, batches: Sequence, start: int) -> Iterable[dict]:
        """The batches ``batches[start:]``, read."""


@dataclass
class StepOutput:
    loss: torch.Tensor  # detached, still on the device
    terms: dict[str, torch.Tensor]
    size: int  # stacks in the batch (with several processes: the stacks this one counted)


@dataclass
class EpochSummary:
    """What a finished epoch leaves for the after_epoch hooks, filled in as they run in order."""

    row: dict  # the metrics.csv row: train_* from the loop, val_* from the Validation hook
    is_best: bool = False  # set by the Checkpoints hook
    val_sample: dict | None = None  # first validation batch (inputs, targets, outputs) on the CPU


class RunningLoss:
    """Sums over one epoch of the loss and its terms, weighted by batch size.

    ``add`` keeps a step's tensors without reading them (a read waits for the device); ``flush`` reads
    them, refuses non-finite losses, and adds them to the sums. ``latest`` holds the last step read:
    loss and terms of the whole batch. With ``group`` (several processes) each step holds this process's
    shares, and ``flush`` sums them and the stack counts over the processes first: every process then
    has the sums of the global batches.
    """

    def __init__(self, terms: Sequence[str], sums: dict | None = None, group=None):
        self.terms, self.group = list(terms), group
        self.reset(sums)

    def reset(self, sums: dict | None = None) -> None:
        sums = sums or {}
        self.sums = {k: float(sums.get(k, 0.0)) for k in ("n", "loss", *self.terms)}
        self.pending = []
        self.latest: dict[str, float] = {}

    def add(self, step: StepOutput) -> None:
        self.pending.append(step)

    def flush(self, epoch: int) -> None:
        if self.group is not None and self.pending:
            self.pending = self._summed_over_processes(self.pending)
        for step in self.pending:
            loss = float(step.loss)
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} (epoch {epoch + 1}); try a lower --lr")
            self.sums["n"] += step.size
            self.sums["loss"] += loss * step.size
            self.latest = {"loss": loss}
            for k, v in step.terms.items():
                self.sums[k] += float(v) * step.size
                self.latest[k] = float(v)
        self.pending.clear()

    def _summed_over_processes(self, steps: list[StepOutput]) -> list[StepOutput]:
        """The global batches' losses from every process's shares (one all-reduce for all ``steps``)."""
        rows = [
            torch.stack(
                [
                    s.loss.double(),
                    *(s.terms[k].double() for k in self.terms),
                    torch.tensor(float(s.size), dtype=torch.float64, device=s.loss.device),
                ]
            )
            for s in steps
        ]
        table = self.group.sum(torch.stack(rows)).cpu()
        return [StepOutput(row[0], dict(zip(self.terms, row[1:-1])), int(round(float(row[-1])))) for row in table]

    def mean(self, key: str) -> float:
        return self.sums[key] / max(self.sums["n"], 1)


class Trainer:
    """Epochs of optimiser steps over ``data``, with ``hooks`` around them (see the module docstring).

    Position: ``epoch`` (0-based) is the epoch in progress, ``batch`` the batches of it done,
    ``global_step`` the optimiser steps of the whole run, ``elapsed`` its seconds of training (across
    resumes). ``stopped`` turns True at ``max_steps`` steps or ``max_time`` seconds in total; the time is
    looked at on the steps where the loss is read (every ``log_every``), where several processes agree on it.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        criterion,
        data: EpochData,
        norm: Norm,
        device: torch.device,
        *,
        epochs: int,
        terms: Sequence[str],
        amp_dtype: torch.dtype | None = None,
        step_model=None,
        eval_model=None,
        group=None,
        grad_clip: float = 0.0,
        log_every: int = 10,
        max_steps: int | None = None,
        max_time: float | None = None,
        hooks: Sequence[Hook] = (),
    ):
        self.model, self.optimizer, self.criterion, self.data, self.norm = model, optimizer, criterion, data, norm
        self.device, self.amp_dtype = device, amp_dtype
        self.step_model = step_model if step_model is not None else model
        self.eval_model = eval_model if eval_model is not None else self.step_model
        self.group = group  # distributed.Group: several processes train together; None: this one alone
        self.epochs, self.terms, self.grad_clip = epochs, list(terms), grad_clip
        self.log_every, self.max_steps, self.max_time = log_every, max_steps, max_time
        keys = [h.state_key for h in hooks if h.state_key]
        clash = [k for k in keys if k in TRAINER_KEYS or keys.count(k) > 1]
        if clash:
            raise ValueError(f"hook state key {clash[0]!r} is taken")
        self.hooks = list(hooks)
        for hook in self.hooks:
            hook.trainer = self
        self.epoch = self.batch = self.global_step = 0
        self.batches: Sequence | None = None  # the epoch in progress
        self.loss = RunningLoss(self.terms, group=group)
        self.step: StepOutput | None = None  # the latest step's loss
        self.log_step = False  # the latest step is one where the loss is read (every log_every steps)
        self.stopped = False
        self.elapsed = 0.0  # seconds of training before the session in progress
        # max_time's fraction spent, as read (and, with several processes, agreed) on the log steps
        self.time_used = 0.0
        self._session_start: float | None = None  # while train() runs
        self.summary: EpochSummary | None = None  # the latest finished epoch
        self._epoch_start = 0.0

    @property
    def epoch_done(self) -> bool:
        return self.batches is not None and self.batch >= len(self.batches)

    def train(self) -> None:
        with contextlib.ExitStack() as cleanup:
            for hook in reversed(self.hooks):  # ExitStack calls back last-in first: close in list order
                cleanup.callback(hook.close)
            self._session_start = time.monotonic()
            cleanup.callback(self._end_session)  # runs before the hooks close
            # a resumed run that reached its limits before takes no further step (the same state on every
            # process: steps and the stored seconds come from the checkpoint)
            self.stopped = (self.max_steps is not None and self.global_step >= self.max_steps) or (
                self.max_time is not None and self.elapsed >= self.max_time
            )
            self.time_used = min(1.0, self.elapsed / self.max_time) if self.max_time else 0.0
            self._call("before_train")
            while self.epoch < self.epochs and not self.stopped:
                self.run_epoch()
            self._call("after_train")

    def run_epoch(self) -> None:
        self.batches = self.data.plan(self.epoch)
        if self.batch == 0:
            self.loss.reset()  # (a run resumed mid-epoch keeps the sums its checkpoint holds)
        self._epoch_start = time.time()
        self._call("before_epoch")
        for batch in self.data.loader(self.batches, self.batch):
            self._call("before_step")
            self.run_step(batch)
            self.batch += 1
            self.global_step += 1
            self.log_step = self.global_step % self.log_every == 0 or self.epoch_done
            self.stopped = (self.max_steps is not None and self.global_step >= self.max_steps) or self._time_up()
            if self.log_step:
                self.flush_loss()
            self._call("after_step")
            if self.stopped:
                break
        if not self.epoch_done:
            return  # stopped by max_steps or max_time in mid-epoch: the Checkpoints hook saved the position
        self.flush_loss()
        self.summary = EpochSummary(self._train_row())
        self._call("after_epoch")
        self.epoch, self.batch = self.epoch + 1, 0

    def run_step(self, batch: dict) -> None:
        """One optimiser step: forward under autocast, loss, backward, gradient clipping, update."""
        inputs, targets = to_model_inputs(batch, self.norm, self.device)
        with autocast(self.device, self.amp_dtype):
            outputs = self.step_model(inputs["stack"], inputs["focus"])
        size = inputs["stack"].shape[0]
        if self.group is None:
            loss, terms = self.criterion(outputs, targets)
        else:  # this process's share of the global batch's loss; a stand-in batch counts zero
            counted = bool(batch.get("counted", True))
            loss, terms = self.criterion(outputs, targets, share=partial(self.group.shares, counted=counted))
            size = size if counted else 0
        self.optimizer.zero_grad(set_to_none=True)
        # DDP averages the processes' gradients; their losses are shares that add up to the batch's loss
        (loss if self.group is None else loss * self.group.world_size).backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.step = StepOutput(loss.detach(), terms, size)
        self.loss.add(self.step)

    @property
    def elapsed_total(self) -> float:
        """Seconds of training in the whole run: earlier sessions' and the one in progress."""
        running = 0.0 if self._session_start is None else time.monotonic() - self._session_start
        return self.elapsed + running

    def _end_session(self) -> None:
        self.elapsed, self._session_start = self.elapsed_total, None

    def _time_up(self) -> bool:
        if self.max_time is None or not self.log_step:
            return False
        elapsed = self.elapsed_total
        up = elapsed >= self.max_time
        if self.group is not None:  # processes' clocks differ: stop together when any is out of time,
            # and schedule the learning rate by their mean (the same on every process)
            agreed = self.group.sum(torch.tensor([float(up), elapsed], dtype=torch.float64, device=self.device))
            up, elapsed = bool(agreed[0].item() > 0), float(agreed[1].item()) / self.group.world_size
        self.time_used = min(1.0, elapsed / self.max_time)
        return up

    def flush_loss(self) -> None:
        """Read the pending losses into the epoch's sums (FloatingPointError if one is not finite)."""
        self.loss.flush(self.epoch)

    def _train_row(self) -> dict:
        return {
            "epoch": self.epoch + 1,
            "step": self.global_step,
            "seconds": round(time.time() - self._epoch_start, 3),
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": self.loss.mean("loss"),
            **{f"train_{t}": self.loss.mean(t) for t in self.terms},
        }

    def state_dict(self) -> dict:
        """Weights (on the CPU), optimiser, position, the epoch's loss sums, and the hooks' states.

        A finished epoch is recorded as the start of the next. The pending losses are read first, so
        that the sums cover every step taken.
        """
        self.flush_loss()
        done = self.epoch_done
        state = {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch + 1 if done else self.epoch,
            "batch": 0 if done else self.batch,
            "global_step": self.global_step,
            "partial": {} if done else dict(self.loss.sums),
            "elapsed": round(self.elapsed_total, 3),
        }
        state.update({h.state_key: h.state_dict() for h in self.hooks if h.state_key})
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self.global_step = int(state["global_step"])
        self.elapsed = float(state.get("elapsed", 0.0))  # checkpoints before max_time have none
        self.loss.reset(state.get("partial"))  # sums over all processes: the same in each
        for hook in self.hooks:
            if hook.state_key and hook.state_key in state:
                hook.load_state_dict(state[hook.state_key])

    def _call(self, name: str) -> None:
        for hook in self.hooks:
            getattr(hook, name)()
