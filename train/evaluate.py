"""Evaluate a checkpoint on held-out files, under one or more evaluation protocols (``protocols``).

One row per protocol, file and setting: ``All`` feeds every slice of each scene in focus order;
``Random`` feeds a seeded random number of slices (1 to all) in random order (the paper's "Random"
setting). The network runs once per batch and every requested protocol scores the same outputs; each
protocol says how it clips, masks and averages. Batches never mix files, so files of different image
sizes and slice counts are evaluated in one call.

Ground truth a file does not hold (schema v2 imports: FoD500 has no AiF image; DDFF-12 has no camera,
hence no defocus maps, no AiF image, but its own disparity) is asked of the file, never assumed: a
metric that needs it is None ('-' in tables, null in JSON), with one note per file saying what is
missing. The same holds for a model without an AiF branch. Pixels whose ground truth is not finite, or
equals the value the file declares as "no data", count as ground truth 0, which every protocol ignores.

Results are printed as Markdown (one table per protocol, its units in the column headers; with
``compare_published`` the published rows under the same columns, each marked with its paper and table)
and written as metrics.md, metrics.csv (one value per line: protocol, file, setting, metric, unit) and
metrics.json.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import Norm, first_repeat, make_loader
from .device import resolve_amp, resolve_device
from .distributed import is_writer, process_group
from .eval_data import EvalSamples, inspect_eval_source, prepare_eval_batch
from .inference import batch_outputs
from .metrics import MeanMeter, flat_area_mask
from .plan import REGIONS, SETTINGS, plan_eval, plan_subsets
from .protocols import Protocol, resolve_protocols
from .results import MISSING, Evaluation, write_results

# -- evaluation ---------------------------------------------------------------------------------------


def _lacking_notes(path: str, protocol: Protocol, held: frozenset[str], outputs: frozenset[str]) -> list[str]:
    """One line per reason some of ``protocol``'s columns cannot be computed on this file."""
    lacking = protocol.lacking(held, outputs)
    if not lacking:
        return []
    if len(lacking) == len(protocol.columns) and protocol.requires:
        missing = sorted({n for c in lacking for n in c.needs if n not in held})
        return [
            f"{path}: {protocol.requires}; this file has no {', '.join(missing)}: every {protocol.name} metric is '{MISSING}'"
        ]
    notes = []
    no_truth = [c for c in lacking if not set(c.needs) <= held]
    for name in sorted({n for c in no_truth for n in c.needs if n not in held}):
        keys = [c.key for c in no_truth if name in c.needs]
        notes.append(
            f"{path}: no {name} ground truth: {protocol.name} {', '.join(keys)} {'is' if len(keys) == 1 else 'are'} '{MISSING}'"
        )
    return notes


def _skipped_notes(path: str, protocol: Protocol, meter: MeanMeter, n: int, region: str = "all") -> list[str]:
    """A line per group of columns whose mean leaves out scenes without a pixel under their mask (in
    ``region``: a scene without a flat area has none there)."""
    groups: dict[int, list[str]] = {}
    for c in protocol.columns:
        if meter.skipped.get(c.key):
            groups.setdefault(meter.skipped[c.key], []).append(c.key)
    where = "" if region == "all" else f" in the {region} region"
    return [
        f"{path}: {protocol.name} {', '.join(keys)}{where}: {k} of {n} scenes have no ground-truth pixel under "
        f"the mask; {'the mean is over the others' if k < n else 'no value'}"
        for k, keys in groups.items()
    ]


def in_region(truth: dict, region: str) -> dict | None:
    """The ground truth of a batch restricted to ``region``: depth outside it set to 0 (no ground truth,
    for every protocol), other ground truth dropped; None when the batch cannot tell the region."""
    if region == "all":
        return truth
    if region != "flat":
        raise ValueError(f"region {region!r}: expected one of {', '.join(REGIONS)}")
    if "aif" not in truth or "depth_m" not in truth:
        return None
    flat = flat_area_mask(truth["aif"])
    return {"depth_m": torch.where(flat, truth["depth_m"], torch.zeros_like(truth["depth_m"]))}


