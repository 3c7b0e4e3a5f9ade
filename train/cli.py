"""focalstack-train: train, evaluate and apply DefocusNet, DepthNet and AiFNet.

Errors in the input (missing or foreign files, stack or image sizes that do not fit together, a
checkpoint of another architecture) end the command with one line naming the file or value.

Defaults are never typed here: they come from ``TrainConfig``, ``Norm``, ``LossWeights``, the model
builders and the signatures of ``evaluate`` and ``predict``, and architecture names from ``ARCHITECTURES``.
"""

from __future__ import annotations

import glob
import inspect
import sys

import click

from focalstack.dataset import DatasetError
from focalstack.dataset.cliutil import one_line_errors
from focalstack.dataset.numbers import parse_numbers

from .checkpoint import CheckpointError
from .data import Norm, parse_data_spec
from .device import AMP_CHOICES, CHANNELS_LAST_CHOICES
from .distributed import is_writer
from .evaluate import evaluate as run_evaluate
from .losses import LossWeights
from .models import ARCHITECTURES, architecture_kwargs
from .plan import ORDERS, REGIONS, SETTINGS
from .predict import predict as run_predict
from .protocols import PROTOCOLS
from .trainer import TrainConfig
from .trainer import fit as run_fit

_errors = one_line_errors(ValueError, DatasetError, CheckpointError, FloatingPointError, OSError)


def defaults(fn) -> dict:
    """The default of every keyword of a function or dataclass that has a plain one."""
    return {n: p.default for n, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}


TRAIN, NORM, LOSS = defaults(TrainConfig), defaults(Norm), defaults(LossWeights)
EVALUATE, PREDICT = defaults(run_evaluate), defaults(run_predict)
ARCH = defaults(ARCHITECTURES[TRAIN["arch"]])  # the default architecture's builder
ARCH_OPTIONS = ("width", "aif_width", "aif_blocks")  # builder keywords offered as options


def _arch_help() -> str:
    docs = [f"{name}: {inspect.getdoc(build).splitlines()[0]}" for name, build in ARCHITECTURES.items()]
    return " ".join(docs) + f" [{TRAIN['arch']}]"


def _expand(paths: tuple[str, ...]) -> list[str]:
    """Expand glob patterns the shell left alone (e.g. quoted 'test_*.h5'); keep other paths as given."""
    out = []
    for p in paths:
        try:
            path, _ = parse_data_spec(p)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        suffix = p[len(path) :]  # ":WEIGHT" or ""
        matches = sorted(glob.glob(path)) if any(c in path for c in "*?[") else []
        out.extend([m + suffix for m in matches] if matches else [p])
    return out


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
@click.option("--lr", type=float, default=TRAIN["lr"], show_default=True, help="AdamW learning rate.")
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
    "--samples-per-epoch", type=int, default=TRAIN["samples_per_epoch"], help="Stacks per epoch [number of training scenes]."
)
@click.option("--seed", type=int, default=TRAIN["seed"], show_default=True, help="Seed of weights, split and sampling.")
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
@click.option("--workers", type=int, default=TRAIN["workers"], show_default=True, help="DataLoader worker processes (0: main).")
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
@_errors
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
    _threads(threads)
    if not data and not resume:
        raise click.UsageError("give at least one --data FILE")
    name = arch or TRAIN["arch"]
    given = {k: options.pop(k) for k in ARCH_OPTIONS}
    arch_kwargs = {k: v for k, v in given.items() if v is not None}
    bad = [k for k in arch_kwargs if k not in architecture_kwargs(name)]
    if bad:
        raise click.BadParameter(f"--arch {name} has no {'/'.join('--' + b.replace('_', '-') for b in bad)}", param_hint="--arch")
    norm = Norm(**{k: options.pop(k) for k in NORM})
    if options["epochs"] is None and not resume:  # None tells a resumed run to keep its own
        options["epochs"] = TRAIN["epochs"]
    cfg = TrainConfig(
        data=_expand(data),
        val_data=_expand(val_data),
        arch=arch if resume else name,
        arch_kwargs=arch_kwargs,
        flips=not no_flip,
        loss_weights=LossWeights.parse(loss_weight).to_dict(),
        norm=norm.to_dict(),
        tensorboard=not no_tensorboard,
        progress=not quiet,
        **options,  # the rest are TrainConfig's own names
    )
    result = run_fit(cfg, resume=resume)
    if not quiet and is_writer():
        click.echo(f"checkpoints: {result.best} (best), {result.last} (last); metrics: {result.out / 'metrics.csv'}")


