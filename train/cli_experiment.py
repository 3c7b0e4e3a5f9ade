"""focalstack-train experiment: render, train, evaluate and report what an experiment file asks."""

from __future__ import annotations

import click

from focalstack.dataset import DatasetError
from focalstack.dataset.cliutil import Command, one_line_errors

from .checkpoint import CheckpointError


@click.command(cls=Command)
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
    help="Passed to every focalstack-render call, e.g. --render-option=--workers --render-option=2. Only options "
    "that say how to render pass (--workers, --device, --gpus, --threads, --ray and its options): what to render "
    "is the experiment file's to say, so that the data's name and the report stay true.",
)
@click.option("--device", default="auto", show_default=True, help="Training and evaluation device: auto, cpu, cuda[:N].")
@click.option(
    "--no-render",
    is_flag=True,
    help="Render nothing: use the files in --data-dir as they are, refused when one holds fewer scenes than "
    "the experiment asks or was rendered with other settings than it asks (a machine without Blender, with "
    "files rendered elsewhere: focalstack-data pack/unpack carries them).",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train this many models at once, each in its own process (one GPU has room for several small ones); "
    "their progress goes to models/NAME/train.log. A model that fails does not stop the others; the run "
    "stops with every failure named once they have trained.",
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
