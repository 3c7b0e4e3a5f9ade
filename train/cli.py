"""focalstack-train: train, evaluate and apply DefocusNet, DepthNet and AiFNet.

Errors in the input (missing or foreign files, stack or image sizes that do not fit together, a
checkpoint of another architecture) end the command with one line naming the file or value.

Defaults are never typed here: they come from ``TrainConfig``, ``Norm``, ``LossWeights``, the model
builders and the signatures of ``evaluate`` and ``predict``, and architecture names from ``ARCHITECTURES``.
"""

from __future__ import annotations

import inspect
import sys

import click

from focalstack.dataset.cliutil import Group

from .augment import CaptureAugment
from .checkpoint import load_checkpoint
from .cli_apply import evaluate, predict
from .cli_experiment import experiment
from .cliopts import defaults, errors, expand_paths, set_threads
from .config import TrainConfig
from .data import Norm
from .device import AMP_CHOICES, CHANNELS_LAST_CHOICES
from .distributed import is_writer
from .hooks import LR_SCHEDULES
from .losses import DEPTH_LOSSES, LossWeights
from .models import ARCHITECTURES, architecture_kwargs
from .trainer import fit as run_fit

TRAIN, NORM, LOSS = defaults(TrainConfig), defaults(Norm), defaults(LossWeights)
ARCH = defaults(ARCHITECTURES[TRAIN["arch"]])  # the default architecture's builder
ARCH_OPTIONS = ("width", "aif_width", "aif_blocks")  # builder keywords offered as options


def _arch_help() -> str:
    # a builder's first paragraph, joined: its first line alone can stop mid-sentence
    docs = [f"{name}: {' '.join(inspect.getdoc(build).split(chr(10) * 2)[0].split())}" for name, build in ARCHITECTURES.items()]
    return " ".join(docs) + f" [{TRAIN['arch']}]"


def _crop(ctx, param, value: str | None) -> list[int] | None:
    """click callback: '128' or '128x96' (height x width) -> [h, w]."""
    if value is None:
        return None
    try:
        parts = [int(x) for x in value.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise click.BadParameter(f"{value!r}: expected a size like 128 or 128x96 (height x width)")
    return parts


def _capture_augment(ctx, param, value: str | None) -> list | None:
    """click callback: 'FULL_WELL,READ_NOISE,JPEG[,SHARE]' -> CaptureAugment.to_list()."""
    if value is None:
        return None
    try:
        return CaptureAugment.parse(value).to_list()
    except ValueError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1]) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main():
    """Train, evaluate and apply the networks of "Focus on defocus" (Maximov et al., CVPR 2020) on
    focal-stack HDF5 files (focalstack-render output, or FoD500 and DDFF-12 imported by focalstack-data).

    \b
    Quick start (CPU, a few minutes on a small dataset):
      focalstack-train fit --data data/train.h5 --out runs/quick --epochs 2
      focalstack-train evaluate --checkpoint runs/quick/best.pt --data data/test.h5
      focalstack-train predict --checkpoint runs/quick/best.pt --focus-distances 0.1,0.15,0.3,0.7,1.5 photos/ -o out/
    """


