"""focalstack-render: render random scenes into focal stacks with ground truth (HDF5, focalstack.dataset schema)."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import click

from focalstack.dataset.cliutil import Command, one_line_errors
from focalstack.dataset.numbers import parse_numbers
from focalstack.dataset.schema import DatasetError

from .blender import BlenderError
from .cluster import RaySettings
from .config import (
    DEVICES,
    ConfigError,
    RenderConfig,
    blur_matched_f_number,
    builtin_presets,
    config_default,
    cycles_slice_keys,
    light_field_keys,
    load_preset,
    parse_focus_distances,
    parse_ground_truth,
    parse_resolution,
)
from .interrupt import sigterm_as_interrupt
from .job import render_dataset
from .pipeline import RenderError


def _fail(message: str) -> None:
    raise click.ClickException(message)


def parse_pair(text: str, option: str) -> tuple[float, float]:
    """'0.2,1' -> (0.2, 1.0); ConfigError naming the option otherwise."""
    try:
        a, b = parse_numbers(text, option, count=2)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return a, b


def _finite(ctx, param, value):
    """click callback: a float option must be a finite number (FloatRange lets nan and inf through)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value!r}: expected a finite number")
    return value


def _default(name: str) -> str:
    return f"  [default: {config_default(name)}]"


@click.command(cls=Command, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--preset",
    default="fod500",
    show_default=True,
    help="Built-in preset name or path to a preset .toml file (see --list-presets).",
)
@click.option(
    "--scenes",
    type=int,
    default=None,
    help="Number of scenes in the output file. Rerunning with a larger number extends it." + _default("scenes"),
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=False,
    help="Output HDF5 file. An existing file made with the same settings is resumed.",
)
@click.option(
    "--seed", type=int, default=None, help="Base seed; scene i is sampled from a seed derived from it and i." + _default("seed")
)
@click.option("--resolution", default=None, help="Image size: N (square) or WIDTHxHEIGHT, in pixels.  [default: preset's]")
@click.option("--samples", type=int, default=None, help="Cycles samples per pixel.  [default: preset's]")
@click.option("--f-number", type=float, default=None, help="Aperture f-number, > 0.  [default: preset's]")
@click.option(
    "--light-field/--cycles-slices",
    default=None,
    help="Render the slices by the light-field path (one shared set of rays for every slice, denoised with "
    "all-in-focus guides blurred as the slice): 2.3-3x less CPU time at 256 px, and blur differences below "
    "a pixel kept; or every slice its own Cycles render. docs/rendering.md has the measured quality of both "
    "and which presets use which.  [default: preset's]",
)
@click.option(
    "--same-blur",
    is_flag=True,
    help="With --resolution: scale the preset's f-number by the new width over the preset's, so that "
    "blur in pixels is what the preset's camera gives at its own size (fod500 at 64 px: f/0.25, "
    "the blur of FoD500 at 256 px). Not with --f-number.",
)
@click.option(
    "--focus-distances",
    default=None,
    help="Comma-separated focus distances in metres, e.g. 0.1,0.15,0.3,0.7,1.5.  [default: preset's]",
)
@click.option("--denoise/--no-denoise", default=None, help="OpenImageDenoise on every render.  [default: preset's]")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Render in N processes, each its own Blender, into shards combined at the end.",
)
@click.option(
    "--focus-breathing/--no-focus-breathing",
    default=None,
    help="Real-capture effect: magnify each slice as a thin lens focused there would "
    "(and use the thin-lens defocus model).  [default: preset's]",
)
@click.option(
    "--shake",
    metavar="DEG,MM",
    default=None,
    help="Real-capture effect: camera shake between slices, std of rotation (degrees) and "
    "translation (mm) per axis, e.g. 0.2,1.  [default: preset's]",
)
@click.option(
    "--sensor-noise",
    metavar="FULL_WELL,READ",
    default=None,
    help="Real-capture effect: Poisson-Gaussian noise on linear values, electrons at white and "
    "read-noise std (linear units), e.g. 1000,0.002.  [default: preset's]",
)
@click.option(
    "--jpeg-quality",
    type=click.IntRange(0, 100),
    default=None,
    help="Real-capture effect: JPEG-compress each slice at this quality (0 = off).  [default: preset's]",
)
@click.option(
    "--ground-truth",
    "ground_truth",
    default=None,
    metavar="NAME,NAME",
    help="Ground truth rendered beside the usual (stack, AiF, depth, defocus, edges), off unless asked: "
    "normals (unit surface normals in the camera frame) and objects (object index per pixel, 0 = "
    "background); 'none' for neither.  [default: preset's, none]",
)
@click.option(
    "--assets",
    "asset_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of meshes (OBJ, PLY, STL, glTF), textures (PNG, JPG, EXR) and environment maps "
    "(HDR, EXR); repeatable. A quarter of the files, by content hash, are kept for test presets.",
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default=None,
    help="What Cycles renders on: cpu, or a GPU backend (gpu picks the best one Cycles reports: OptiX, "
    "CUDA, HIP, oneAPI). Each process enables it itself. Recorded in the file's render_devices "
    "attribute; GPU and CPU renders of the same seeds hold the same scenes, their noise differs." + _default("device"),
)
@click.option(
    "--gpus",
    default=None,
    metavar="ID,ID,...",
    help="With --workers and a GPU --device: pin worker i to GPU ID[i % n] (CUDA_VISIBLE_DEVICES).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=None,
    help="Cycles CPU threads per rendering process (0: all cores).  [default: all cores for one process, "
    "the cores shared out with --workers, 2 per Ray task]",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Render on Ray (the cluster extra): tasks render ranges of scenes in their own processes and "
    "send them back to this process, the only writer of --out. Without ADDRESS a Ray instance "
    "is started on this machine; with it (e.g. 10.0.0.1:6379) the cluster there is used.",
)
@click.option(
    "--ray-gpus-per-task",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    callback=_finite,
    help="GPUs each Ray task holds (Ray pins it to them with CUDA_VISIBLE_DEVICES).",
)
@click.option(
    "--ray-scenes-per-task",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Scenes rendered by one Ray task (one Blender process).",
)
@click.option(
    "--ray-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    callback=_finite,
    help="Seconds to reach the --ray ADDRESS before giving up in one line.",
)
@click.option("--list-presets", is_flag=True, help="List the built-in presets and exit.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check the options and print the resolved render configuration as JSON, then exit; renders nothing and needs no --out.",
)
@click.option(
    "--scene-keys", is_flag=True, help="List every key of a preset's [scene] table with its default and meaning, and exit."
)
@one_line_errors(ConfigError, DatasetError, BlenderError, RenderError, OSError)  # OSError: an unwritable --out folder
def main(
    out,
    workers,
    threads,
    gpus,
    ray_address,
    ray_gpus_per_task,
    ray_scenes_per_task,
    ray_timeout,
    list_presets,
    scene_keys,
    dry_run,
    **config_options,
):
    """Render random scenes into focal stacks with ground truth, stored in one HDF5 file.

    Each scene is rendered with Cycles once with depth of field off (all-in-focus image and planar depth)
    and once per focus distance with a circular aperture. Defocus maps (signed blur-circle diameter in
    pixels) and Canny edges are derived from them. Interrupted runs resume: run the same command again.

    Example: focalstack-render --preset fod500 --scenes 100 --out data/train.h5
    """
    if list_presets:
        for name in builtin_presets():
            click.echo(name)
        return
    if scene_keys:
        from .sampling import describe_params

        click.echo(describe_params())
        return
    # Warnings (e.g. a skipped broken asset file) as one line each, not Python's two-line format.
    warnings.showwarning = lambda message, category, *args, **kwargs: click.echo(f"warning: {message}", err=True)
    config = config_from_options(**config_options)
    if ray_address is not None and workers > 1:
        _fail("--workers and --ray: choose one (Ray runs its own worker processes)")
    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None
    if gpu_list and (workers < 2 or config.device == "cpu"):
        _fail("--gpus pins --workers processes to GPUs: use it with --workers N and a GPU --device")
    if dry_run:  # after every check that needs no --out and no Blender
        click.echo(json.dumps(config.to_dict(), sort_keys=True))
        return
    if out is None:
        _fail("missing option --out: the HDF5 file to write")
    if not out.parent.is_dir():
        _fail(f"--out {out}: folder {out.parent} does not exist")
    ray = None
    if ray_address is not None:
        ray = RaySettings(
            address=None if ray_address == "local" else ray_address,
            threads=threads if threads else RaySettings.threads,
            gpus=ray_gpus_per_task,
            scenes_per_task=ray_scenes_per_task,
            connect_timeout=ray_timeout,
        )
    _render(config, out, workers=workers, threads=threads, gpus=gpu_list, ray=ray)


