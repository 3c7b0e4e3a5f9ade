"""focalstack-data: look at focalstack HDF5 data sets (schema v3; v1 and v2 read): inspect, validate, preview;
import other data sets (FoD500, DDFF-12) and export to them (``cli_interop.py``); pack files small for
transport and unpack them (``cli_pack.py``).

Every error is one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import click

from .cliutil import CONTEXT, Group, friendly_errors, one_line
from .files import refuse_overwriting_input
from .schema import DatasetError


def _file_argument(multiple: bool = False):
    return click.argument(
        "files" if multiple else "file",
        nargs=-1 if multiple else 1,
        required=True,
        type=click.Path(dir_okay=True, path_type=Path),  # existence is checked by us: one line, exit 1
    )


_FULL = click.option(
    "--full", is_flag=True, help="Check every complete scene's pixels, not a sample of up to 8 spread over the file."
)


@click.group(cls=Group, context_settings=CONTEXT)
@click.version_option(package_name="focalstack", prog_name="focalstack-data")
def main():
    """Inspect, validate and preview focalstack data sets: HDF5 files of focal stacks with depth,
    all-in-focus image, defocus maps and edges, or the part of it a file declares it holds (schema v3;
    v1 and v2 files are read too). Import FoD500 and DDFF-12 into such files, export them as FoD500 folders.

    \b
    Examples:
      focalstack-data inspect data/train.h5
      focalstack-data validate data/*.h5 --full
      focalstack-data preview data/train.h5 --scene 0 -o scene0.png
      focalstack-data import fod500 fs_6/ --split test -o data/fod500-test.h5
      focalstack-data import ddff12 ddff-dataset-trainval.h5 --split val -o data/ddff12-val.h5
      focalstack-data export fod500 data/train.h5 -o out/fod500-style/
      focalstack-data pack data/train.h5 --float16 depth -o bundle/   # small, for carrying; unpack there
      focalstack-data salvage broken.h5 -o rescued.h5                 # the intact scenes of a damaged file
    """


# -- inspect -------------------------------------------------------------------------------------------
def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return " ".join(str(value).splitlines())


def _nums(values, unit: str = "") -> str:
    text = ", ".join(f"{v:g}" for v in values)
    return f"{text} {unit}".rstrip()


MODEL_FORMULAS = {
    "cycles": "c = f_px * (f/N) * (z - s) / (z * s) px, + behind focus",
    "thin_lens": "c = f_px * (f/N) * (z - s) / (z * (s - f)) px, + behind focus",
}
# Settings from the 'config' attribute worth a line in inspect (the camera is shown per scene).
RENDER_SETTINGS = ("samples", "denoise", "canny_low", "canny_high", "canny_blur_sigma")


def _row(key, value) -> None:
    click.echo(f"{_text(key):<16}{_text(value)}")


def _print_summary(s: dict) -> None:
    attrs = s["attrs"]
    _row("file", f"{s['path']}  ({_size(s['file_size'])}, schema v{s['schema_version']})")
    incomplete = s["n_incomplete"]
    _row(
        "scenes",
        f"{s['n_complete']} complete"
        + (f", {incomplete} incomplete (re-rendered on resume)" if incomplete else ", none incomplete"),
    )
    _row("images", f"{s['n_slices']} slice(s) of {s['width']} x {s['height']} px (W x H)")
    if "source" in attrs:
        _row("source", attrs["source"])
    if "preset" in attrs or "source" not in attrs:
        _row("preset", attrs.get("preset", "?"))
    if "seed_min" in s and s["seed_max"] >= 0:
        _row("seeds", f"{s['seed_min']} to {s['seed_max']} ({s['n_unique_seeds']} distinct)")
    blender = f", Blender {attrs['blender_version']}" if "blender_version" in attrs else ""
    _row("generator", f"focalstack {attrs.get('generator_version', '?')}{blender}")
    _row("created", f"{attrs.get('created_utc', '?')} (UTC)")
    if s["ground_truth"]["defocus"].present:
        model = attrs.get("defocus_model", "?")
        _row("defocus model", f"{model}: {MODEL_FORMULAS[model]}" if model in MODEL_FORMULAS else model)
    config = s["config"] if isinstance(s.get("config"), dict) else {}
    settings = {k: v for k, v in config.items() if k in RENDER_SETTINGS}
    if settings:
        _row("render", "  ".join(f"{k}={v}" for k, v in settings.items()))
    if s["n_complete"]:
        _print_scene_values(s)
    extra = {
        k: v
        for k, v in attrs.items()
        if k
        not in (
            "format",
            "schema_version",
            "preset",
            "generator_version",
            "blender_version",
            "created_utc",
            "defocus_model",
            "source",
        )
    }
    for key, value in sorted(extra.items()):
        _row(key, value)
    _print_ground_truth(s["ground_truth"])
    _print_storage(s)


def _print_scene_values(s: dict) -> None:
    for key, label, unit in (
        ("f_number", "f-number", ""),
        ("focal_length_mm", "focal length", "mm"),
        ("sensor_width_mm", "sensor width", "mm"),
    ):
        _row(label, _nums(s[key], unit) if s[key] is not None else "none (no camera model)")
    for i, (focus, count) in enumerate(s["focus_distance_sets"]):
        _row("focus distances" if i == 0 else "", f"{_nums(focus, 'm')}  ({count} scene(s))")
    if s.get("depth_range"):
        lo, hi = s["depth_range"]
        holes = s.get("depth_no_data_pixels")
        note = f"  ({holes} pixel(s) without ground truth)" if holes else ""
        _row("depth", f"{lo:.4g} to {hi:.4g} m{note}")


def _print_ground_truth(declared: dict) -> None:
    click.echo("ground truth")
    for name, gt in declared.items():
        click.echo(f"  {name:<18}{gt.describe()}")


def _print_storage(s: dict) -> None:
    click.echo("storage")
    nw = max(16, *(len(name) + 2 for name in s["datasets"]))
    click.echo(f"  {'dataset':<{nw}}{'shape':<20}{'dtype':<14}{'compression':<20}{'stored':>10}{'ratio':>8}")
    total_stored = total_raw = 0
    for name, d in s["datasets"].items():
        ratio = f"{d['ratio']:.2f}" if d["ratio"] else "-"
        shape = "x".join(str(x) for x in d["shape"])
        click.echo(f"  {name:<{nw}}{shape:<20}{d['dtype']:<14}{d['compression']:<20}{_size(d['stored_bytes']):>10}{ratio:>8}")
        total_stored += d["stored_bytes"]
        total_raw += d["raw_bytes"] or d["stored_bytes"]
    for name, gt in s["ground_truth"].items():
        if gt.recomputed:
            click.echo(f"  {name:<{nw}}not stored: readers recompute it from {', '.join(gt.derived_from)} ({gt.method})")
    if total_stored:
        click.echo(f"  {'all':<{nw}}{'':<54}{_size(total_stored):>10}{total_raw / total_stored:>8.2f}")
        if s["n_complete"]:
            click.echo(f"  {_size(total_stored / max(s['n_rows'], 1))} stored per scene")


def _print_report(report, full: bool) -> None:
    checked = report.summary.get("checked")
    if checked is not None and report.summary.get("n_complete"):
        n = report.summary["n_complete"]
        how = f"all {n}" if len(checked) == n else f"{len(checked)} of {n} (a sample; --full checks all)"
        click.echo(f"validation      pixels checked in {how} complete scene(s)")
    else:
        click.echo("validation")
    for w in report.warnings:
        click.echo(f"  warning: {w}")
    for p in report.problems:
        click.echo(f"  problem: {p}")
    click.echo("valid" if report.valid else f"invalid: {len(report.problems)} problem(s)")


@main.command()
@_file_argument()
@_FULL
@click.pass_context
@friendly_errors
def inspect(ctx, file: Path, full: bool):
    """Summarise FILE and validate it against the schema (v3; v1 and v2 files against their own version).

    Prints the scene counts, image size, preset, seeds, versions, the camera settings over all scenes
    (f-numbers, focal lengths, sensor widths, sets of focus distances), the depth range, the file size
    and each dataset's stored size and compression ratio; then the validation: 'valid', or the
    problems. Exit status 0 if valid, 1 if not or if FILE cannot be read.
    """
    from .summary import summarize
    from .validate import validate_file

    report = validate_file(file, full=full)
    if not report.readable:
        if len(report.problems) == 1 or not report.summary.get("schema_version"):
            raise click.ClickException(f"{file}: {report.problems[0]}")
        click.echo(f"{file}: not a readable schema-v1/v2/v3 file:")
        for p in report.problems:
            click.echo(f"  problem: {p}")
        ctx.exit(1)
    try:
        _print_summary(summarize(file))
    except (DatasetError, OSError, RuntimeError, KeyError, ValueError, TypeError, MemoryError) as exc:
        click.echo(f"{file}: no summary ({one_line(exc)})")  # a damaged file: the validation says more
    _print_report(report, full)
    ctx.exit(0 if report.valid else 1)


# -- validate ------------------------------------------------------------------------------------------
@main.command()
@_file_argument(multiple=True)
@_FULL
@click.option("-v", "--verbose", is_flag=True, help="Also list warnings (incomplete scenes, blank images, ...).")
@click.pass_context
def validate(ctx, files: tuple[Path, ...], full: bool, verbose: bool):
    """Check each FILE against the HDF5 schema (v3; v1 and v2 files against their own version).

    Prints one line per valid file, and each problem of an invalid one on a line of its own that names
    the attribute, dataset or scene and what was expected. Exit status 1 if any file is invalid.
    """
    from .validate import validate_file

    bad = 0
    for file in files:
        report = validate_file(file, full=full)
        if report.valid:
            n = report.summary.get("n_complete", 0)
            note = f", {len(report.warnings)} warning(s)" if report.warnings else ""
            click.echo(f"{file}: valid ({n} complete scene(s){note})")
        else:
            bad += 1
            click.echo(f"{file}: invalid")
            for p in report.problems:
                click.echo(f"{file}: problem: {p}")
        if verbose or not report.valid:
            for w in report.warnings:
                click.echo(f"{file}: warning: {w}")
    if bad:
        click.echo(f"{bad} of {len(files)} file(s) invalid", err=True)
        ctx.exit(1)


# -- preview -------------------------------------------------------------------------------------------
@main.command()
@_file_argument()
@click.option(
    "--scene",
    "-k",
    "index",
    type=int,
    default=0,
    show_default=True,
    help="Index of the scene among the file's complete scenes (0 is the first).",
)
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Image to write (.png or .jpg); its folder must exist.",
)
@click.option(
    "--columns", type=click.IntRange(min=1), default=None, help="Panels per row; slices wrap beyond it.  [default: up to 6]"
)
@friendly_errors
def preview(file: Path, index: int, out: Path, columns: int | None):
    """Write a contact sheet of one scene of FILE to OUT.

    One image with every focal slice (labelled with its focus distance), the all-in-focus image, the
    depth map with a colour bar in metres, the signed defocus maps on one symmetric diverging scale with
    a colour bar in pixels (red behind the focal plane, blue in front), and the Canny edges.
    """
    from .preview import save_contact_sheet
    from .reader import FocalStackFile

    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise click.ClickException(f"-o {out}: expected a file name ending in .png or .jpg")
    if not out.parent.is_dir():
        raise click.ClickException(f"-o {out}: folder {out.parent} does not exist")
    refuse_overwriting_input(out, [file])
    with FocalStackFile(file) as f:
        n = len(f)
        if not 0 <= index < n:
            valid = f"0 to {n - 1}" if n else "none: it has no complete scenes"
            raise click.ClickException(f"--scene {index}: out of range; {file} has {n} complete scene(s) ({valid})")
        try:
            scene = f[index]
        except (DatasetError, click.ClickException):
            raise
        except Exception as exc:  # h5py on damaged metadata: KeyError, ValueError, TypeError, ...
            raise click.ClickException(
                f"{file}: cannot read scene {index} ({one_line(exc)}); see focalstack-data validate {file}"
            ) from None
    save_contact_sheet(scene, out, columns=columns)
    click.echo(f"{out}: scene {index} (seed {scene.seed}) of {file}")


# -- salvage -------------------------------------------------------------------------------------------
@main.command()
@_file_argument()
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="New file for the intact scenes; its folder must exist. Written under a temporary name.",
)
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@friendly_errors
def salvage(file: Path, out: Path, force: bool):
    """Copy the intact scenes of a damaged FILE (cut short, or with damaged chunks) into OUT.

    A scene is kept when every chunk of it lies inside what is left of FILE and verifies against its
    checksum (files written since checksums were added); the rest are listed. When the kept scenes are
    FILE's first rows, in order, focalstack-render resumes OUT like any file it wrote.
    """
    from .salvage import salvage as run_salvage

    if not file.is_file():
        raise click.ClickException(f"{file}: no such file")
    refuse_overwriting_input(out, [file])
    if out.exists() and not force:
        raise click.ClickException(f"-o {out}: exists; choose another file or pass --force to replace it")
    if not out.parent.is_dir():
        raise click.ClickException(f"-o {out}: folder {out.parent} does not exist")
    report = run_salvage(file, out)
    if report.missing_bytes:
        click.echo(f"{file}: {report.missing_bytes} bytes shorter than its header records (cut short)")
    if not report.checksums:
        click.echo(
            f"warning: {file} has no checksums (written before they were added): chunks past the cut are "
            "found, other damage is not",
            err=True,
        )
    for index, why in report.dropped:
        click.echo(f"dropped scene {index}: {why}")
    resumable = (
        "; focalstack-render can resume it"
        if report.resumable
        else (
            f"; the kept scenes are not {file}'s first rows in order (a row not kept lies between them), so "
            "focalstack-render will not extend it (use it as data)"
        )
    )
    click.echo(f"{out}: {len(report.kept)} of {report.complete} complete scene(s) kept{resumable}")


def _register() -> None:
    from .cli_interop import export_group, import_group
    from .cli_pack import pack, unpack

    main.add_command(import_group)
    main.add_command(export_group)
    main.add_command(pack)
    main.add_command(unpack)


_register()


if __name__ == "__main__":
    main()
