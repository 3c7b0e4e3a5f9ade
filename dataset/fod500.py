"""FoD500 ("Focus on defocus", Maximov et al. 2020) folders: import into a schema file, export to them.

The released archive unpacks to one flat folder. Scene i (six digits) is

    {i:06d}_{j:02d}All.tif   slice j = 0..4, 8-bit RGB, 256 x 256, focused at 0.1, 0.15, 0.3, 0.7, 1.5 m
    {i:06d}Dpt.exr           depth in metres in channel R (half-float RGB)
    {i:06d}Aif.tif           all-in-focus image (only in DEReD's re-rendered copy)

Loaders match the endings ``All.tif``, ``Dpt.exr`` (and ``Aif.tif``) and read the scene index from the
first six characters. Scenes 0-399 are the training split, 400-499 the test split (DFV's loader takes every
scene from 400 on as test, so import does too). The camera: f = 2.9
mm, f/1, sensor width 3.1 mm.

Import keeps what the folder has and nothing more: no defocus maps are stored (they are derived from
depth by the textbook thin lens, ``optics`` model ``thin_lens``, as FoD500's own code does, or for a
folder that export wrote by the model its focalstack.json records, and recomputed by readers), the AiF
image and its Canny edges only where the folder has AiF images, and depth 0 means 'no ground truth'
(DFV's protocol ignores such pixels).

Export writes a file's scenes under the same names, and nothing else where FoD500 loaders look: they take
every ``*.tif`` and ``*.exr`` of the folder (AiFDepthNet groups them five and one at a time in sorted
order), so the extras (documented in the folder's ``focalstack.json``) go into its ``extra/`` subfolder:
``{i:06d}Aif.tif``, one float32 EXR of signed defocus per slice ``{i:06d}_{j:02d}Def.exr`` (channel R,
pixels, + behind focus) and ``{i:06d}Extra.npz`` with every other schema dataset of the scene under its
schema name. Layout ``dered`` puts ``{i:06d}Aif.tif`` beside the slices, where DEReD's loader reads it
(and AiFDepthNet's no longer works). TIFFs are uncompressed: OpenCV writes LZW by default, which imageio
with tifffile but without imagecodecs cannot read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from . import exr, provenance
from .files import default_mode, write_text_atomic
from .groundtruth import CANNY_BLUR_SIGMA, CANNY_HIGH, CANNY_LOW, canny_edges, stored_defocus_maps
from .importing import mark_bad_as_no_data, write_imported
from .optics import DEFOCUS_MODELS
from .provenance import ABSENT, GroundTruth
from .record import SceneRecord
from .schema import DatasetError

CAMERA = {"f_number": 1.0, "focal_length_mm": 2.9, "sensor_width_mm": 3.1}
FOCUS_DISTANCES = (0.1, 0.15, 0.3, 0.7, 1.5)
SIZE = (256, 256)  # (H, W)
# 'all': every scene found. FoD500's test scenes are 400-499; DFV's loader (int(name[:6]) < 400 is training)
# reads every scene from 400 on as test, and so does import, so that an export's test set of over 100 scenes
# comes back whole.
SPLITS = {"train": range(0, 400), "test": range(400, 10**6)}
DEFOCUS_MODEL = "thin_lens"  # defocus-net's blur target: |d - s| / d * f^2 / (N (s - f))
# ASCII digits only: int() reads other scripts' digits too, so a name in full-width digits would be taken for
# another scene's file.
_SLICE = re.compile(r"^([0-9]{6})_([0-9]{2})All\.tif$")
_INDEXED = re.compile(r"^([0-9]{6})(Dpt\.exr|Aif\.tif)$")
ENDINGS = ("All.tif", "Dpt.exr", "Aif.tif")
EXTRA_FOLDER = "extra"  # where export puts what FoD500 does not have, out of its loaders' sight
LAYOUTS = ("fod500", "dered")  # dered: the AiF images beside the slices, as DEReD's copy has them
TEST_START = 400  # FoD500's test split is scenes 400-499 (DFV: int(name[:6]) < 400 is training)
# What peers' loaders assume (docs/design.md, checked in their code): said when an export differs.
PEER_ASSUMPTIONS = (
    "DFV's dataloader/FoD500.py hard-codes 256 x 256 and five slices; AiFDepthNet's "
    "DefocusNet_gen_txt.py takes five TIFFs per scene"
)
_TIFF_UNCOMPRESSED = [cv2.IMWRITE_TIFF_COMPRESSION, 1]


@dataclass
class SceneFiles:
    """The files of one FoD500 scene found in a folder."""

    index: int
    slices: dict[int, Path] = field(default_factory=dict)
    depth: Path | None = None
    aif: Path | None = None
    conflicts: list[str] = field(default_factory=list)  # one line per second file for the same role


@dataclass
class ImportSummary:
    path: Path
    imported: list[int]  # scene indices, in file order
    skipped: list[str]  # one line per skipped scene: the file and what is wrong with it
    has_aif: bool
    repaired: list[str] = field(default_factory=list)  # one line per scene with pixels marked as no data


class BadScene(DatasetError):
    """One scene of the input cannot be imported; the message names the file and what is wrong."""


def scan_folder(folder: Path) -> tuple[dict[int, SceneFiles], list[str]]:
    """Scenes found in ``folder`` by the FoD500 endings (AiF images also in its ``extra/`` subfolder, where
    export puts them), and the names that end like FoD500 files but do not follow its pattern (each a
    one-line complaint)."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    scenes: dict[int, SceneFiles] = {}
    odd = []
    extra = folder / EXTRA_FOLDER
    aif_extras = sorted(extra.glob("*Aif.tif")) if extra.is_dir() else []
    for p in [*sorted(folder.iterdir()), *aif_extras]:
        if not p.name.endswith(ENDINGS):
            continue
        m, n = _SLICE.match(p.name), _INDEXED.match(p.name)
        if not (m or n) or not p.is_file():
            odd.append(
                f"{p}: name does not follow FoD500's pattern ({{i:06d}}_{{j:02d}}All.tif, {{i:06d}}Dpt.exr, {{i:06d}}Aif.tif)"
            )
            continue
        if m:
            sf = scenes.setdefault(int(m.group(1)), SceneFiles(int(m.group(1))))
            sf.slices[int(m.group(2))] = p
            continue
        assert n is not None
        sf = scenes.setdefault(int(n.group(1)), SceneFiles(int(n.group(1))))
        if n.group(2) == "Dpt.exr":
            sf.depth = p
        elif sf.aif is None:
            sf.aif = p
        else:  # beside the slices and in extra/: which one is meant is not ours to guess
            sf.conflicts.append(f"{sf.aif} and {p}: two AiF images of scene {sf.index}; keep one")
    return scenes, odd