def config_from_options(
    preset: str,
    *,
    resolution,
    focus_distances,
    focus_breathing,
    shake,
    sensor_noise,
    jpeg_quality,
    asset_dirs,
    same_blur: bool = False,
    light_field: bool | None = None,
    ground_truth: str | None = None,
    **plain,
) -> RenderConfig:
    """The preset with the command line's options applied, validated (ConfigError names a bad value)."""
    config = load_preset(preset)
    overrides = dict(plain)
    if light_field is not None:
        overrides.update(light_field_keys() if light_field else cycles_slice_keys())
    if resolution is not None:
        overrides["width"], overrides["height"] = parse_resolution(resolution)
    if same_blur:
        if plain.get("f_number") is not None:
            raise ConfigError("--same-blur scales the preset's f-number: give it or --f-number, not both")
        if resolution is None:
            raise ConfigError("--same-blur keeps the blur in pixels across a change of --resolution: give --resolution")
        # blur in pixels is f_px * (f / N) * |z - s| / (z s) and f_px grows with the width: N scales with it
        overrides["f_number"] = blur_matched_f_number(config.f_number, config.width, overrides["width"])
    if focus_distances is not None:
        overrides["focus_distances"] = parse_focus_distances(focus_distances)
    if ground_truth is not None:
        overrides["ground_truth"] = parse_ground_truth(ground_truth)
    overrides["effects"] = _effects_table(config.effects, focus_breathing, shake, sensor_noise, jpeg_quality)
    if focus_breathing:
        overrides["defocus_model"] = "thin_lens"  # breathing is the textbook thin lens's behaviour
    if asset_dirs:
        overrides["scene"] = _with_asset_dirs(config, asset_dirs)
    return config.with_overrides(**overrides).validate()