@torch.no_grad()
def evaluate_model(
    model,
    norm: Norm,
    data: list[str],
    protocols: list[Protocol],
    settings: tuple[str, ...] = SETTINGS,
    batch_size: int = 4,
    device: torch.device = torch.device("cpu"),
    amp_dtype: torch.dtype | None = None,
    seed: int = 0,
    workers: int = 0,
    max_scenes: int | None = None,
    align_slices: bool = False,
    progress: bool = False,
    model_label: str = "the model",
    stack_sizes: tuple[int, ...] = (),
    orders: tuple[str, ...] = ("sorted",),
    regions: tuple[str, ...] = ("all",),
    group=None,
    trained_camera: dict | None = None,
) -> Evaluation:
    """Run ``model`` (outputs as ``models.fod``'s, normalised by ``norm``; ``has_aif`` says whether it
    has an AiF branch) over each file of ``data`` and score every batch under every protocol. Files are
    read as they are: different sizes and slice counts are fine, and ground truth a file lacks gives
    None, with a note. ``model_label`` names the model in notes.

    Besides ``settings``, ``stack_sizes`` x ``orders`` evaluate stacks of K of each scene's slices
    (``data.plan_subsets``; rows get ``stack_size`` and ``order``), and ``regions`` score depth over part
    of each image too: ``flat`` is the large texture-less areas (``metrics.flat_area_mask`` of the true AiF
    image; only depth columns, on files that hold an AiF image). Every row has a ``region``.
    ``trained_camera`` (a checkpoint's ``camera``) notes files whose blur in pixels its training data lacked.

    ``group`` (``distributed.Group``, under torchrun): each process runs its round-robin part of every
    plan's batches, and the per-scene sums, counts and skipped scenes are gathered over all of them."""
    sources = [inspect_eval_source(p) for p in data]
    _check_request(sources, stack_sizes, regions)
    outputs = frozenset({"depth", "defocus"} | ({"aif"} if getattr(model, "has_aif", False) else set()))
    run = _EvalRun(
        model,
        norm,
        protocols,
        tuple(regions),
        device,
        amp_dtype,
        workers,
        progress,
        group,
        EvalSamples(sources, align_slices=align_slices),
        outputs,
    )
    no_output = sorted({c.key for p in protocols for c in p.columns if c.output not in outputs})
    if no_output:
        run.notes[
            f"{model_label} has no AiF branch: {', '.join(no_output)} {'is' if len(no_output) == 1 else 'are'} '{MISSING}'"
        ] = None
    rows: list[dict] = []
    infos = [s.info for s in sources]
    try:
        for fi, src in enumerate(sources):
            for p in protocols:
                run.notes.update(dict.fromkeys(_lacking_notes(src.info.path, p, src.ground_truth, outputs)))
            n = src.info.n_scenes if max_scenes is None else min(src.info.n_scenes, max_scenes)
            if trained_camera:  # the camera of the model's training data: a file of other blur in pixels is noted
                run.notes.update(
                    dict.fromkeys(training_camera_notes(trained_camera, src.info.path, src.info.camera, src.info.image_size))
                )
            if src.info.incomplete:
                run.notes[
                    f"{src.info.path}: {src.info.incomplete} incomplete scene(s) (a render stopped or still running) "
                    f"left out; {src.info.n_scenes} complete"
                ] = None
            for labels, batches in _file_plans(infos, fi, n, settings, stack_sizes, orders, batch_size, seed):
                scored = sum(len(b) for b in batches)  # a --stack-size row leaves out scenes with fewer slices
                if scored < n:
                    run.notes[
                        f"{src.info.path}: --stack-size {labels.get('stack_size')}: {n - scored} of {n} scenes have fewer "
                        f"distinct slices and are left out{'; no value' if not scored else ''}"
                    ] = None
                label = f"{Path(src.info.path).name} {' '.join(str(v) for v in labels.values())}"
                rows += run.rows(src, labels, scored, run.score(batches, label))
    finally:
        run.dataset.close()
    if run.non_finite:
        run.notes[
            f"{model_label} gave depth that is not finite at {run.non_finite} pixel(s): protocols that clip "
            "predictions to a range (dfv, aifdepthnet) scored them clipped; other columns are not finite (null in JSON)"
        ] = None
    return Evaluation(list(protocols), rows, list(run.notes))


def _check_request(sources: list, stack_sizes: tuple[int, ...], regions: tuple[str, ...]) -> None:
    """ValueError for what the files cannot answer: a stack size no file has (scenes with fewer slices are left
    out; a size no scene has is a mistake), flat regions of files without an AiF image to find them in."""
    for k in stack_sizes:
        if all(k > s.info.n_slices for s in sources):
            have = ", ".join(f"{Path(s.info.path).name}: {s.info.n_slices}" for s in sources)
            raise ValueError(f"--stack-size {k}: no file has stacks of {k} slices ({have})")
    if "flat" in regions:
        lacking = [Path(s.info.path).name for s in sources if "aif" not in s.ground_truth]
        if lacking:
            raise ValueError(
                f"--region flat finds the flat areas in the true all-in-focus image, which "
                f"{', '.join(lacking)} does not hold; evaluate it with --region all"
            )


