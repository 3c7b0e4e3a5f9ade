"""focalstack-data import / export: the field's formats (FoD500 folders, DDFF-12 files) to and from
schema files. Registered on ``focalstack-data`` by ``cli.py``."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import click

from .cliutil import CONTEXT, Group, friendly_errors
from .ddff12 import SPLITS as DDFF12_SPLITS
from .files import refuse_overwriting_input
from .fod500 import LAYOUTS
from .fod500 import SPLITS as FOD500_SPLITS


def _progress(desc: str):
    def wrap(iterable, total):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit="scene", disable=None, leave=False)

    return wrap


def _check_out(out: Path, force: bool, source: Path) -> None:
    refuse_overwriting_input(out, [source])
    if out.exists() and not force:
        raise click.ClickException(f"-o {out}: exists; choose another file or pass --force to replace it")
    if out.exists() and not out.is_file():
        raise click.ClickException(f"-o {out}: exists and is not a file")
    if not out.parent.is_dir():
        raise click.ClickException(f"-o {out}: folder {out.parent} does not exist")


@contextlib.contextmanager
def _listing_skipped():
    """When every scene was skipped, the reasons come before the error (which alone would not say why)."""
    from .importing import NothingImported

    try:
        yield
    except NothingImported as exc:
        for line in exc.skipped:
            click.echo(f"skipped: {line}")
        raise


def _report(out: Path, what: str, imported: int, skipped: list[str], repaired: Sequence[str] = ()) -> None:
    for line in skipped:
        click.echo(f"skipped: {line}")
    for line in repaired:
        click.echo(f"repaired: {line}")
    note = f", {len(skipped)} skipped (listed above)" if skipped else ""
    click.echo(f"{out}: {imported} scene(s) imported from {what}{note}")


_OUT = click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Schema file to write; its folder must exist. Written under a temporary name and "
    "renamed at the end: a failed import leaves nothing in its place.",
)
_SKIP = click.option(
    "--skip-bad",
    is_flag=True,
    help="Leave out scenes with missing or broken files, list them, and import the rest "
    "(default: stop at the first, naming the file).",
)
_FORCE = click.option("--force", is_flag=True, help="Replace OUT if it exists (only once the import succeeded).")


@click.group("import", cls=Group, context_settings=CONTEXT)
def import_group():
    """Convert another data set into a focalstack schema file (schema v3).

    The file holds what the source has and nothing more; its 'ground_truth' attribute lists each
    ground-truth array and where it came from (rendered, imported, derived, absent), and inspect shows it.
    """


@import_group.command("fod500")
@click.argument("folder", type=click.Path(path_type=Path))
@_OUT
@click.option(
    "--split",
    type=click.Choice([*FOD500_SPLITS, "all"]),
    default="all",
    show_default=True,
    help="FoD500's split: scenes 0-399 (train), 400 and up (test: FoD500's are 400-499, and DFV's loader "
    "takes every scene from 400 on as test), or every scene found.",
)
@_SKIP
@_FORCE
@friendly_errors
def import_fod500_cmd(folder: Path, out: Path, split: str, skip_bad: bool, force: bool):
    """Import FoD500's flat FOLDER ({i:06d}_{j:02d}All.tif slices, {i:06d}Dpt.exr depth in R, and
    {i:06d}Aif.tif where DEReD's copy has it) with FoD500's camera: 2.9 mm, f/1, 3.1 mm sensor, focus
    0.1, 0.15, 0.3, 0.7, 1.5 m.

    Defocus maps are derived from depth by the textbook thin lens (as FoD500's own code does; a folder
    that export fod500 wrote keeps the model its focalstack.json records) and recomputed by readers, not
    stored; edges exist only with AiF images. A folder with missing slices, a
    scene without depth, an EXR without channel R or images not 256 x 256 is refused with one line
    naming the file, unless --skip-bad.
    """
    from .fod500 import import_fod500

    _check_out(out, force, folder)
    with _listing_skipped():
        summary = import_fod500(folder, out, split=split, skip_bad=skip_bad, progress=_progress("importing"))
    aif = "with" if summary.has_aif else "without"
    _report(out, f"{folder} (split {split}, {aif} AiF images)", len(summary.imported), summary.skipped, summary.repaired)


@import_group.command("ddff12")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--split",
    type=click.Choice(DDFF12_SPLITS),
    required=True,
    help="Which of the file's stacks: stack_train/disp_train or stack_val/disp_val.",
)
@_OUT
@_SKIP
@_FORCE
@friendly_errors
def import_ddff12_cmd(file: Path, split: str, out: Path, skip_bad: bool, force: bool):
    """Import DDFF-12's HDF5 FILE (ddff-dataset-trainval.h5), stack by stack (memory stays flat).

    Keeps the disparity as given and derives metric depth from it with DDFF's calibration (depth =
    baseline * f_sub / disparity; disparity 0 = no ground truth, depth 0 there); the ten slices are
    focused at 0.5 m to 7 m, evenly spaced in disparity. There is no camera model, AiF image, defocus map
    or edge map: the file declares them absent.
    """
    from .ddff12 import import_ddff12

    _check_out(out, force, file)
    with _listing_skipped():
        summary = import_ddff12(file, out, split=split, skip_bad=skip_bad, progress=_progress("importing"))
    for w in summary.warnings:
        click.echo(f"warning: {w}", err=True)
    _report(out, f"{file} (split {split})", len(summary.imported), summary.skipped, summary.repaired)


@click.group("export", cls=Group, context_settings=CONTEXT)
def export_group():
    """Write a focalstack schema file in another data set's format."""