def _check_files(sf: SceneFiles, folder: Path, want_aif: bool) -> None:
    if sf.conflicts:
        raise BadScene(sf.conflicts[0])
    for j in range(len(FOCUS_DISTANCES)):
        if j not in sf.slices:
            raise BadScene(
                f"{folder / f'{sf.index:06d}_{j:02d}All.tif'}: missing (scene {sf.index} has slices "
                f"{sorted(sf.slices) or 'none'}; FoD500 has 0 to {len(FOCUS_DISTANCES) - 1})"
            )
    extra = sorted(set(sf.slices) - set(range(len(FOCUS_DISTANCES))))
    if extra:
        raise BadScene(f"{sf.slices[extra[0]]}: slice {extra[0]} beyond FoD500's {len(FOCUS_DISTANCES)} slices")
    if sf.depth is None:
        raise BadScene(f"{folder / f'{sf.index:06d}Dpt.exr'}: missing (scene {sf.index} has no depth)")
    if want_aif and sf.aif is None:
        raise BadScene(f"{folder / f'{sf.index:06d}Aif.tif'}: missing (other scenes of the folder have AiF images)")


def read_image(path: Path) -> np.ndarray:
    """An 8-bit RGB image (H, W, 3) of FoD500's size; an alpha channel is dropped. BadScene otherwise."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadScene(f"{path}: not a readable image")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in (3, 4):
        raise BadScene(f"{path}: {img.dtype} image of shape {img.shape}, expected 8-bit RGB")
    if img.shape[:2] != SIZE:
        raise BadScene(f"{path}: {img.shape[1]} x {img.shape[0]} px, expected FoD500's {SIZE[1]} x {SIZE[0]}")
    return np.ascontiguousarray(cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB))


def read_depth(path: Path, notes: list[str] | None = None) -> np.ndarray:
    """Channel R of a depth EXR as float32 metres (H, W); BadScene unless it is FoD500's size and holds a
    depth > 0 somewhere. A few values that are not finite or negative become 0 (no ground truth), each such
    file noted in ``notes``."""
    try:
        channels = exr.read_channels(path)
    except DatasetError as exc:
        raise BadScene(str(exc)) from None
    if "R" not in channels:
        raise BadScene(f"{path}: no channel R (it has {', '.join(sorted(channels)) or 'none'}); FoD500 keeps depth in R")
    depth = channels["R"]
    if depth.dtype not in (np.float16, np.float32) or depth.shape != SIZE:
        raise BadScene(
            f"{path}: channel R is {depth.dtype} of {depth.shape[1]} x {depth.shape[0]} px, expected "
            f"half or float of FoD500's {SIZE[1]} x {SIZE[0]}"
        )
    depth, n = mark_bad_as_no_data(depth, str(path), "depth", bad=BadScene)
    if not np.any(depth > 0):  # 0 is FoD500's 'no ground truth': a map of nothing else is no depth map
        raise BadScene(f"{path}: every depth value is 0 or unusable (no ground truth anywhere); is the file broken?")
    if n and notes is not None:
        notes.append(f"{path}: {n} depth pixel(s) not finite or negative, marked as no data")
    return depth


def declaration(has_aif: bool, defocus_model: str = DEFOCUS_MODEL) -> provenance.Declaration:
    """What an imported FoD500 file holds."""
    aif = GroundTruth("imported", method="FoD500 {i:06d}Aif.tif (DEReD)") if has_aif else ABSENT
    return {
        "aif": aif,
        "depth": GroundTruth("imported", method="FoD500 {i:06d}Dpt.exr, channel R", no_data=0.0),
        "defocus": GroundTruth("derived", False, provenance.RECOMPUTABLE["defocus"], defocus_model),
        "edges": GroundTruth("derived", True, ("aif",), "canny") if has_aif else ABSENT,
        **{name: GroundTruth("imported", method="FoD500's published camera") for name in CAMERA},
        "disparity": ABSENT,
    }


def read_scene(
    sf: SceneFiles, has_aif: bool, folder: Path, notes: list[str] | None = None, defocus_model: str = DEFOCUS_MODEL
) -> SceneRecord:
    _check_files(sf, folder, has_aif)
    _refuse_another_camera(folder / EXTRA_FOLDER / f"{sf.index:06d}Extra.npz", sf.index)
    assert sf.depth is not None and (sf.aif is not None or not has_aif)  # _check_files says so otherwise
    stack = np.stack([read_image(sf.slices[j]) for j in range(len(FOCUS_DISTANCES))])
    repairs: list[str] = []  # said only once the whole scene has read: a skipped scene is not repaired
    depth = read_depth(sf.depth, repairs)
    aif = read_image(sf.aif) if sf.aif is not None and has_aif else None
    focus = np.asarray(FOCUS_DISTANCES, dtype=np.float32)
    files = [p.name for p in (*sf.slices.values(), sf.depth, *([sf.aif] if sf.aif is not None and aif is not None else []))]
    n, f, w = CAMERA["f_number"], CAMERA["focal_length_mm"], CAMERA["sensor_width_mm"]
    rec = SceneRecord(
        stack=stack,
        aif=aif,
        depth=depth,
        defocus=stored_defocus_maps(depth, focus, n, f, w, defocus_model, no_data=0.0),
        edges=canny_edges(aif) if aif is not None else None,
        focus_distance=focus,
        f_number=n,
        focal_length_mm=f,
        sensor_width_mm=w,
        seed=-1,
        scene=json.dumps({"source": "FoD500", "index": sf.index, "files": sorted(files)}),
        stack_size=len(FOCUS_DISTANCES),
    )
    if notes is not None:
        notes += repairs
    return rec


def _refuse_another_camera(extra: Path, index: int) -> None:
    """BadScene when ``export fod500`` recorded in the scene's extras a camera or focus distances other than
    FoD500's: imported as FoD500, the scene would take FoD500's, and its derived defocus would be wrong."""
    if not extra.is_file():
        return  # FoD500's own folders have no extras
    try:
        with np.load(extra) as arrays:
            held = {name: np.asarray(arrays[name], np.float32) for name in (*CAMERA, "focus_distance") if name in arrays}
    except (OSError, ValueError, KeyError) as exc:
        raise BadScene(f"{extra}: not readable ({exc})") from None
    want: dict[str, np.ndarray] = {name: np.asarray(v, np.float32) for name, v in CAMERA.items()}
    want["focus_distance"] = np.asarray(FOCUS_DISTANCES, np.float32)
    other = [
        f"{name} {', '.join(f'{x:g}' for x in np.ravel(value))}"
        for name, value in held.items()
        if np.shape(value) != np.shape(want[name]) or not np.array_equal(value, want[name])
    ]
    if other:
        raise BadScene(
            f"{extra}: scene {index} was exported with {'; '.join(other)}, not FoD500's camera: imported as FoD500 "
            "its defocus would be wrong (read the file it was exported from, named in focalstack.json)"
        )


def import_fod500(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str = "all",
    skip_bad: bool = False,
    progress: Callable | None = None,
) -> ImportSummary:
    """Import FoD500 ``folder`` (scenes of ``split``: train, test or all) into a new schema file ``out``,
    written under a temporary name and renamed at the end. Bad scenes raise BadScene, or with
    ``skip_bad`` are left out and listed in the summary. ``progress(iterable, total)`` wraps the loop."""
    folder, out = Path(folder), Path(out)
    if split not in (*SPLITS, "all"):
        raise DatasetError(f"--split {split!r}: expected train, test or all")
    scenes, odd = scan_folder(folder)
    if odd and not skip_bad:
        raise BadScene(odd[0])
    picked = [sf for i, sf in sorted(scenes.items()) if split == "all" or i in SPLITS[split]]
    if not picked:
        raise DatasetError(
            f"{folder}: no FoD500 scenes{'' if split == 'all' else f' of the {split} split'} (files ending All.tif / Dpt.exr)"
        )
    has_aif = any(sf.aif is not None for sf in picked)
    model = exported_defocus_model(folder)
    if model != DEFOCUS_MODEL:  # one model per file: FoD500's own scenes copied in beside the export would take it
        own = next((sf.index for sf in picked if not (folder / EXTRA_FOLDER / f"{sf.index:06d}Extra.npz").is_file()), None)
        if own is not None:
            raise DatasetError(
                f"{folder}: scene {own} has no {EXTRA_FOLDER}/{own:06d}Extra.npz, yet focalstack.json says the folder "
                f"was exported from a file of defocus model {model!r}: import FoD500's own scenes and the export "
                "into separate files"
            )
    repaired: list[str] = []
    done, skipped = write_imported(
        out,
        picked,
        lambda sf: read_scene(sf, has_aif, folder, repaired, model),
        n_slices=len(FOCUS_DISTANCES),
        height=SIZE[0],
        width=SIZE[1],
        attrs=_attrs(folder, split, has_aif, model),
        ground_truth=declaration(has_aif, model),
        optional=("stack_size",),
        skip_bad=skip_bad,
        progress=progress,
        bad=BadScene,
        skipped=odd,
    )
    imported = [sf.index for sf in done]
    return ImportSummary(out, imported, skipped, has_aif, repaired)


def exported_defocus_model(folder: Path) -> str:
    """The defocus model of the file that ``export fod500`` wrote ``folder`` from (its focalstack.json says),
    so that a round trip derives the same defocus maps (a Cycles render's differ from the thin lens's by up to
    3 %); FoD500's own folders, which have no focalstack.json, take the thin lens."""
    readme = folder / "focalstack.json"
    if not readme.is_file():
        return DEFOCUS_MODEL
    try:
        text = json.loads(readme.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{readme}: not readable as the JSON that export writes ({exc})") from None
    model = text.get("defocus_model") if isinstance(text, dict) else None
    if model is None:  # the exported file had no camera model of its own (an import of DDFF-12, say)
        return DEFOCUS_MODEL
    if model not in DEFOCUS_MODELS:
        raise DatasetError(f"{readme}: defocus_model {model!r}, expected one of {', '.join(DEFOCUS_MODELS)}")
    return model


def _attrs(folder: Path, split: str, has_aif: bool, defocus_model: str = DEFOCUS_MODEL) -> dict:
    config = {
        "importer": "fod500",
        "source_folder": str(folder.resolve()),
        "split": split,
        **CAMERA,
        "focus_distances": list(FOCUS_DISTANCES),
        "height": SIZE[0],
        "width": SIZE[1],
        "defocus_model": defocus_model,
    }
    if has_aif:
        config.update(canny_low=CANNY_LOW, canny_high=CANNY_HIGH, canny_blur_sigma=CANNY_BLUR_SIGMA)
    return {
        "generator_version": provenance.generator_version(),
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "FoD500",
        "config": config,
        "defocus_model": defocus_model,
    }


# -- export ---------------------------------------------------------------------------------------------
EXPORTED = ("stack", "aif", "depth", "defocus")  # written as images; every other dataset goes to Extra.npz


@dataclass
class ExportSummary:
    folder: Path
    indices: list[int]  # FoD500 index of each exported scene, in file order
    differences: list[str]  # how the file's camera or images differ from FoD500's (empty: they match)


def differences_from_fod500(f) -> list[str]:
    """How an open ``FocalStackFile``'s camera and images differ from FoD500's, one phrase each."""
    out = []
    if f.image_size != SIZE:
        out.append(f"{f.image_size[1]} x {f.image_size[0]} px (FoD500: {SIZE[1]} x {SIZE[0]})")
    if f.n_slices != len(FOCUS_DISTANCES):
        out.append(f"{f.n_slices} slices (FoD500: {len(FOCUS_DISTANCES)})")
    if not f.has("depth"):
        out.append("no depth, so no {i:06d}Dpt.exr (every FoD500 loader reads one per scene)")
    if len(f):
        for name, want in CAMERA.items():
            if not f.has(name):
                out.append(f"no {name} (FoD500: {want:g})")
                continue
            have = np.unique(f.read_all(name))
            if not np.array_equal(have, [np.float32(want)]):
                out.append(f"{name} {', '.join(f'{x:g}' for x in have)} (FoD500: {want:g})")
        focus = f.read_all("focus_distance")
        if focus.shape[1] != len(FOCUS_DISTANCES) or not (focus == np.asarray(FOCUS_DISTANCES, np.float32)).all():
            out.append(f"focus distances other than FoD500's {', '.join(f'{x:g}' for x in FOCUS_DISTANCES)} m")
    return out


def export_fod500(
    path: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    start: int = 0,
    layout: str = "fod500",
    progress: Callable | None = None,
) -> ExportSummary:
    """Write the complete scenes of schema file ``path`` into ``folder`` in FoD500's names and formats,
    numbered from ``start``, the extras laid out by ``layout`` (``LAYOUTS``). ``folder`` must not exist or
    be empty; it is filled under a temporary name (beside a new folder, inside an empty one) and then renamed
    into place (a new folder) or its entries moved in (an empty one, which is kept: it may be the working
    folder, as with ``-o .``), so a failed export leaves nothing half-written."""
    if layout not in LAYOUTS:
        raise DatasetError(f"--layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    from .reader import FocalStackFile

    folder = Path(folder).absolute()  # '-o .' has a name and a parent only as an absolute path
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DatasetError(f"{folder}: exists and is not an empty folder; export into a new or empty one")
    if not folder.parent.is_dir():
        raise DatasetError(f"{folder}: folder {folder.parent} does not exist")
    if start < 0:
        raise DatasetError(f"--start {start}: expected a scene number >= 0")
    with FocalStackFile(path) as f:
        n = len(f)
        if n == 0:
            raise DatasetError(f"{path}: no complete scene to export")
        if start + n > 10**6:
            raise DatasetError(f"--start {start}: {n} scenes would need numbers beyond FoD500's six digits")
        if f.n_slices > 100:
            raise DatasetError(f"{path}: {f.n_slices} slices; FoD500's names have two digits for the slice")
        summary = ExportSummary(folder, list(range(start, start + n)), differences_from_fod500(f))
        # inside an existing folder, the moves stay on its file system (a mount point) and need no rights above it
        where = folder if folder.exists() else folder.parent
        tmp = Path(tempfile.mkdtemp(prefix="." + folder.name + ".", suffix=".tmp", dir=where))
        try:
            _write_readme(tmp / "focalstack.json", f, path, start, layout)
            (tmp / EXTRA_FOLDER).mkdir()
            for k in (progress or (lambda it, total: it))(range(n), n):
                rec = f[k]
                _check_half_depth(rec, path, k)
                write_scene(tmp, start + k, rec, layout)
            if folder.exists():
                _fill_empty_folder(tmp, folder)
            else:
                os.chmod(tmp, default_mode(0o777))  # mkdtemp's folder is private: a plain mkdir's mode
                os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return summary


def _fill_empty_folder(tmp: Path, folder: Path) -> None:
    """Move the finished export in ``tmp`` into the existing empty ``folder`` (kept, not replaced: it may be
    the shell's working folder, as with ``-o .``), focalstack.json last; on failure, take back what moved."""
    entries = sorted(tmp.iterdir(), key=lambda p: p.name == "focalstack.json")
    moved: list[Path] = []
    try:
        for entry in entries:
            moved.append(folder / entry.name)  # first: an interrupt right after the move still takes it back
            os.replace(entry, folder / entry.name)
    except BaseException:
        for path in moved:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise
    tmp.rmdir()


HALF_MAX = float(np.finfo(np.float16).max)  # 65504: the farthest depth FoD500's half-float Dpt.exr holds


def _check_half_depth(rec: SceneRecord, path, scene: int) -> None:
    """DatasetError when the scene's depth exceeds what a half float holds: it would be written as inf,
    which FoD500's loaders read as depth and this importer refuses."""
    if rec.depth is None:
        return
    depth = np.asarray(rec.depth, np.float64)
    far = depth[np.isfinite(depth) & (depth > HALF_MAX)]
    if far.size:
        raise DatasetError(
            f"{path}: scene {scene} has {far.size} depth value(s) up to {far.max():.6g} m, beyond the {HALF_MAX:g} m "
            "a half-float Dpt.exr holds"
        )


def write_scene(folder: Path, i: int, rec: SceneRecord, layout: str = "fod500") -> None:
    """One scene as FoD500 files in ``folder`` and the documented extras in its ``extra/`` subfolder (the
    AiF image beside the slices with layout ``dered``)."""
    extra = folder / EXTRA_FOLDER
    for j, img in enumerate(rec.stack):
        _write_image(folder / f"{i:06d}_{j:02d}All.tif", img)
    if rec.depth is not None:
        half = rec.depth.astype(np.float16)
        exr.write_channels(folder / f"{i:06d}Dpt.exr", {"R": half, "G": half, "B": half})
    if rec.aif is not None:
        _write_image((folder if layout == "dered" else extra) / f"{i:06d}Aif.tif", rec.aif)
    if rec.defocus is not None:
        for j, d in enumerate(rec.defocus):
            exr.write_channels(extra / f"{i:06d}_{j:02d}Def.exr", {"R": np.asarray(d, np.float32)})
    arrays = {name: np.asarray(value) for name, value in rec.arrays().items() if name not in EXPORTED}
    with open(extra / f"{i:06d}Extra.npz", "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _write_image(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]), _TIFF_UNCOMPRESSED):
        raise DatasetError(f"{path}: cannot write image")


def _write_readme(path: Path, f, source, start: int, layout: str = "fod500") -> None:
    gt = f.ground_truth
    aif = "{i:06d}Aif.tif" if layout == "dered" else f"{EXTRA_FOLDER}/{{i:06d}}Aif.tif"
    text = {
        "format": "FoD500 folder written by focalstack-data export fod500",
        "layout": layout,
        "source_file": str(Path(source).resolve()),
        "scenes": len(f),
        "first_index": start,
        "files": {
            "{i:06d}_{j:02d}All.tif": "slice j, 8-bit RGB, uncompressed TIFF, in focus_distance order",
            "{i:06d}Dpt.exr": "planar depth in metres, half float, in R (G and B the same)",
            aif: "all-in-focus image, 8-bit RGB, uncompressed TIFF (as DEReD names it)",
            f"{EXTRA_FOLDER}/{{i:06d}}_{{j:02d}}Def.exr": "signed blur-circle diameter of slice j in pixels (+ behind "
            "the focal plane), float32, in R",
            f"{EXTRA_FOLDER}/{{i:06d}}Extra.npz": "every other dataset of the scene, under its focalstack schema name (numpy)",
        },
        "ground_truth": {name: g.describe() for name, g in gt.items()},
        "defocus_model": f.attrs.get("defocus_model"),
        "differences_from_fod500": differences_from_fod500(f),
    }
    write_text_atomic(path, json.dumps(text, indent=2) + "\n")
