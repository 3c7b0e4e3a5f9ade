"""Training throughput of DefocusNet + DepthNet (``fod-depth``): stacks per second and peak memory.

One training step = forward of both networks, MSE on defocus + L1 on depth, backward, AdamW step, on
random data already on the device (so the figure is the networks', not the data loader's). The issue's
workload is a batch of 16 stacks of 5 images at 256 x 256; on the CPU a smaller batch and fewer steps
keep the run short (throughput per stack barely depends on the batch there).

    python benchmarks/train_bench.py                      # CPU (batch 2), and CUDA when present
    python benchmarks/train_bench.py --device cuda --compile
    python benchmarks/train_bench.py --device cpu --cpu-batch-size 16 --steps 3

On CUDA it measures float32 (TF32 convolutions allowed, as PyTorch does by default for cuDNN) and bf16
autocast + channels-last, each optionally under torch.compile. Target (issue 3): >= 345 stacks/s with
bf16 + channels-last on an H200 (the reference implementation: 69 in float32, 206 in bf16).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch
import torch.nn.functional as F

from focalstack.train.device import autocast
from focalstack.train.models import count_parameters, fod_depth


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def bench(device: torch.device, batch: int, stack: int, size: int, steps: int, warmup: int, bf16: bool,
          channels_last: bool, compile_: bool) -> dict:
    torch.manual_seed(0)
    model = fod_depth().to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # the model's input follows its weights
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    step_model = torch.compile(model) if compile_ else model
    images = torch.randint(0, 256, (batch, stack, 3, size, size), dtype=torch.uint8, device=device)
    focus = torch.rand(batch, stack, device=device)
    defocus_t = torch.rand(batch, stack, size, size, device=device)
    depth_t = torch.rand(batch, size, size, device=device)

    def step():
        x = images.float().div_(255.0)
        with autocast(device, torch.bfloat16 if bf16 else None):
            out = step_model(x, focus)
        loss = F.mse_loss(out["defocus"].float(), defocus_t) + F.l1_loss(out["depth"].float(), depth_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync()
    elapsed = time.perf_counter() - t0
    if not torch.isfinite(loss):
        raise RuntimeError("loss is not finite")
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mib()
    return {"stacks_per_s": batch * steps / elapsed, "step_s": elapsed / steps, "peak_mib": peak,
            "params": count_parameters(model)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: the CPU, and CUDA too when available")
    p.add_argument("--batch-size", type=int, default=16, help="stacks per batch on CUDA [16]")
    p.add_argument("--cpu-batch-size", type=int, default=2, help="stacks per batch on the CPU [2]")
    p.add_argument("--stack", type=int, default=5, help="images per stack [5]")
    p.add_argument("--size", type=int, default=256, help="image height and width [256]")
    p.add_argument("--steps", type=int, default=None, help="timed steps [CUDA 50, CPU 2]")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first [CUDA 10 (30 compiled), CPU 1]")
    p.add_argument("--threads", type=int, default=None, help="CPU threads [torch's default]")
    p.add_argument("--compile", action="store_true", help="also measure under torch.compile (CUDA)")
    p.add_argument("--fp32-only", action="store_true", help="CUDA: float32 only")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}; DefocusNet + DepthNet training step; stacks of {a.stack} at {a.size}x{a.size}")
    rows = []
    if a.device in ("auto", "cpu"):
        cfg = dict(batch=a.cpu_batch_size, stack=a.stack, size=a.size, steps=a.steps or 2, warmup=a.warmup or 1)
        r = bench(torch.device("cpu"), **cfg, bf16=False, channels_last=False, compile_=False)
        rows.append((f"cpu ({torch.get_num_threads()} threads)", "fp32", cfg["batch"], r))
    if a.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available", file=sys.stderr)
        return 1
    if a.device in ("auto", "cuda") and torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        dev = torch.device("cuda")
        name = torch.cuda.get_device_name(dev)
        modes = [("fp32", False, False)] + ([] if a.fp32_only else [("bf16+channels-last", True, True)])
        for compiled in ([False, True] if a.compile else [False]):
            for label, bf16, cl in modes:
                steps = a.steps or 50
                warmup = a.warmup or (30 if compiled else 10)
                r = bench(dev, a.batch_size, a.stack, a.size, steps, warmup, bf16, cl, compiled)
                rows.append((name, label + (" +compile" if compiled else ""), a.batch_size, r))
                torch.cuda.empty_cache()
    print(f"{'device':32s} {'mode':28s} {'batch':>5s} {'stacks/s':>10s} {'s/step':>8s} {'peak MiB':>9s}")
    for dev_name, mode, batch, r in rows:
        print(f"{dev_name:32s} {mode:28s} {batch:5d} {r['stacks_per_s']:10.2f} {r['step_s']:8.3f} {r['peak_mib']:9.0f}")
    print(f"parameters: {rows[0][3]['params'] / 1e6:.2f} M; peak memory is CUDA allocated memory, or the "
          "process's peak RSS on the CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
