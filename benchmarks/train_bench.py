"""Training throughput of DefocusNet + DepthNet (``fod-depth``): ours beside a naive build of the same
network, measured side by side in one process.

One training step = forward of both networks, MSE on defocus + L1 on depth, backward, AdamW step, on
random data already on the device (so the figure is the networks', not the data loader's). Variants:

- ``ours``: the trainer's step as it runs on that device: the split stack convolution (``StackConv``:
  the pooled half of the weights applied once per stack, no concatenation built) in the memory format
  and precision that ``--channels-last auto`` and ``--amp auto`` choose there.
- ``naive``: the reference's way: every stack-pooling convolution concatenates the broadcast pooled
  features and convolves them, NCHW, float32. Same weights, same outputs (their largest difference is printed with each table).
- ``{split|concat}-{nchw|cl}[-bf16]``: either convolution in either memory format, optionally bf16
  autocast, for finding where the time goes.

Variants are timed in turns (round 1 of every variant, then round 2, ...), so that the load of a
shared machine falls on all of them alike; the figures are medians over the rounds, the ratios are to
the first variant. On the CPU the process's CPU time per step is shown too (wall time on a busy
machine also counts other processes' turns).

    python benchmarks/train_bench.py                        # CPU: naive vs ours (and CUDA when present)
    python benchmarks/train_bench.py --device cpu --variants naive,ours,split-nchw,concat-cl --rounds 7
    python benchmarks/train_bench.py --device cuda --compile

The issue's CPU workload is a batch of 2 stacks of 5 images at 256 x 256; on CUDA a batch of 16, with
float32 (TF32 convolutions allowed, PyTorch's cuDNN default) and bf16 + channels-last rows. Target:
>= 345 stacks/s for ``ours`` on an H200 (the reference code: 69 in float32, 206 with bf16 and
channels-last).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from focalstack.train.device import autocast, resolve_amp, resolve_channels_last
from focalstack.train.models import count_parameters, fod_depth
from focalstack.train.models._stack import StackConv


@dataclass(frozen=True)
class Variant:
    name: str
    concat: bool
    channels_last: bool
    bf16: bool
    compiled: bool = False


def variant(name: str, device: torch.device, compiled: bool = False) -> Variant:
    """A variant by name (see the module docstring); ValueError for an unknown one."""
    if name == "ours":
        amp = resolve_amp("auto", device)
        return Variant(name, False, resolve_channels_last("auto", device), amp is torch.bfloat16, compiled)
    if name == "naive":
        return Variant(name, True, False, False, compiled)
    parts = name.split("-")
    if len(parts) in (2, 3) and parts[0] in ("split", "concat") and parts[1] in ("nchw", "cl") and parts[2:] in ([], ["bf16"]):
        return Variant(name, parts[0] == "concat", parts[1] == "cl", parts[2:] == ["bf16"], compiled)
    raise ValueError(f"--variants: unknown variant {name!r} (ours, naive or e.g. split-cl, concat-nchw-bf16)")


def build(v: Variant, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)  # the same weights for every variant
    model = fod_depth().to(device)
    for m in model.modules():
        if isinstance(m, StackConv):
            m.concat = v.concat
    if v.channels_last:
        model.to(memory_format=torch.channels_last)  # the model's input follows its weights
    return model


class Step:
    """One variant's training step on fixed random data."""

    def __init__(self, v: Variant, device: torch.device, batch: int, stack: int, size: int):
        self.v, self.device = v, device
        self.model = build(v, device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.run_model = torch.compile(self.model) if v.compiled else self.model
        g = torch.Generator(device="cpu").manual_seed(1)
        self.images = torch.randint(0, 256, (batch, stack, 3, size, size), dtype=torch.uint8, generator=g).to(device)
        self.focus = torch.rand(batch, stack, generator=g).to(device)
        self.defocus = torch.rand(batch, stack, size, size, generator=g).to(device)
        self.depth = torch.rand(batch, size, size, generator=g).to(device)
        self.batch = batch
        self.peak_mib = 0.0

    def __call__(self) -> torch.Tensor:
        x = self.images.float().div_(255.0)
        with autocast(self.device, torch.bfloat16 if self.v.bf16 else None):
            out = self.run_model(x, self.focus)
        loss = F.mse_loss(out["defocus"].float(), self.defocus) + F.l1_loss(out["depth"].float(), self.depth)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss


def same_outputs(device: torch.device) -> float:
    """The largest difference between the split and the concatenating build's outputs (float32)."""
    x, f = torch.rand(1, 5, 3, 64, 64, device=device), torch.rand(1, 5, device=device)
    outs = []
    for concat in (False, True):
        with torch.no_grad():
            outs.append(build(Variant("check", concat, False, False), device)(x, f))
    return max(float((outs[0][k] - outs[1][k]).abs().max()) for k in outs[0])


def measure(steps: list[Step], rounds: int, per_round: int, warmup: int) -> list[dict]:
    cuda = steps[0].device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for step in steps:
        for _ in range(warmup):
            step()
    sync()
    wall = {id(s): [] for s in steps}
    cpu = {id(s): [] for s in steps}
    for _ in range(rounds):
        for step in steps:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            t, c = time.perf_counter(), time.process_time()
            for _ in range(per_round):
                loss = step()
            sync()
            wall[id(step)].append((time.perf_counter() - t) / per_round)
            cpu[id(step)].append((time.process_time() - c) / per_round)
            if not torch.isfinite(loss):
                raise RuntimeError(f"{step.v.name}: the loss is not finite")
            if cuda:
                step.peak_mib = max(step.peak_mib, torch.cuda.max_memory_allocated() / 2**20)
    return [
        {"step_s": statistics.median(wall[id(s)]), "cpu_s": statistics.median(cpu[id(s)]), "all_s": wall[id(s)]} for s in steps
    ]


def report(title: str, steps: list[Step], results: list[dict]) -> None:
    print(title)
    print(
        f"  {'variant':22s} {'conv':6s} {'format':6s} {'amp':4s} {'stacks/s':>9s} {'s/step':>8s} {'x first':>8s}"
        f" {'cpu s/step':>10s} {'x first':>8s} {'peak MiB':>9s}   wall s/step per round"
    )
    first = results[0]
    for step, r in zip(steps, results):
        v = step.v
        peak = f"{step.peak_mib:9.0f}" if step.device.type == "cuda" else f"{'-':>9s}"
        print(
            f"  {v.name + (' +compile' if v.compiled else ''):22s} {'concat' if v.concat else 'split':6s} "
            f"{'cl' if v.channels_last else 'nchw':6s} {'bf16' if v.bf16 else 'fp32':4s} "
            f"{step.batch / r['step_s']:9.3f} {r['step_s']:8.3f} {first['step_s'] / r['step_s']:8.2f} "
            f"{r['cpu_s']:10.3f} {first['cpu_s'] / r['cpu_s']:8.2f} {peak}   " + " ".join(f"{t:.2f}" for t in r["all_s"])
        )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: the CPU, and CUDA too when available")
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated (ratios are to the first) [CPU: naive,ours; CUDA: naive,concat-cl-bf16,split-nchw,ours]",
    )
    p.add_argument(
        "--batch-size", type=batch_sizes, default=[16], help="stacks per batch on CUDA; several (16,32,64) are timed in turn [16]"
    )
    p.add_argument("--cpu-batch-size", type=batch_sizes, default=[2], help="stacks per batch on the CPU; several as above [2]")
    p.add_argument("--stack", type=int, default=5, help="images per stack [5]")
    p.add_argument("--size", type=int, default=256, help="image height and width [256]")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per variant [CUDA 5, CPU 5]")
    p.add_argument("--steps", type=int, default=None, help="steps per round [CUDA 20, CPU 1]")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first [CUDA 10 (30 compiled), CPU 1]")
    p.add_argument("--threads", type=int, default=None, help="CPU threads [torch's default]")
    p.add_argument("--compile", action="store_true", help="CUDA: also ours under torch.compile")
    p.add_argument("--json", default=None, metavar="FILE", help="also write every variant's figures to FILE")
    a = p.parse_args(argv)
    for name in ("rounds", "steps", "warmup"):
        value, least = getattr(a, name), 0 if name == "warmup" else 1
        if value is not None and value < least:
            p.error(f"--{name} {value}: expected an integer >= {least}")
    rows = []
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available", file=sys.stderr)
        return 1
    devices = []
    if a.device in ("auto", "cpu"):
        devices.append(torch.device("cpu"))
    if a.device in ("auto", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    print(
        f"torch {torch.__version__}; DefocusNet + DepthNet ({count_parameters(fod_depth()) / 1e6:.2f} M parameters) "
        f"training step; stacks of {a.stack} at {a.size}x{a.size}"
    )
    for dev in devices:
        cuda = dev.type == "cuda"
        names = (a.variants or ("naive,concat-cl-bf16,split-nchw,ours" if cuda else "naive,ours")).split(",")
        try:
            chosen = [variant(n.strip(), dev) for n in names]
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        if cuda and a.compile:
            chosen.append(variant("ours", dev, compiled=True))
        for batch in a.batch_size if cuda else a.cpu_batch_size:
            rows += measure_batch(a, dev, chosen, batch)
    print(
        f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; 'x first': "
        "the first variant's time over this one's (above 1: faster)"
    )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"torch": torch.__version__, "rows": rows}, fh, indent=2)
    return 0


