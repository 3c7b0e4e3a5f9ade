"""focalstack-data pack / unpack: carry rendered files to a machine that trains but cannot render (a lent
GPU machine that takes a few tens of MiB per call), and make them back into the same files there.
Registered on ``focalstack-data`` by ``cli.py``; the format is ``pack.py``'s."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cliutil import CONTEXT, Command, friendly_errors
from .files import output_folder, same_file, write_text_atomic
from .pack import SUFFIX, pack_file, pack_name, unpack_file

MIB = 1 << 20


def _finite(value):
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value!r}: expected a finite number of MiB")
    return value


def _refuse_overlap(inputs: list[Path], outputs: list[Path]) -> None:
    for out in outputs:
        if any(same_file(out, p) for p in inputs):
            raise click.ClickException(f"{out}: is also an input; choose another -o folder")


@click.command("pack", cls=Command, context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the packs (NAME.pack.h5 per file) and manifest.json; created if missing.",
)
@click.option(
    "--float16",
    "float16",
    multiple=True,
    metavar="DATASET",
    help="Store this floating-point dataset as half floats (lossy, measured and printed; e.g. "
    "--float16 depth, as FoD500 stores depth). Default: every dataset exactly.",
)
@click.option(
    "--brief-descriptions",
    is_flag=True,
    help="Leave the scene descriptions' object and light lists out (they say so): about a fifth of a 64 px "
    "fod500 pack, and nothing a trainer reads. Render the seed again for them. Default: descriptions whole.",
)
@click.option(
    "--max-size",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="MIB",
    callback=lambda ctx, param, v: _finite(v),
    help="Fail (exit 1, packs kept) when the folder's packs together (earlier calls' included) exceed this many MiB.",
)
@click.option("--force", is_flag=True, help="Replace packs that exist.")
@friendly_errors
def pack(
    files: tuple[Path, ...], out: Path, float16: tuple[str, ...], brief_descriptions: bool, max_size: float | None, force: bool
):
    """Pack focalstack files small for transport: images as lossless WebP, scene descriptions compressed,
    everything else exact (or half floats where --float16 says; descriptions shortened where
    --brief-descriptions says). `focalstack-data unpack` makes the same files again: same datasets, values,
    attributes and layout.

    \b
    Example:
      focalstack-data pack data/train.h5 data/test.h5 --float16 depth -o bundle/ --max-size 60
      focalstack-data unpack bundle/ -o data/      # on the other machine
    """
    sources = list(files)
    for f in sources:
        if not f.is_file():
            raise click.ClickException(f"{f}: no such file")
    names = [pack_name(f) for f in sources]
    if len(set(names)) != len(names):
        raise click.ClickException("two input files have the same name; their packs would collide")
    with output_folder(out):
        targets = [out / n for n in names]
        _refuse_overlap(sources, targets)
        existing = [t for t in targets if t.exists()]
        if existing and not force:
            raise click.ClickException(f"{existing[0]}: exists; pass --force to replace it")
        earlier = _earlier_manifest(out)
        rows = []
        for f, target in zip(sources, targets):
            stats = pack_file(f, target, tuple(float16), brief_descriptions=brief_descriptions)
            rows.append(stats.to_dict())
            errors = "; ".join(
                [
                    *(
                        f"{k} as float16: max error {v['max_abs']:.3g} (relative {v['max_rel']:.2g})"
                        for k, v in stats.float16_error.items()
                    ),
                    *(f"{k} computed again from the half floats: moved up to {v:.3g}" for k, v in stats.rederived_change.items()),
                ]
            )
            click.echo(
                f"{target}: {stats.scenes} scenes, {stats.source_bytes / MIB:.2f} -> {stats.pack_bytes / MIB:.2f} MiB "
                f"({stats.pack_bytes / max(stats.source_bytes, 1):.0%}){'; ' + errors if errors else ''}"
            )
        now = {r["pack"] for r in rows}  # earlier calls' packs that this one did not replace, and that are still there
        rows = [r for r in earlier if r["pack"] not in now and (out / r["pack"]).is_file()] + rows
        total = sum(r["pack_bytes"] for r in rows)
        manifest = {"files": rows, "total_bytes": total}
        write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
        click.echo(f"{out}: {len(rows)} pack(s), {sum(r['scenes'] for r in rows)} scenes, {total / MIB:.2f} MiB in all")
        listed = {r["pack"] for r in rows}
        unlisted = sorted(p for p in out.glob(f"*{SUFFIX}") if p.name not in listed)
        if unlisted:  # unpack takes every pack of a folder: they travel, and count, too
            shown = ", ".join(p.name for p in unlisted[:3]) + (f" and {len(unlisted) - 3} more" if len(unlisted) > 3 else "")
            click.echo(
                f"warning: {out}: {shown} not in its manifest (packed by an older version?); unpack takes them too", err=True
            )
            total += sum(p.stat().st_size for p in unlisted)
        if max_size is not None and total > max_size * MIB:
            raise click.ClickException(
                f"the packs take {total / MIB:.2f} MiB, over --max-size {max_size:g} MiB: pack fewer scenes or files"
            )


def _earlier_manifest(out: Path) -> list[dict]:
    """The rows of the manifest an earlier call left in ``out``, so that the manifest, and --max-size, cover
    the whole folder; read before packing, so that a broken one stops the call before any work."""
    path = out / "manifest.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["files"]
        if not isinstance(rows, list):
            raise TypeError("'files' is not a list")
        for row in rows:
            if not (
                isinstance(row, dict)
                and isinstance(row.get("pack"), str)
                and Path(row["pack"]).name == row["pack"]
                and all(isinstance(row.get(k), int) and row[k] >= 0 for k in ("scenes", "pack_bytes"))
            ):
                raise ValueError(f"entry {json.dumps(row)[:80]} is not a pack's name, scenes and pack_bytes")
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise click.ClickException(f"{path}: not a pack manifest ({exc}); remove it or pack into another folder") from None
    return rows


def _unpacked_name(pack: Path) -> str:
    """The name of the file ``pack`` was made from (it records it) while the pack keeps the name pack gave it;
    else (a pack renamed, say to tell two packs of train.h5 apart) the pack's own name with .h5."""
    import h5py

    fallback = pack.name[: -len(SUFFIX)] + ".h5" if pack.name.endswith(SUFFIX) else pack.stem + ".h5"
    try:
        with h5py.File(pack, "r") as p:
            name = p.attrs.get("source_name")
    except OSError:
        return fallback  # unpack_file names what is wrong with it
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    plain = isinstance(name, str) and Path(name).name == name and "\\" not in name and not name.startswith(".")
    if not plain or Path(name).suffix.lower() not in (".h5", ".hdf5", ".hdf", ".he5") or pack_name(name) != pack.name:
        return fallback  # only an HDF5 file's plain name is taken from a file that came from elsewhere
    return name