def _effects_table(table: dict, focus_breathing, shake, sensor_noise, jpeg_quality) -> dict:
    """The preset's [effects] table with the command line's effect options applied."""
    effects = dict(table)
    if focus_breathing is not None:
        effects["focus_breathing"] = focus_breathing
    if shake is not None:
        effects["shake_rotation_deg"], effects["shake_translation_mm"] = parse_pair(shake, "--shake")
    if sensor_noise is not None:
        effects["noise_full_well"], effects["read_noise"] = parse_pair(sensor_noise, "--sensor-noise")
    if jpeg_quality is not None:
        effects["jpeg_quality"] = jpeg_quality
    return effects


def _with_asset_dirs(config: RenderConfig, asset_dirs) -> dict:
    """The preset's [scene] table with --assets folders added; a warning when the preset draws no asset file."""
    from .sampling import add_asset_dirs

    scene = add_asset_dirs(config.scene, list(asset_dirs))  # checks the folders
    keys = ("mesh_file_probability", "image_texture_probability", "envmap_probability")
    if not any(config.scene.get(k, 0) for k in keys):
        click.echo(
            f"warning: preset {config.preset!r} draws no asset files ({' = '.join(keys)} = 0): "
            "--assets folders are checked but not used",
            err=True,
        )
    return scene


def _render(config: RenderConfig, out: Path, **how) -> None:
    """Render with a progress bar on stderr and a one-line summary on stdout."""
    from tqdm import tqdm

    bar = None

    def on_start(done: int, total: int) -> None:
        nonlocal bar
        if done:
            click.echo(f"{out}: resuming after {done} complete scene(s)", err=True)
        bar = tqdm(total=total, initial=done, unit="scene", desc="rendering", dynamic_ncols=True, file=sys.stderr)

    def on_progress(n: int, phases: dict) -> None:
        bar.update(n)
        bar.set_postfix_str(f"{sum(phases.values()):.1f} s/scene")

    try:
        with sigterm_as_interrupt():
            summary = render_dataset(config, out, progress=on_progress, on_start=on_start, **how)
    finally:
        if bar is not None:
            bar.close()
    per_scene = summary.seconds / summary.rendered if summary.rendered else 0.0
    click.echo(
        f"{out}: {summary.scenes} scene(s), {summary.rendered} rendered now"
        + (f" in {summary.seconds:.1f} s ({per_scene:.1f} s/scene)" if summary.rendered else "")
    )


if __name__ == "__main__":
    main()