def _file_plans(infos, fi: int, n: int, settings, stack_sizes, orders, batch_size: int, seed: int) -> list:
    """(row labels, batches) of every setting and stack subset for the first ``n`` scenes of file ``fi``,
    planned per file so that a file's subsets depend on the seed alone, not on the other files of the run."""
    scenes = [np.arange(n) if i == fi else np.arange(0) for i in range(len(infos))]
    plans = [({"setting": st}, plan_eval(infos, scenes, batch_size, st, seed)) for st in settings]
    plans += [
        ({"setting": "All", "stack_size": k, "order": o}, plan_subsets(infos, scenes, batch_size, k, o, seed))
        for k in stack_sizes
        for o in orders
    ]
    return plans


@dataclass
class _EvalRun:
    """What every plan of an evaluation shares: the model, how to score, where notes go."""

    model: object
    norm: Norm
    protocols: list[Protocol]
    regions: tuple[str, ...]
    device: torch.device
    amp_dtype: torch.dtype | None
    workers: int
    progress: bool
    group: object
    dataset: EvalSamples
    outputs: frozenset
    notes: dict = field(default_factory=dict)  # ordered, each line once
    non_finite: int = 0  # depth pixels the model gave as inf or NaN (this process's)

    def score(self, batches, label: str) -> dict:
        """MeanMeters per (protocol, region) over ``batches`` (this process's part of them, gathered)."""
        from tqdm import tqdm

        if self.group is not None:
            batches = self.group.split(batches)
        meters = {(p.name, r): MeanMeter() for p in self.protocols for r in self.regions}
        loader = make_loader(self.dataset, batches, self.workers, pin=self.device.type == "cuda")
        prepare = lambda batch: prepare_eval_batch(batch, self.norm, self.device)  # noqa: E731
        with tqdm(total=len(batches), desc=label, disable=not self.progress or not is_writer(), leave=False) as bar:
            for _, truth, out in batch_outputs(self.model, loader, prepare, self.device, self.amp_dtype, bar):
                pred = self.norm.physical(out)
                self.non_finite += int((~torch.isfinite(pred["depth_m"])).sum())  # clipping protocols hide them
                for region in self.regions:
                    region_truth = in_region(truth, region)
                    if region_truth is None:
                        continue
                    for p in self.protocols:
                        for k, values in p.score(pred, region_truth, self.norm).items():
                            meters[p.name, region].add_images(k, values)
        if self.group is not None:
            for meter in meters.values():
                self.group.merge_meter(meter)
        return meters

    def rows(self, src, labels: dict, n: int, meters: dict) -> list[dict]:
        """One row per protocol and region; None where the file or the model cannot support a column."""
        path, rows = src.info.path, []
        for p in self.protocols:
            for region in self.regions:
                lacking = {c.key for c in p.lacking(src.ground_truth, self.outputs)}
                if region != "all":  # a region scores depth only
                    lacking |= {c.key for c in p.columns if c.needs != ("depth",)}
                    if "aif" not in src.ground_truth:
                        lacking |= {c.key for c in p.columns}
                        self.notes[f"{path}: region {region!r} needs the AiF image, which this file lacks"] = None
                means = meters[p.name, region].means()
                row = {
                    "protocol": p.name,
                    "file": path,
                    "setting": labels["setting"],
                    "scenes": n,
                    "stack_size": labels.get("stack_size"),
                    "order": labels.get("order"),
                    "region": region,
                }
                row.update({c.key: None if c.key in lacking else means.get(c.key) for c in p.columns})
                rows.append(row)
                self.notes.update(dict.fromkeys(_skipped_notes(path, p, meters[p.name, region], n, region)))
        return rows


def blur_scale(camera: dict, width: int) -> float | None:
    """How large blur is in pixels for a camera at an image width: the blur-circle diameter is
    f^2 / (N (s - f)) |d - s| / d on the sensor, W / sensor_width pixels per mm; this is its factor
    f^2 W / (N sensor_width), the rest depending on the scene. None for a camera without a model (DDFF-12)."""
    try:
        f, n, sensor = (float(camera[k]) for k in ("focal_length_mm", "f_number", "sensor_width_mm"))
    except (KeyError, TypeError, ValueError):
        return None
    return f * f * width / (n * sensor) if n > 0 and sensor > 0 else None


def training_camera_notes(trained: dict, path: str, camera: dict, image_size, tolerance: float = 1.5) -> list[str]:
    """Lines for a file whose stacks a network trained on ``trained`` (a checkpoint's camera) did not see the
    like of: blur in pixels more than ``tolerance`` times larger or smaller (a network learns blur in pixels).
    Nothing where either camera is unknown."""
    notes = []
    own, theirs = blur_scale(trained, (trained.get("image_size") or [0, 0])[1]), blur_scale(camera, image_size[1])
    if own and theirs and not 1 / tolerance <= theirs / own <= tolerance:
        notes.append(
            f"{path}: blur in pixels {theirs / own:.2g} x that of the checkpoint's training data (f/{camera['f_number']:g} "
            f"at {image_size[1]} px, against f/{trained['f_number']:g} at {trained['image_size'][1]} px): its depth there "
            "is not what it learnt"
        )
    # Focus distances are not compared: a checkpoint records its first training scene's alone, and files drawn
    # with random focus distances or stack sizes differ scene by scene.
    return notes