def batch_sizes(text: str) -> list[int]:
    """``16`` or ``16,32,64``: positive batch sizes (argparse type)."""
    try:
        sizes = [int(t) for t in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a batch size or a comma-separated list of them (e.g. 16,32)")
    return sizes


def measure_batch(a: argparse.Namespace, dev: torch.device, chosen: list[Variant], batch: int) -> list[dict]:
    """Every chosen variant at one batch size, side by side: the printed table and its rows."""
    cuda = dev.type == "cuda"
    steps = [Step(v, dev, batch, a.stack, a.size) for v in chosen]
    warmup = a.warmup if a.warmup is not None else ((30 if a.compile else 10) if cuda else 1)  # 0: none
    results = measure(steps, a.rounds or 5, a.steps or (20 if cuda else 1), warmup)
    where = torch.cuda.get_device_name(dev) if cuda else f"cpu, {torch.get_num_threads()} threads"
    report(f"{where}, batch {batch}; outputs of split vs concat differ by at most {same_outputs(dev):.1e}", steps, results)
    rows = [
        {
            "device": where,
            "variant": s.v.name,
            "compiled": s.v.compiled,
            "concat": s.v.concat,
            "channels_last": s.v.channels_last,
            "bf16": s.v.bf16,
            "batch": batch,
            "stack": a.stack,
            "size": a.size,
            "stacks_per_s": batch / r["step_s"],
            "step_s": r["step_s"],
            "cpu_s": r["cpu_s"],
            "peak_mib": s.peak_mib if cuda else None,
            "rounds_s": r["all_s"],
        }
        for s, r in zip(steps, results)
    ]
    del steps
    if cuda:
        torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    sys.exit(main())