def _evaluate_help() -> str:
    """The evaluate command's help: what it does, and one line (wrapped) per protocol."""
    import textwrap

    listing = "\n".join(
        textwrap.fill(p.summary, 96, initial_indent=f"  {name:<12} ", subsequent_indent=" " * 15) for name, p in PROTOCOLS.items()
    )
    return (
        "Evaluate a checkpoint on held-out files: one table per protocol (--protocol, repeatable), one row "
        "per file and setting (All: the full stack in focus order; Random: random subsets in random order). "
        "The network runs once per batch for every protocol; files may differ in size and slice count. "
        "Metrics a file or model cannot support (no AiF image, no defocus maps, no DDFF-12 disparity, no AiF "
        "branch) print as '-' (null in JSON) with a note. Prints Markdown and writes it with CSV and JSON.\n\n"
        "\b\nProtocols (docs/evaluation.md states each one's clipping, masks and averaging in full):\n" + listing + "\n\n"
        "\b\nExample:\n  focalstack-train evaluate -c runs/x/best.pt --data fod500-test.h5 --protocol dfv \\\n"
        "      --protocol aifdepthnet --compare-published\n"
    )


@main.command(help=_evaluate_help())
@click.option(
    "--checkpoint",
    "-c",
    required=True,
    type=click.Path(),
    help="A checkpoint, e.g. runs/x/best.pt, or the name of shipped weights (see weights/README.md).",
)
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    metavar="FILE",
    help="Held-out file(s) (repeat, or a glob such as 'test_*.h5'); one table row per file and setting. "
    "Sizes and slice counts may differ between files.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for metrics.md, metrics.csv, metrics.json [<checkpoint folder>/eval].",
)
@click.option(
    "--protocol",
    "protocols",
    multiple=True,
    type=click.Choice(tuple(PROTOCOLS)),
    default=EVALUATE["protocols"],
    show_default=True,
    help="Evaluation protocol; repeat for several (each is described above).",
)
@click.option(
    "--compare-published",
    is_flag=True,
    default=EVALUATE["compare_published"],
    help="Add the published rows of each protocol (marked with their paper and table) under the same columns.",
)
@click.option(
    "--setting",
    "settings",
    multiple=True,
    type=click.Choice(SETTINGS),
    default=EVALUATE["settings"],
    show_default=True,
    help="All: every slice in focus order; Random: random subsets in random order.",
)
@click.option(
    "--stack-size",
    "stack_sizes",
    multiple=True,
    type=click.IntRange(min=1),
    default=EVALUATE["stack_sizes"],
    help="Also evaluate stacks of K slices per scene (a seeded random choice of K; repeatable).",
)
@click.option(
    "--order",
    "orders",
    multiple=True,
    type=click.Choice(ORDERS),
    default=EVALUATE["orders"],
    show_default=True,
    help="With --stack-size: the K slices in focus order, or shuffled.",
)
@click.option(
    "--region",
    "regions",
    multiple=True,
    type=click.Choice(REGIONS),
    default=EVALUATE["regions"],
    show_default=True,
    help="all: whole images; flat: depth over the large texture-less areas alone "
    "(true AiF gradients below 3 grey levels in a 9x9 neighbourhood).",
)
@click.option("--batch-size", type=int, default=EVALUATE["batch_size"], show_default=True)
@click.option("--max-scenes", type=int, default=EVALUATE["max_scenes"], help="Evaluate only the first N scenes of each file.")
@click.option("--seed", type=int, default=EVALUATE["seed"], show_default=True, help="Seed of the Random setting's subsets.")
@click.option(
    "--device",
    default=EVALUATE["device"],
    show_default=True,
    help="auto, cpu, cuda or cuda:N. Under torchrun auto and cuda mean each process's GPU (LOCAL_RANK).",
)
@click.option("--amp", type=click.Choice(AMP_CHOICES), default=EVALUATE["amp"], show_default=True)
@click.option("--workers", type=int, default=EVALUATE["workers"], show_default=True, help="DataLoader worker processes.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch [torch's default].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@_errors
def evaluate(checkpoint, data, out, settings, protocols, compare_published, threads, quiet, **options):
    _threads(threads)
    result = run_evaluate(
        checkpoint,
        _expand(data),
        out,
        settings=tuple(settings),
        protocols=tuple(protocols),
        compare_published=compare_published,
        progress=not quiet,
        **options,
    )
    if not is_writer():
        return  # several processes (torchrun): rank 0 prints
    click.echo(result.report(compare_published), nl=False)
    if not quiet:
        click.echo(f"written: {result.paths['markdown']}, {result.paths['csv']}, {result.paths['json']}")


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option(
    "--checkpoint",
    "-c",
    required=True,
    type=click.Path(),
    help="A checkpoint, e.g. runs/x/best.pt, or the name of shipped weights (see weights/README.md).",
)
@click.option(
    "--focus-distances",
    "-f",
    default=None,
    metavar="M,M,...",
    help="Focus distance of each image in metres, in the order the images are given "
    "[the checkpoint's training focus distances, if as many as images].",
)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option(
    "--refocus",
    multiple=True,
    type=float,
    metavar="DIST",
    help="Also write the AiF image synthetically refocused at DIST metres (repeatable).",
)
@click.option("--f-number", type=float, default=None, help="Camera for --refocus [the checkpoint's training camera].")
@click.option("--focal-length-mm", type=float, default=None, help="Camera for --refocus [checkpoint's].")
@click.option("--sensor-width-mm", type=float, default=None, help="Camera for --refocus [checkpoint's].")
@click.option(
    "--tile",
    type=int,
    default=PREDICT["tile"],
    show_default=True,
    help="Images larger than a tile with 96 px around it are processed in tiles of this many pixels, "
    "each with 96 px of the image around it, so that the result is the whole image's (to 1e-4 of "
    "the depth range) in memory that does not grow with the image (10 slices at 192: 1.7 GB); "
    "larger tiles are faster. 0: the whole image at once (about 6.7 kB per pixel for 10 slices).",
)
@click.option("--device", default=PREDICT["device"], show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(AMP_CHOICES), default=PREDICT["amp"], show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch [torch's default].")
@_errors
def predict(
    images, checkpoint, focus_distances, out, refocus, f_number, focal_length_mm, sensor_width_mm, tile, device, amp, threads
):
    """Predict depth, defocus maps and the all-in-focus image of one focal stack given as IMAGES
    (files and/or folders of images, any size, any order, one focus distance each).

    \b
    Writes depth.npy (m), depth.png (16-bit mm), depth_color.png, defocus.npy (px) and one colour map
    per image, aif.png, edges.png, refocus_<DIST>m.png, prediction.json.
    """
    _threads(threads)
    distances = None
    if focus_distances:
        distances = parse_numbers(focus_distances, "--focus-distances", positive=True, unit="metres")
    written = run_predict(
        checkpoint,
        list(images),
        out,
        focus_distances=distances,
        refocus_distances=list(refocus),
        device=device,
        amp=amp,
        tile=tile,
        camera={"f_number": f_number, "focal_length_mm": focal_length_mm, "sensor_width_mm": sensor_width_mm},
    )
    click.echo(f"wrote {len(written)} files to {out}")


@main.command()
@click.argument("experiment_file", metavar="EXPERIMENT", required=False)
@click.option(
    "--scale",
    default="tiny",
    show_default=True,
    help="Which of the experiment's scales to run: tiny (minutes on a CPU: proves the pipeline, its "
    "numbers are not results), small (128 px, ~200 training scenes), full (the paper's size).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    default=None,
    help="Run folder: data/, models/, evaluations/, figures/, report.md, report.json, state.json.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where rendered files live [OUT/data]; experiments may share one (files are named by what they hold).",
)
@click.option(
    "--render-option",
    "render_options",
    multiple=True,
    metavar="OPTION",
    help="Passed to every focalstack-render call, e.g. --render-option=--workers --render-option=2.",
)
@click.option("--device", default="auto", show_default=True, help="Training and evaluation device: auto, cpu, cuda[:N].")
@click.option(
    "--no-render",
    is_flag=True,
    help="Render nothing: use the files in --data-dir as they are, refused when one holds fewer scenes than "
    "the experiment asks (a machine without Blender, with files rendered elsewhere: "
    "focalstack-data pack/unpack carries them).",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train this many models at once, each in its own process (one GPU has room for several small ones); "
    "their progress goes to models/NAME/train.log.",
)
@click.option("--list", "list_", is_flag=True, help="List the bundled experiments and exit.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or step lines.")
@one_line_errors(ValueError, DatasetError, CheckpointError, FloatingPointError, OSError, RuntimeError)
def experiment(experiment_file, scale, out, data_dir, render_options, device, no_render, parallel, list_, quiet):
    """Run an experiment file (or a bundled experiment by name): render the datasets it names (through
    focalstack-render, resumably), train every model (resumably), evaluate, and write report.md and
    report.json with tables, figures and the published numbers beside ours. Rerunning reuses every
    finished step and continues a killed one.

    \b
    Examples:
      focalstack-train experiment --list
      focalstack-train experiment walls-fix --scale tiny -o runs/walls-fix
      focalstack-train experiment my-experiment.toml --scale small -o runs/mine --render-option=--workers --render-option=2
    """
    from .experiments import ExperimentRunner, RunOptions, bundled_experiments, load_experiment

    if list_:
        for name, path in bundled_experiments().items():
            click.echo(f"{name:<16}{_first_sentence(path)}")
        return
    if experiment_file is None or out is None:
        raise click.UsageError("give an EXPERIMENT (a file or a bundled name, see --list) and --out FOLDER")
    spec = load_experiment(experiment_file, scale)
    options = RunOptions(
        out=out,
        data_dir=data_dir,
        render_args=list(render_options),
        device=device,
        progress=not quiet,
        render=not no_render,
        parallel=parallel,
    )
    ExperimentRunner(spec, options).run()
    if not quiet:
        click.echo(f"{out}/report.md ({spec.name}, scale {scale})")


def _first_sentence(path) -> str:
    from .experiments.spec import tomllib

    text = " ".join(str(tomllib.loads(path.read_text()).get("description", "")).split())
    return text.split(". ")[0][:90]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