@click.command("unpack", cls=Command, context_settings=CONTEXT)
@click.argument("packs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the focalstack files (each under its original name); created if missing.",
)
@click.option("--force", is_flag=True, help="Replace files that exist.")
@friendly_errors
def unpack(packs: tuple[Path, ...], out: Path, force: bool):
    """Make the focalstack files of packs (NAME.pack.h5, or folders of them) again.

    Each file is written under a temporary name and renamed when complete.
    """
    found: list[Path] = []
    for p in packs:
        if p.is_dir():
            inside = sorted(p.glob(f"*{SUFFIX}"))
            if not inside:
                raise click.ClickException(f"{p}: holds no *{SUFFIX} file")
            found += inside
        elif p.is_file():
            found.append(p)
        else:
            raise click.ClickException(f"{p}: no such file or folder")
    with output_folder(out):
        targets = [out / _unpacked_name(p) for p in found]
        for k, target in enumerate(targets):
            if target in targets[:k]:
                first = found[targets.index(target)]
                raise click.ClickException(
                    f"{first} and {found[k]} would both unpack to {target.name}; unpack them into separate folders"
                )
        _refuse_overlap(found, targets)
        existing = [t for t in targets if t.exists()]
        if existing and not force:
            raise click.ClickException(f"{existing[0]}: exists; pass --force to replace it")
        for p, target in zip(found, targets):
            path, notes = unpack_file(p, target)
            for note in notes:
                click.echo(f"{path}: {note}")
            click.echo(f"{path}: unpacked from {p}")
