"""focalstack-train evaluate and predict: a checkpoint on held-out files, and on a real focal stack."""

from __future__ import annotations

import warnings

import click

from focalstack.dataset.cliutil import Command
from focalstack.dataset.numbers import parse_numbers

from .cliopts import defaults, errors, expand_paths, set_threads
from .device import AMP_CHOICES
from .distributed import is_writer
from .evaluate import evaluate as run_evaluate
from .plan import ORDERS, REGIONS, SETTINGS
from .predict import predict as run_predict
from .protocols import PROTOCOLS

EVALUATE, PREDICT = defaults(run_evaluate), defaults(run_predict)


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


@click.command(cls=Command, help=_evaluate_help())
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
    help="Folder for metrics.md, metrics.csv, metrics.json [<checkpoint folder>/eval; ./eval-NAME for shipped weights].",
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
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=EVALUATE["seed"],
    show_default=True,
    help="Seed of the Random setting's subsets.",
)
@click.option(
    "--device",
    default=EVALUATE["device"],
    show_default=True,
    help="auto, cpu, cuda or cuda:N. Under torchrun auto and cuda mean each process's GPU (LOCAL_RANK).",
)
@click.option("--amp", type=click.Choice(AMP_CHOICES), default=EVALUATE["amp"], show_default=True)
@click.option(
    "--workers", type=click.IntRange(min=0), default=EVALUATE["workers"], show_default=True, help="DataLoader worker processes."
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch [torch's default].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@errors
def evaluate(checkpoint, data, out, settings, protocols, compare_published, threads, quiet, **options):
    set_threads(threads)
    result = run_evaluate(
        checkpoint,
        expand_paths(data),
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


@click.command(cls=Command)
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
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder (not the images' own); written in full or left as it was.",
)
@click.option(
    "--force", is_flag=True, help="Replace an earlier prediction in --out (none of its files stays beside the new ones)."
)
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
@click.option(
    "--width",
    type=int,
    default=None,
    metavar="PX",
    help="Run the network on the images resized to PX wide (aspect kept) and bring its outputs back to the "
    "images' size. Blur in pixels shrinks with the image: choose the width at which your stack's blur matches "
    "the training data's (the checkpoint's training width for images of its camera; model cards say) [the "
    "images' own size].",
)
@click.option("--device", default=PREDICT["device"], show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(AMP_CHOICES), default=PREDICT["amp"], show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch [torch's default].")
@errors
def predict(
    images,
    checkpoint,
    focus_distances,
    out,
    refocus,
    f_number,
    focal_length_mm,
    sensor_width_mm,
    tile,
    width,
    device,
    amp,
    threads,
    force,
):
    """Predict depth, defocus maps and the all-in-focus image of one focal stack given as IMAGES
    (files and/or folders of images, any size, any order, one focus distance each). A folder gives its
    image files in natural order (img2 before img10), hidden files left out; pair --focus-distances
    with that order, which prediction.json records.

    \b
    Writes depth.npy (m), depth.png (16-bit mm), depth_color.png, defocus.npy (px) and one colour map
    per image, aif.png, edges.png, refocus_<DIST>m.png, prediction.json.
    """
    set_threads(threads)
    # warnings (distances far from the training ones, 12-bit data in 16 bits) as one line each
    warnings.showwarning = lambda message, category, *args, **kwargs: click.echo(f"warning: {message}", err=True)
    distances = None
    if focus_distances is not None:  # -f "" is a mistake, not a request for the checkpoint's distances
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
        width=width,
        camera={"f_number": f_number, "focal_length_mm": focal_length_mm, "sensor_width_mm": sensor_width_mm},
        overwrite=force,
    )
    click.echo(f"wrote {len(written)} files to {out}")