def _refuse_repeated_files(data) -> None:
    """ValueError naming a file given twice (under any name): its rows would repeat in the tables, and the
    second would replace the first in metrics.json."""
    repeat = first_repeat(data)
    if repeat:
        earlier, later = data[repeat[0]], data[repeat[1]]
        also = "" if earlier == later else f" (as {earlier})"
        raise ValueError(f"--data {later}: given more than once{also}; each file is evaluated once")


def _check_options(settings, regions, stack_sizes, batch_size: int, max_scenes: int | None) -> None:
    """ValueError naming the first option ``evaluate`` cannot use."""
    for s in settings:
        if s not in SETTINGS:
            raise ValueError(f"setting {s!r}: expected one of {', '.join(SETTINGS)}")
    for r in regions:
        if r not in REGIONS:
            raise ValueError(f"--region {r!r}: expected one of {', '.join(REGIONS)}")
    for k in stack_sizes:
        if not (isinstance(k, int) and k >= 1):
            raise ValueError(f"--stack-size {k!r}: expected a positive integer")
    for name, value in (("batch-size", batch_size), ("max-scenes", 1 if max_scenes is None else max_scenes)):
        if not value >= 1:
            raise ValueError(f"--{name} {value}: expected a positive integer")


def evaluate(
    checkpoint: str | os.PathLike,
    data: list[str],
    out_dir: str | os.PathLike | None = None,
    settings: tuple[str, ...] = SETTINGS,
    protocols: tuple[str, ...] = ("focalstack",),
    compare_published: bool = False,
    batch_size: int = 4,
    device: str = "auto",
    amp: str = "auto",
    seed: int = 0,
    workers: int = 0,
    max_scenes: int | None = None,
    progress: bool = True,
    stack_sizes: tuple[int, ...] = (),
    orders: tuple[str, ...] = ("sorted",),
    regions: tuple[str, ...] = ("all",),
) -> Evaluation:
    """Evaluate ``checkpoint`` on each file of ``data`` under each of ``protocols`` (``PROTOCOLS``); also
    on stacks of each of ``stack_sizes`` slices in each of ``orders``, and over each of ``regions``
    (``evaluate_model``).

    Returns an ``Evaluation`` (unpacks as ``rows, paths``): rows, one per protocol, file and setting,
    with every column of the protocol (None where the file's ground truth or the model cannot support
    it), notes, and the paths written (markdown, csv, json). ``compare_published`` adds the protocols'
    published rows to the written tables."""
    from .checkpoint import load_checkpoint, model_from_checkpoint

    chosen = resolve_protocols(protocols)
    # each value once, in the order given (as protocols): a repeat would score the same rows twice
    settings, stack_sizes, orders, regions = (tuple(dict.fromkeys(v)) for v in (settings, stack_sizes, orders, regions))
    _check_options(settings, regions, stack_sizes, batch_size, max_scenes)
    if set(orders) != {"sorted"} and not stack_sizes:
        raise ValueError(
            f"--order {' '.join(orders)}: orders the K slices of --stack-size subsets, and no --stack-size is given "
            "(the Random setting shuffles whole stacks already)"
        )
    _refuse_repeated_files(data)
    group = process_group(device)  # torchrun: every process evaluates its part, rank 0 writes
    dev = resolve_device(device) if group is None else group.device
    amp_dtype = resolve_amp(amp, dev)
    ckpt = load_checkpoint(checkpoint)
    model, norm = model_from_checkpoint(ckpt, checkpoint)
    model.to(dev)
    result = evaluate_model(
        model,
        norm,
        list(data),
        chosen,
        tuple(settings),
        batch_size,
        dev,
        amp_dtype,
        seed,
        workers,
        max_scenes,
        # Slices are aligned (or not) as the network saw them in training.
        align_slices=bool(ckpt.get("config", {}).get("align_slices", False)),
        progress=progress,
        model_label=f"{checkpoint} (architecture {ckpt['arch']})",
        stack_sizes=tuple(stack_sizes),
        orders=tuple(orders),
        regions=tuple(regions),
        group=group,
        trained_camera=dict(ckpt.get("camera") or {}),
    )
    if out_dir is None:  # beside the checkpoint; for shipped weights (a short name) in this folder
        out_dir = Path(checkpoint).parent / "eval" if Path(checkpoint).is_file() else Path(f"eval-{checkpoint}")
    out = Path(out_dir)
    result.paths = write_results(out, result, checkpoint, ckpt, seed, compare_published, write=is_writer())
    return result
