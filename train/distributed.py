"""Several processes training (or evaluating) one run: torchrun's environment, the process group, and
the few collectives the trainer needs besides DistributedDataParallel's gradient all-reduce.

``torchrun --nproc-per-node N -m focalstack.train fit ...`` (or ``--nnodes``, ``--rdzv-endpoint``)
starts N processes per node and gives each RANK, WORLD_SIZE and LOCAL_RANK. ``process_group(device)``
reads them: without WORLD_SIZE it returns None and nothing changes (one process, exactly as without
this module); with it, it starts the default process group once per process (nccl on CUDA, gloo on the
CPU), pins the process to the GPU of its LOCAL_RANK and returns a ``Group``.

How the work is shared, so that N processes compute what one would (up to float rounding):

- batches: every rank plans the same epoch (the plan depends on (seed, epoch) alone) and trains on its
  share of every global batch of ``--batch-size`` stacks: stacks rank, rank + N, ... (``data.share_batch``).
  A batch with fewer stacks than ranks leaves some ranks without one: they run the batch's first stack
  with weight zero, since every rank must take part in every step's gradient all-reduce.
- loss: every term is a mean over elements (all pixels of the batch; the valid pixels for depth), so a
  mean over one rank's stacks is not its share of the batch's mean. ``Group.shares`` sums the terms'
  element counts over the ranks, and each rank multiplies its means by its count / the total: the ranks'
  terms then add up to the one-process terms of the whole batch. DDP averages gradients over the ranks;
  the trainer multiplies the loss by N before ``backward`` so the average is that sum.
- loss sums: ``RunningLoss`` sums each step's loss shares and stack counts over the ranks (``Group.sum``)
  when it reads them; every rank then holds the one-process sums.
- validation and evaluation: whole planned batches are dealt out (``Group.split``), each rank adds its
  scenes' per-scene values, and ``Group.merge_means`` gathers the sums and counts: the means are the
  one-process means, over the same scenes.
- files: rank 0 alone writes checkpoints, logs, metrics and TensorBoard (the hooks' ``writer``); the
  others keep the same state. A killed rank ends the job (torchrun stops the others); ``--resume``
  continues from rank 0's ``last.pt``, with any number of processes, since the position in the run
  counts global batches.
"""

from __future__ import annotations

import atexit
import gc
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .device import resolve_device


@dataclass(frozen=True)
class Group:
    """This process's place among the processes of one job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    local_world_size: int = 1  # processes of the job on this machine

    @property
    def writer(self) -> bool:
        """The process that writes the run's files (rank 0)."""
        return self.rank == 0

    def split(self, items: list) -> list:
        """This rank's part of ``items``, dealt round-robin (items rank, rank + N, ...)."""
        return items[self.rank :: self.world_size]

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the ranks (a new tensor; all ranks get the same)."""
        out = values.clone()
        dist.all_reduce(out)
        return out

    def shares(self, counts: torch.Tensor, counted: bool = True) -> torch.Tensor:
        """For per-rank means over ``counts`` elements each: the factors (this rank's count / the count
        summed over the ranks) that turn them into this rank's share of the means over all ranks.
        ``counted`` False: this rank's elements are a stand-in that counts zero."""
        local = counts.to(torch.float64) * float(counted)
        return (local / self.sum(local).clamp(min=1)).to(torch.float32)

    def merge_means(self, sums: dict[str, float], counts: dict[str, int]) -> dict[str, float]:
        """Means over all ranks from every rank's sums and counts of per-scene values (``MeanMeter``)."""
        parts: list = [None] * self.world_size
        dist.all_gather_object(parts, (dict(sums), dict(counts)))
        total_sums: dict[str, float] = {}
        total_counts: dict[str, int] = {}
        for part_sums, part_counts in parts:  # rank order: every rank adds in the same order
            for k, v in part_sums.items():
                total_sums[k] = total_sums.get(k, 0.0) + v
                total_counts[k] = total_counts.get(k, 0) + part_counts[k]
        return {k: total_sums[k] / total_counts[k] for k in total_sums if total_counts[k]}

    def merge_meter(self, meter) -> None:
        """Turn a ``metrics.MeanMeter`` of this rank's scenes into one of every rank's scenes, in place."""
        parts: list = [None] * self.world_size
        dist.all_gather_object(parts, (dict(meter.sums), dict(meter.counts), dict(meter.skipped)))
        meter.sums, meter.counts, meter.skipped = {}, {}, {}
        for sums, counts, skipped in parts:  # rank order: every rank adds in the same order
            for k, v in sums.items():
                meter.sums[k] = meter.sums.get(k, 0.0) + v
                meter.counts[k] = meter.counts.get(k, 0) + counts[k]
            for k, v in skipped.items():
                meter.skipped[k] = meter.skipped.get(k, 0) + v


def launched() -> bool:
    """Whether torchrun (or another launcher setting WORLD_SIZE) started this process."""
    return "WORLD_SIZE" in os.environ


def is_writer() -> bool:
    """Whether this process is the one that writes and prints: rank 0, or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


def process_group(device: str = "auto") -> Group | None:
    """None for a process that torchrun did not start; otherwise this process's ``Group``, with the
    default process group started on first use (nccl for CUDA devices, gloo for the CPU).

    ``device``: auto (each process takes the GPU of its LOCAL_RANK, the CPU without CUDA), cpu, cuda
    or cuda:LOCAL_RANK; ValueError naming --device otherwise.
    """
    if not launched():
        return None
    if not dist.is_available():
        raise ValueError(f"torchrun: this torch build ({torch.__version__}) has no torch.distributed")
    env = os.environ
    try:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
        local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    except (KeyError, ValueError):
        raise ValueError("torchrun: RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be integers") from None
    dev = resolve_device(device, local_rank=local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None)
        atexit.register(_destroy)
    return Group(rank, world, local, dev, local_world)


# How long a rank waits at exit for the others before it leaves anyway (a peer that failed never arrives).
EXIT_WAIT_SECONDS = 10


def _destroy() -> None:
    """Leave the process group at exit, while the interpreter is whole. What still holds it (a
    DistributedDataParallel's reducer in a reference cycle) is collected first, and with gloo the ranks wait
    for one another, so that no rank tears its connections down while a peer's gloo thread still uses them:
    that peer aborts ("terminate called without an active exception", SIGABRT), which torchrun reports as a
    failed run although every rank had finished (seen in about one two-process CPU run in ten)."""
    if not dist.is_initialized():
        return
    gc.collect()
    if dist.get_backend() == "gloo":
        try:
            dist.monitored_barrier(timeout=timedelta(seconds=EXIT_WAIT_SECONDS))
        except RuntimeError:
            pass  # a peer has gone: leave anyway
    dist.destroy_process_group()
