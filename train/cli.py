"""focalstack-train: train, evaluate and apply DefocusNet, DepthNet and AiFNet.

Errors in the input (missing or foreign files, stack or image sizes that do not fit together, a
checkpoint of another architecture) end the command with one line naming the file or value.
"""

from __future__ import annotations

import functools
import glob
import sys

import click

ARCH_NAMES = ("fod", "fod-depth", "fod-aif-direct", "fod-single")


def _one_line_errors(fn):
    """Turn the errors that user input can cause into click's one-line 'Error: ...' messages."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from focalstack.dataset import DatasetError

        from .checkpoint import CheckpointError

        try:
            return fn(*args, **kwargs)
        except (ValueError, DatasetError, CheckpointError, FloatingPointError, OSError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise click.ClickException(msg) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted") from None

    return wrapper


def _expand(paths: tuple[str, ...]) -> list[str]:
    """Expand glob patterns the shell left alone (e.g. quoted 'test_*.h5'); keep other paths as given."""
    from .data import parse_data_spec

    out = []
    for p in paths:
        try:
            path, weight = parse_data_spec(p)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        suffix = p[len(path):]  # ":WEIGHT" or ""
        matches = sorted(glob.glob(path)) if any(c in path for c in "*?[") else []
        out.extend([m + suffix for m in matches] if matches else [p])
    return out


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _crop(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        parts = [int(x) for x in value.lower().split("x")]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected a size like 128 or 128x96 (height x width)") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise click.BadParameter(f"{value!r}: expected a size like 128 or 128x96 (height x width)")
    return parts


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main():
    """Train, evaluate and apply the networks of "Focus on defocus" (Maximov et al., CVPR 2020) on
    focal-stack HDF5 files written by focalstack-render (schema v1).

    \b
    Quick start (CPU, a few minutes on a small dataset):
      focalstack-train fit --data data/train.h5 --out runs/quick --epochs 2
      focalstack-train evaluate --checkpoint runs/quick/best.pt --data data/test.h5
      focalstack-train predict --checkpoint runs/quick/best.pt --focus-distances 0.1,0.15,0.3,0.7,1.5 photos/ -o out/
    """


@main.command()
@click.option("--data", "data", multiple=True, metavar="FILE[:WEIGHT]",
              help="Training file (repeat for several). WEIGHT (default 1) is a relative per-scene sampling "
                   "weight: --data train.h5 --data walls.h5:0.3 draws each walls scene 0.3 times as often. "
                   "Taken from the checkpoint with --resume when not given.")
@click.option("--val-data", multiple=True, metavar="FILE",
              help="Validation file(s). Without them --val-fraction of each training file is held out.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Fraction of each training file's scenes held out for validation (seeded by --seed).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Run folder: checkpoints (last.pt, best.pt), metrics.csv, train.log, tb/ (TensorBoard).")
@click.option("--arch", type=click.Choice(ARCH_NAMES), default=None,
              help="fod: DefocusNet + DepthNet + AiFNet (default). fod-depth: without AiFNet. "
                   "fod-aif-direct: ablation, AiF from the stack alone. fod-single: ablation, one image.")
@click.option("--width", type=int, default=None, help="Filters at the first level of DefocusNet and DepthNet [16].")
@click.option("--aif-width", type=int, default=None, help="Filters of AiFNet [32].")
@click.option("--aif-blocks", type=int, default=None, help="Residual blocks of AiFNet [4].")
@click.option("--epochs", type=int, default=50, show_default=True, help="Epochs in total (also when resuming).")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Stacks per batch.")
@click.option("--stack-size", type=int, default=None,
              help="Slices per stack fed to the network [all slices of the files; required if files differ].")
@click.option("--random-stack", is_flag=True,
              help="Random stack subsets: per batch a random length 1..stack-size, in random order (the paper's 'Random').")
@click.option("--align-slices", is_flag=True,
              help="Warp each slice into the reference view by its stored homography (data rendered with "
                   "focus breathing or camera shake); evaluate then does the same.")
@click.option("--crop", default=None, metavar="SIZE", help="Random crops of SIZE or HxW pixels [no crop].")
@click.option("--no-flip", is_flag=True, help="No random horizontal/vertical flips.")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="AdamW learning rate.")
@click.option("--weight-decay", type=float, default=1e-4, show_default=True, help="AdamW weight decay.")
@click.option("--grad-clip", type=float, default=1.0, show_default=True, help="Clip the gradient norm to this (0: off).")
@click.option("--loss-weight", multiple=True, metavar="NAME=W",
              help="Loss term weight; NAME is defocus, depth, aif, perceptual or edges "
                   "[defocus=1 depth=1 aif=1 perceptual=0.1 edges=0.1].")
@click.option("--vgg-weights", type=click.Path(), default=None,
              help="torchvision VGG16 state dict (.pth) for the perceptual loss; never downloaded. Without it "
                   "the perceptual term is off.")
@click.option("--depth-scale", type=float, default=3.0, show_default=True, help="Depth normalisation, metres.")
@click.option("--defocus-scale", type=float, default=5.0, show_default=True, help="Defocus normalisation, pixels.")
@click.option("--focus-scale", type=float, default=1.5, show_default=True, help="Focus distance normalisation, metres.")
@click.option("--max-depth", type=float, default=3.0, show_default=True,
              help="Depth beyond this (metres; e.g. background) is clipped and left out of depth loss and metrics.")
@click.option("--signed-defocus", is_flag=True, help="Train on signed defocus (default: absolute, as the paper).")
@click.option("--samples-per-epoch", type=int, default=None, help="Stacks per epoch [number of training scenes].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights, split and sampling.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(["auto", "bf16", "off"]), default="auto", show_default=True,
              help="Mixed precision: auto = bf16 autocast on CUDA, float32 on CPU.")
@click.option("--channels-last", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="channels-last memory format (auto: on CUDA).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model (CUDA; first steps are slow).")
@click.option("--workers", type=int, default=2, show_default=True, help="DataLoader worker processes (0: main).")
@click.option("--threads", type=int, default=None, help="CPU threads for torch [torch's default].")
@click.option("--checkpoint-every", type=int, default=0, show_default=True,
              help="Also write last.pt every N optimiser steps (0: at the end of every epoch only).")
@click.option("--max-steps", type=int, default=None, help="Stop after N optimiser steps in total (checkpointed).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt, with its settings.")
@click.option("--no-tensorboard", is_flag=True, help="Do not write TensorBoard logs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or log lines (train.log is still written).")
@_one_line_errors
def fit(data, val_data, val_fraction, out, arch, width, aif_width, aif_blocks, epochs, batch_size, stack_size,
        random_stack, align_slices, crop, no_flip, lr, weight_decay, grad_clip, loss_weight, vgg_weights,
        depth_scale, defocus_scale, focus_scale, max_depth, signed_defocus, samples_per_epoch, seed, device, amp,
        channels_last, compile_, workers, threads, checkpoint_every, max_steps, resume, no_tensorboard, quiet):
    """Train a network on focal-stack HDF5 files.

    \b
    Example:
      focalstack-train fit --data train.h5 --data walls.h5:0.3 --out runs/x --epochs 100
    """
    from .data import Norm
    from .losses import LossWeights
    from .models import architecture_kwargs
    from .trainer import TrainConfig, fit as run_fit

    _threads(threads)
    if not data and not resume:
        raise click.UsageError("give at least one --data FILE")
    name = arch or "fod"
    kwargs = {k: v for k, v in (("width", width), ("aif_width", aif_width), ("aif_blocks", aif_blocks)) if v is not None}
    bad = [k for k in kwargs if k not in architecture_kwargs(name)]
    if bad:
        raise click.BadParameter(f"--arch {name} has no {'/'.join('--' + b.replace('_', '-') for b in bad)}",
                                 param_hint="--arch")
    cfg = TrainConfig(
        data=_expand(data), out=out, val_data=_expand(val_data), val_fraction=val_fraction,
        arch=arch if resume else name, arch_kwargs=kwargs, epochs=epochs, batch_size=batch_size,
        stack_size=stack_size, random_stack=random_stack, align_slices=align_slices, crop=_crop(crop),
        flips=not no_flip, lr=lr, weight_decay=weight_decay, grad_clip=grad_clip, loss_weights=LossWeights.parse(loss_weight).to_dict(),
        vgg_weights=vgg_weights,
        norm=Norm(focus_scale, depth_scale, defocus_scale, max_depth, signed_defocus).to_dict(),
        seed=seed, samples_per_epoch=samples_per_epoch, workers=workers, device=device, amp=amp,
        channels_last=channels_last, compile=compile_, checkpoint_every=checkpoint_every, max_steps=max_steps,
        tensorboard=not no_tensorboard, progress=not quiet,
    )
    result = run_fit(cfg, resume=resume)
    if not quiet:
        click.echo(f"checkpoints: {result.best} (best), {result.last} (last); metrics: {result.out / 'metrics.csv'}")


@main.command()
@click.option("--checkpoint", "-c", required=True, type=click.Path(), help="A checkpoint, e.g. runs/x/best.pt.")
@click.option("--data", "data", multiple=True, required=True, metavar="FILE",
              help="Held-out file(s) (repeat, or a glob such as 'test_*.h5'); one table row per file and setting.")
@click.option("--out", "-o", type=click.Path(file_okay=False), default=None,
              help="Folder for metrics.md, metrics.csv, metrics.json [<checkpoint folder>/eval].")
@click.option("--setting", "settings", multiple=True, type=click.Choice(["All", "Random"]),
              help="All: every slice in focus order; Random: random subsets in random order [both].")
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--max-scenes", type=int, default=None, help="Evaluate only the first N scenes of each file.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the Random setting's subsets.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(["auto", "bf16", "off"]), default="auto", show_default=True)
@click.option("--workers", type=int, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch [torch's default].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@_one_line_errors
def evaluate(checkpoint, data, out, settings, batch_size, max_scenes, seed, device, amp, workers, threads, quiet):
    """Evaluate a checkpoint: depth MSE, RMSE, AbsRel, SqRel, delta < 1.25^k, bumpiness; defocus MSE;
    AiF SSIM and PSNR; for the full ordered stack (All) and random subsets (Random). Prints a Markdown
    table and writes it with CSV and JSON."""
    from .evaluate import evaluate as run_eval, markdown_table

    _threads(threads)
    rows, paths = run_eval(
        checkpoint, _expand(data), out, settings=tuple(settings) or ("All", "Random"), batch_size=batch_size,
        device=device, amp=amp, seed=seed, workers=workers, max_scenes=max_scenes, progress=not quiet,
    )
    click.echo(markdown_table(rows), nl=False)
    if not quiet:
        click.echo(f"written: {paths['markdown']}, {paths['csv']}, {paths['json']}")


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--checkpoint", "-c", required=True, type=click.Path(), help="A checkpoint, e.g. runs/x/best.pt.")
@click.option("--focus-distances", "-f", default=None, metavar="M,M,...",
              help="Focus distance of each image in metres, in the order the images are given "
                   "[the checkpoint's training focus distances, if as many as images].")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--refocus", multiple=True, type=float, metavar="DIST",
              help="Also write the AiF image synthetically refocused at DIST metres (repeatable).")
@click.option("--f-number", type=float, default=None, help="Camera for --refocus [the checkpoint's training camera].")
@click.option("--focal-length-mm", type=float, default=None, help="Camera for --refocus [checkpoint's].")
@click.option("--sensor-width-mm", type=float, default=None, help="Camera for --refocus [checkpoint's].")
@click.option("--tile", type=int, default=0, show_default=True,
              help="Process in overlapping tiles of this many pixels (for large photos; 0: whole image, padded).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(["auto", "bf16", "off"]), default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads for torch [torch's default].")
@_one_line_errors
def predict(images, checkpoint, focus_distances, out, refocus, f_number, focal_length_mm, sensor_width_mm, tile,
            device, amp, threads):
    """Predict depth, defocus maps and the all-in-focus image of one focal stack given as IMAGES
    (files and/or folders of images, any size, any order, one focus distance each).

    \b
    Writes depth.npy (m), depth.png (16-bit mm), depth_color.png, defocus.npy (px) and one colour map
    per image, aif.png, edges.png, refocus_<DIST>m.png, prediction.json.
    """
    from .predict import parse_distances, predict as run_predict

    _threads(threads)
    written = run_predict(
        checkpoint, list(images), out,
        focus_distances=parse_distances(focus_distances) if focus_distances else None,
        refocus_distances=list(refocus), device=device, amp=amp, tile=tile,
        camera={"f_number": f_number, "focal_length_mm": focal_length_mm, "sensor_width_mm": sensor_width_mm},
    )
    click.echo(f"wrote {len(written)} files to {out}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