@main.command()
@click.option(
    "--data",
    "data",
    multiple=True,
    metavar="FILE[:WEIGHT]",
    help="Training file (repeat for several). WEIGHT (default 1) is a relative per-scene sampling "
    "weight: --data train.h5 --data walls.h5:0.3 draws each walls scene 0.3 times as often. "
    "Taken from the checkpoint with --resume when not given.",
)
@click.option(
    "--val-data",
    multiple=True,
    metavar="FILE",
    help="Validation file(s). Without them --val-fraction of each training file is held out.",
)
@click.option(
    "--val-fraction",
    type=float,
    default=TRAIN["val_fraction"],
    show_default=True,
    help="Fraction of each training file's scenes held out for validation (seeded by --seed).",
)
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder: checkpoints (last.pt, best.pt), metrics.csv, train.log, tb/ (TensorBoard).",
)
@click.option("--arch", type=click.Choice(tuple(ARCHITECTURES)), default=None, help=_arch_help())
@click.option("--width", type=int, default=None, help=f"Filters at the first level of DefocusNet and DepthNet [{ARCH['width']}].")
@click.option("--aif-width", type=int, default=None, help=f"Filters of AiFNet [{ARCH['aif_width']}].")
@click.option("--aif-blocks", type=int, default=None, help=f"Residual blocks of AiFNet [{ARCH['aif_blocks']}].")
@click.option(
    "--epochs", type=int, default=None, help=f"Epochs in total [{TRAIN['epochs']}]. With --resume: the run's own unless given."
)
@click.option(
    "--batch-size",
    type=int,
    default=TRAIN["batch_size"],
    show_default=True,
    help="Stacks per batch: the global batch, shared by the processes under torchrun.",
)
@click.option(
    "--stack-size",
    type=int,
    default=TRAIN["stack_size"],
    help="Slices per stack fed to the network [all slices of the files; required if files differ].",
)
@click.option(
    "--random-stack",
    is_flag=True,
    help="Random stack subsets: per batch a random length 1..stack-size, in random order (the paper's 'Random').",
)
@click.option(
    "--align-slices",
    is_flag=True,
    help="Warp each slice into the reference view by its stored homography (data rendered with "
    "focus breathing or camera shake); evaluate then does the same.",
)
@click.option("--crop", default=None, metavar="SIZE", callback=_crop, help="Random crops of SIZE or HxW pixels [no crop].")
@click.option("--no-flip", is_flag=True, help="No random horizontal/vertical flips.")
@click.option(
    "--transposes",
    is_flag=True,
    help="Random transposes as well as flips: all eight orientations of each sample (square images or a square --crop).",
)
@click.option(
    "--capture-augment",
    default=None,
    metavar="FULL_WELL,READ_NOISE,JPEG[,SHARE]",
    callback=_capture_augment,
    help="Sensor noise and JPEG on a SHARE of the training samples (default 0.5), as focalstack-render "
    "--sensor-noise FULL_WELL,READ_NOISE --jpeg-quality JPEG renders them, at a strength drawn per sample up "
    "to that (full well up to ten times larger, read noise from 0, JPEG quality up to 100; 0: no JPEG), "
    "e.g. 1000,0.002,90: for stacks from real cameras [off].",
)
@click.option(
    "--init",
    default=None,
    metavar="CHECKPOINT",
    help="Start from these weights (a checkpoint file or the short name of shipped weights): fine-tuning. "
    "The optimiser and step count start afresh; --arch and its sizes default to the checkpoint's, and the "
    "normalisation options must match it.",
)
@click.option(
    "--ema",
    type=float,
    default=TRAIN["ema"],
    show_default=True,
    metavar="DECAY",
    help="Keep an exponential moving average of the weights (decay per step, e.g. 0.999: about the last "
    "1000 steps, or the last tenth of the steps while that is fewer) and validate, save and export that "
    "average instead of the latest weights, which move more from step to step. 0: off.",
)
@click.option("--lr", type=float, default=TRAIN["lr"], show_default=True, help="AdamW learning rate.")
@click.option(
    "--lr-schedule",
    type=click.Choice(LR_SCHEDULES),
    default=TRAIN["lr_schedule"],
    show_default=True,
    help="constant: --lr throughout; cosine: from --lr down to 0 by the run's end (its --epochs, --max-steps "
    "or --max-time, whichever ends it; with --max-time the rate follows the clock). A resumed run follows the "
    "limits it is resumed with: give --max-time again.",
)
@click.option("--weight-decay", type=float, default=TRAIN["weight_decay"], show_default=True, help="AdamW weight decay.")
@click.option(
    "--grad-clip", type=float, default=TRAIN["grad_clip"], show_default=True, help="Clip the gradient norm to this (0: off)."
)
@click.option(
    "--loss-weight",
    multiple=True,
    metavar="NAME=W",
    help=f"Loss term weight; NAME is {', '.join(LOSS)} [{' '.join(f'{k}={v:g}' for k, v in LOSS.items())}].",
)
@click.option(
    "--depth-loss",
    type=click.Choice(DEPTH_LOSSES),
    default=TRAIN["depth_loss"],
    show_default=True,
    help="l1: L1 on depth, as the paper; relative: L1 on the depth error over the true depth, so near pixels "
    "weigh more (a 1 cm error at 0.2 m as much as 10 cm at 2 m). The loss's scale changes with it: the "
    "depth term's --loss-weight balances it against the others.",
)
@click.option(
    "--relative-floor",
    type=float,
    default=TRAIN["relative_floor"],
    show_default=True,
    metavar="METRES",
    help="With --depth-loss relative: divide by at least this depth, so pixels nearer than it weigh alike "
    "and far pixels keep more weight (0: the true depth everywhere).",
)
@click.option(
    "--vgg-weights",
    type=click.Path(),
    default=None,
    help="torchvision VGG16 state dict (.pth) for the perceptual loss; never downloaded. Without it the perceptual term is off.",
)
@click.option("--depth-scale", type=float, default=NORM["depth_scale"], show_default=True, help="Depth normalisation, metres.")
@click.option(
    "--defocus-scale", type=float, default=NORM["defocus_scale"], show_default=True, help="Defocus normalisation, pixels."
)
@click.option(
    "--focus-scale", type=float, default=NORM["focus_scale"], show_default=True, help="Focus distance normalisation, metres."
)
@click.option(
    "--max-depth",
    type=float,
    default=NORM["max_depth"],
    show_default=True,
    help="Depth beyond this (metres; e.g. background) is clipped and left out of depth loss and metrics.",
)
@click.option("--signed-defocus", is_flag=True, help="Train on signed defocus (default: absolute, as the paper).")
@click.option(
    "--samples-per-epoch",
    type=int,
    default=TRAIN["samples_per_epoch"],
    help="Stacks per epoch [number of training scenes]: at most that many with equal file weights, each "
    "scene at most once; more, or unequal weights, drawn with replacement by weight (an epoch may miss scenes).",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=TRAIN["seed"], show_default=True, help="Seed of weights, split and sampling."
)
@click.option(
    "--device",
    default=TRAIN["device"],
    show_default=True,
    help="auto, cpu, cuda or cuda:N. Under torchrun auto and cuda mean each process's GPU (LOCAL_RANK).",
)
@click.option(
    "--amp",
    type=click.Choice(AMP_CHOICES),
    default=TRAIN["amp"],
    show_default=True,
    help="Mixed precision: auto = bf16 autocast on CUDA, float32 on CPU.",
)
@click.option(
    "--channels-last",
    type=click.Choice(CHANNELS_LAST_CHOICES),
    default=TRAIN["channels_last"],
    show_default=True,
    help="channels-last memory format (auto: on CUDA and on CPUs with oneDNN, where it is faster).",
)
@click.option("--compile", "compile", is_flag=True, help="torch.compile the model (CUDA; first steps are slow).")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=TRAIN["workers"],
    show_default=True,
    help="DataLoader worker processes (0: main).",
)
@click.option(
    "--cache-data",
    is_flag=True,
    help="Decode every scene of the files once, before training, and read samples from memory "
    "(shared by the --workers processes, per training process): no HDF5 decoding per sample. "
    "Needs the decoded size in memory (2.8 MB per 256x256 scene of 5 slices); refused if it does "
    "not fit.",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch [torch's default].")
@click.option(
    "--checkpoint-every",
    type=int,
    default=TRAIN["checkpoint_every"],
    show_default=True,
    help="Also write last.pt every N optimiser steps (0: at the end of every epoch only).",
)
@click.option("--max-steps", type=int, default=TRAIN["max_steps"], help="Stop after N optimiser steps in total (checkpointed).")
@click.option(
    "--max-time",
    type=float,
    default=TRAIN["max_time"],
    metavar="SECONDS",
    help="Stop after this many seconds of training in total, counting the time of the sessions a "
    "resumed run had before (checkpointed; a fixed time budget).",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt, with its settings.")
@click.option("--no-tensorboard", is_flag=True, help="Do not write TensorBoard logs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or log lines (train.log is still written).")
@errors
def fit(data, val_data, arch, no_flip, loss_weight, no_tensorboard, quiet, resume, threads, **options):
    """Train a network on focal-stack HDF5 files.

    Several GPUs (or CPU processes, or nodes): start it with torchrun. Each process trains on its share
    of every batch of --batch-size stacks (the global batch) under DistributedDataParallel; rank 0
    writes the checkpoints and logs; --resume continues with any number of processes.

    \b
    Examples:
      focalstack-train fit --data train.h5 --data walls.h5:0.3 --out runs/x --epochs 100
      torchrun --nproc-per-node 8 -m focalstack.train fit --data train.h5 --out runs/x --batch-size 64
    """
    set_threads(threads)
    if not data and not resume:
        raise click.UsageError("give at least one --data FILE")
    given = {k: options.pop(k) for k in ARCH_OPTIONS}
    arch_kwargs = {k: v for k, v in given.items() if v is not None}
    if options["init"] is not None and not resume:  # the network of the weights, unless told otherwise
        init = load_checkpoint(options["init"])
        arch = arch or init["arch"]
        if arch == init["arch"]:
            arch_kwargs = {**init["arch_kwargs"], **arch_kwargs}
    name = arch or TRAIN["arch"]
    bad = [k for k in arch_kwargs if k not in architecture_kwargs(name)]
    if bad:
        raise click.BadParameter(f"--arch {name} has no {'/'.join('--' + b.replace('_', '-') for b in bad)}", param_hint="--arch")
    norm = Norm(**{k: options.pop(k) for k in NORM})
    if options["epochs"] is None and not resume:  # None tells a resumed run to keep its own
        options["epochs"] = TRAIN["epochs"]
    cfg = TrainConfig(
        data=expand_paths(data),
        val_data=expand_paths(val_data),
        arch=arch if resume else name,
        arch_kwargs=arch_kwargs,
        flips=not no_flip,
        loss_weights=LossWeights.parse(loss_weight).to_dict(),
        norm=norm.to_dict(),
        tensorboard=not no_tensorboard,
        progress=not quiet,
        **options,  # the rest are TrainConfig's own names
    )
    result = run_fit(cfg, resume=resume, given=_given_settings(click.get_current_context(), loss_weight))
    if not quiet and is_writer():
        click.echo(f"checkpoints: {result.best} (best), {result.last} (last); metrics: {result.out / 'metrics.csv'}")


def _given_settings(ctx: click.Context, loss_weight) -> tuple[str, ...]:
    """The training settings (``SETTING_PATHS``' names) set on the command line or in the environment: on
    --resume each must agree with the run's (defaults are not the user's word, and are not compared)."""
    from click.core import ParameterSource

    given: list[str] = []
    for param in ctx.command.params:
        if param.name is None or ctx.get_parameter_source(param.name) not in (
            ParameterSource.COMMANDLINE,
            ParameterSource.ENVIRONMENT,
        ):
            continue
        if param.name == "loss_weight":
            given += [f"--loss-weight {item.partition('=')[0].strip()}" for item in loss_weight]
        else:
            given.append(max(param.opts, key=len))
    return tuple(given)


main.add_command(evaluate)  # the commands live in their own modules
main.add_command(predict)
main.add_command(experiment)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