@export_group.command("fod500")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    "folder",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to create (or an empty one, kept); filled under a temporary name and moved into place at the "
    "end: a failed export leaves nothing.",
)
@click.option(
    "--split",
    type=click.Choice(list(FOD500_SPLITS)),
    default="train",
    show_default=True,
    help="Number the scenes as FoD500's training split (from 0) or its test split (from 400: DFV "
    "treats int(name[:6]) < 400 as training and its test script reads the rest).",
)
@click.option(
    "--start",
    type=click.IntRange(min=0),
    default=None,
    help="FoD500 index of the file's first scene  [default: 0 for --split train, 400 for test]",
)
@click.option(
    "--layout",
    type=click.Choice(list(LAYOUTS)),
    default=LAYOUTS[0],
    show_default=True,
    help="fod500: only FoD500's files beside each other, the extras in extra/ (every FoD500 loader "
    "reads it); dered: also {i:06d}Aif.tif beside them, where DEReD reads it (AiFDepthNet's list "
    "generator then groups the wrong files).",
)
@friendly_errors
def export_fod500_cmd(file: Path, folder: Path, split: str, start: int | None, layout: str):
    """Write FILE's scenes as a FoD500 folder: {i:06d}_{j:02d}All.tif (8-bit RGB TIFF per slice, uncompressed)
    and {i:06d}Dpt.exr (depth in metres, half float, in R, G and B), numbered from 0 (--split train) or 400
    (--split test) or --start: what DFV, AiFDepthNet and defocus-net read unchanged.

    Also, documented in the folder's focalstack.json, in its extra/ subfolder where no FoD500 loader looks:
    {i:06d}Aif.tif (the all-in-focus image, as DEReD names it; beside the slices with --layout dered),
    {i:06d}_{j:02d}Def.exr (signed defocus of slice j, pixels, float32 in R) and {i:06d}Extra.npz (every
    other dataset of the scene by its schema name). Any size and slice count is written; one warning line
    says how the file's camera or images differ from FoD500's and which loaders assume FoD500's.
    """
    from .fod500 import PEER_ASSUMPTIONS, TEST_START, export_fod500

    if start is None:
        start = TEST_START if split == "test" else 0
    if split == "test" and start < TEST_START:  # the folder would be read as training data
        raise click.UsageError(
            f"--split test --start {start}: DFV's loader takes scenes numbered below {TEST_START} as training; "
            f"start at {TEST_START} or above, or export with --split train"
        )
    summary = export_fod500(file, folder, start=start, layout=layout, progress=_progress("exporting"))
    notes = list(summary.differences)
    if any("px" in d or "slices" in d for d in notes):
        notes.append(PEER_ASSUMPTIONS)
    if split == "train" and start + len(summary.indices) > TEST_START:
        notes.append(
            f"scenes numbered {TEST_START} and above are FoD500's test split to DFV's loader "
            "(number a test set with --split test)"
        )
    if notes:
        click.echo(f"warning: {file} differs from FoD500: {'; '.join(notes)}", err=True)
    last = f" to {summary.indices[-1]:06d}" if summary.indices else ""
    click.echo(f"{folder}: {len(summary.indices)} scene(s) exported from {file}, numbered {start:06d}{last}")
