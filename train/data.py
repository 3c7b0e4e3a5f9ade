"""Focal-stack HDF5 files (focalstack.dataset) as torch training data.

Sampling is planned in the main process (``plan``: every batch of an epoch as ``SampleKey`` lists, from
the seed and the epoch alone) and the reading is done in the workers: ``FocalStackDataset`` turns a key
into arrays. It opens its HDF5 files lazily, once per process, so h5py handles are never shared across
DataLoader worker processes. Files may hold only some ground truth (``SourceInfo.ground_truth``): a
sample flags what its file lacks (``has_*``), and ``to_model_inputs`` turns the flags into masks.

Several files are mixed with sampling weights (``--data train.h5 --data walls.h5:0.3``): the weight is
per scene, relative: each scene of walls.h5 is drawn 0.3 times as often as a scene of a file of weight
1 (the default). With all weights equal an epoch is a permutation of the training scenes; otherwise
scenes are drawn with replacement in proportion to their weights.

Short stacks: a file may hold scenes with fewer distinct slices than its S (dataset ``stack_size``;
the remaining slices repeat the last one). The planner draws from a scene's distinct slices only; when a
batch needs more slices than a scene has, it repeats some, which the networks do not notice (the
maximum over a stack ignores duplicates), and evaluation's "All" feeds exactly the distinct slices.

Normalisation (``Norm``; stored in every checkpoint, applied on the device by ``to_model_inputs``):

- images: uint8 sRGB / 255, so in [0, 1]; no mean/std shift;
- focus distances: metres / ``focus_scale`` (default 1.5 m, the farthest focus of the reference camera);
- depth: metres / ``depth_scale`` (default 3 m), targets clipped to ``max_depth`` (default 3 m); pixels
  farther than ``max_depth`` (background, which Blender writes as 1e10) or not finite are left out of the
  depth loss and metrics;
- defocus: pixels / ``defocus_scale`` (default 5 px); by default the absolute blur-circle diameter is the
  target, as in the paper (``signed_defocus`` keeps the sign: + behind the focal plane, - in front).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch

from focalstack.dataset import DatasetError, FocalStackFile, schema
from focalstack.dataset.numbers import is_finite_number

from .augment import recapture_stack
from .losses import LOSS_TERMS
from .metrics import valid_depth
from .plan import PlannedBatches, SampleKey


@dataclass(frozen=True)
class Norm:
    """Normalisation constants (see the module docstring). Stored in checkpoints."""

    focus_scale: float = 1.5  # metres
    depth_scale: float = 3.0  # metres
    defocus_scale: float = 5.0  # pixels
    max_depth: float = 3.0  # metres; farther depth is clipped and masked out
    signed_defocus: bool = False  # False: |blur diameter| is the target, as in the paper

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Norm":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    # The one place inputs are normalised and outputs de-normalised (training, evaluation, prediction, figures).
    def stack(self, stack_uint8: torch.Tensor) -> torch.Tensor:
        """8-bit slices as the network takes them: float in [0, 1]."""
        return stack_uint8.float().div_(255.0)

    def focus(self, focus_m: torch.Tensor) -> torch.Tensor:
        """Focus distances in metres as the network takes them."""
        return focus_m / self.focus_scale

    def physical(self, out: dict) -> dict:
        """The network's outputs (torch or numpy) in physical units: depth_m (m), defocus_px (px; absolute
        unless ``signed_defocus``), and aif (RGB in [0, 1]) when the network has an AiF branch."""

        def as_float(v):
            return v.float() if isinstance(v, torch.Tensor) else v

        pred = {"depth_m": as_float(out["depth"]) * self.depth_scale, "defocus_px": as_float(out["defocus"]) * self.defocus_scale}
        if "aif" in out:
            pred["aif"] = out["aif"]
        return pred

    def check(self) -> "Norm":
        """ValueError naming the option of the first scale that is not a finite number > 0."""
        for name in ("focus_scale", "depth_scale", "defocus_scale", "max_depth"):
            value = getattr(self, name)
            if not (is_finite_number(value) and value > 0):
                raise ValueError(f"--{name.replace('_', '-')} {value!r}: expected a finite number > 0")
        return self


# -- sources ---------------------------------------------------------------------------------------


def first_repeat(paths) -> tuple[int, int] | None:
    """Indices (earlier, later) of the first two of ``paths`` that name one file (by device and inode, so a
    symbolic or hard link or a relative name counts; by real path where the file cannot be read), or None when
    each names its own."""
    seen: dict[object, int] = {}
    for j, path in enumerate(paths):
        try:
            st = os.stat(path)
            key: object = (st.st_dev, st.st_ino)
        except OSError:  # missing: the reader names it
            key = os.path.realpath(path)
        i = seen.setdefault(key, j)
        if i != j:
            return i, j
    return None


def shared_scenes(paths) -> list[tuple[int, int, int]]:
    """(earlier, later, how many) for each two of ``paths`` whose complete rendered scenes share descriptions:
    the same scene in two files (a render's longer copy), which a split by file does not keep apart. A rendered
    scene's description says everything needed to render it, so equal ones are one scene; imported scenes
    (seed -1) are left out: theirs name a file and an index, which two different exports share."""
    described = []
    for path in paths:
        with FocalStackFile(path) as f:
            if not len(f):
                described.append(set())
                continue
            rendered = f.read_all("seed") >= 0
            texts = f.read_all("scene")
            described.append(
                {
                    hashlib.blake2b(t if isinstance(t, bytes) else str(t).encode(), digest_size=16).digest()
                    for t, keep in zip(texts, rendered)
                    if keep
                }
            )
    return [(i, j, len(described[i] & described[j])) for j in range(len(paths)) for i in range(j) if described[i] & described[j]]


def parse_data_spec(spec: str) -> tuple[str, float]:
    """'path.h5' -> (path, 1.0); 'path.h5:0.3' -> (path, 0.3). A tail that is not a number is path."""
    path, weight = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
        except ValueError:
            pass  # a colon inside the path
        else:
            path = head
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(f"{spec}: sampling weight {tail!r} must be a number > 0")
    return path, weight


# Ground truth a training sample carries: depth, and what the loss terms need (``losses.LOSS_TERMS``); files
# of other sources hold only some (FoD500: no AiF image, edges or rendered defocus; DDFF-12: no camera, so
# no defocus maps, and no AiF image). Ground truth no term reads (normals, objects) is not read at all.
TRAINING_GROUND_TRUTH = frozenset({"depth", *(t.needs for t in LOSS_TERMS)})


@dataclass
class SourceInfo:
    """What the planner needs to know about one file (read once, in the main process)."""

    path: str
    weight: float
    n_scenes: int
    n_slices: int
    image_size: tuple[int, int]  # (H, W)
    camera: dict = field(default_factory=dict)
    stack_sizes: list[int] | None = None  # distinct slices per complete scene; None: all n_slices
    ground_truth: frozenset = TRAINING_GROUND_TRUTH  # of the ground truth asked about, what the file holds
    no_data: dict = field(default_factory=dict)  # ground truth -> the value that marks pixels without it
    incomplete: int = 0  # rows begun and not complete (a render stopped or still running): no scenes to readers

    def distinct(self, scene: int) -> int:
        """Number of distinct slices of ``scene`` (the first ones; later slices repeat the last)."""
        if self.stack_sizes is None:
            return self.n_slices
        return int(self.stack_sizes[scene])  # within 1..n_slices: inspect_source refuses others


def inspect_source(path: str, weight: float = 1.0, ground_truth=TRAINING_GROUND_TRUTH) -> SourceInfo:
    """Open a file, check it (DatasetError naming the file if it is not schema-valid or empty), note its size,
    slices, camera and which of ``ground_truth`` it holds (training's by default; evaluation asks for its
    own), and close it."""
    with FocalStackFile(path) as f:
        n = len(f)
        if n == 0:
            raise DatasetError(f"{path}: holds no complete scene")
        # Training and evaluation read the camera values alone, never a whole record: checked here, in the
        # main process (a DataLoader worker's error would not name the file).
        f.check_cameras()
        camera = {name: float(f.read(name, 0)) if f.has(name) else None for name in schema.CAMERA_NAMES}  # DDFF-12 has no camera
        camera["focus_distances"] = [float(x) for x in f.read("focus_distance", 0)]
        camera["defocus_model"] = str(f.attrs.get("defocus_model", ""))
        try:
            stack_sizes = [int(x) for x in f.read_all("stack_size")]
        except DatasetError:  # files of other writers may lack the optional dataset: full stacks
            stack_sizes = None
        for scene, size in enumerate(stack_sizes or []):
            if not 1 <= size <= f.n_slices:  # not clamped: a damaged count would score stacks of one slice
                raise DatasetError(f"{path}: scene {scene} has stack_size {size}, expected 1 to {f.n_slices} (its slices)")
        held = frozenset(name for name in ground_truth if f.has(name))
        no_data = {name: float(f.ground_truth[name].no_data) for name in held if f.ground_truth[name].no_data is not None}
        return SourceInfo(str(path), float(weight), n, f.n_slices, f.image_size, camera, stack_sizes, held, no_data, f.n_rows - n)


def has_valid_depth(path: str, scenes, max_depth: float) -> bool:
    """Whether any of ``scenes`` of the file has a depth pixel that training and metrics count
    (``metrics.valid_depth``); read a scene at a time, stopping at the first."""
    with FocalStackFile(path) as f:
        for i in scenes:
            if bool(valid_depth(torch.from_numpy(np.asarray(f.read("depth", int(i)))), max_depth).any()):
                return True
    return False


def check_compatible(
    sources: list[SourceInfo], stack_size: int | None, crop: tuple[int, int] | None, transposes: bool = False
) -> int:
    """Check that batches can mix these files; return the stack size to train with.

    Without ``stack_size`` every file must have the same number of slices; without ``crop`` the same
    image size; with ``transposes`` the samples must be square (a transposed sample of another shape would
    not batch with the rest). Raises ValueError with a one-line message naming the files.
    """
    slices = {s.n_slices for s in sources}
    if stack_size is None:
        if len(slices) > 1:
            listing = ", ".join(f"{s.path} has {s.n_slices}" for s in sources)
            raise ValueError(f"stack sizes differ between files ({listing} slices): pass --stack-size <= {min(slices)}")
        stack_size = slices.pop()
    smallest = min(sources, key=lambda s: s.n_slices)
    if not 1 <= stack_size <= smallest.n_slices:
        raise ValueError(f"--stack-size {stack_size}: {smallest.path} has {smallest.n_slices} slices")
    sizes = {s.image_size for s in sources}
    if crop is None:
        if len(sizes) > 1:
            listing = ", ".join(f"{s.path} is {s.image_size[0]}x{s.image_size[1]}" for s in sources)
            raise ValueError(f"image sizes differ between files ({listing}): pass --crop")
    else:
        for s in sources:
            if crop[0] > s.image_size[0] or crop[1] > s.image_size[1]:
                raise ValueError(
                    f"--crop {crop[0]}x{crop[1]}: larger than the {s.image_size[0]}x{s.image_size[1]} images of {s.path}"
                )
    if transposes:
        if crop is not None and crop[0] != crop[1]:
            raise ValueError(f"--transposes: the crop {crop[0]}x{crop[1]} is not square; pass a square --crop")
        if crop is None:
            for s in sources:
                if s.image_size[0] != s.image_size[1]:
                    raise ValueError(
                        f"--transposes: the {s.image_size[0]}x{s.image_size[1]} images of {s.path} are not square; "
                        "pass a square --crop"
                    )
    return stack_size


# -- reading ---------------------------------------------------------------------------------------


def align_to_reference(stack: np.ndarray, homographies: np.ndarray) -> np.ndarray:
    """Warp slices (L, H, W, 3) into the reference view; homographies (L, 3, 3) map reference pixels to
    slice pixels, as the files store them."""
    h, w = stack.shape[1:3]
    out = np.empty_like(stack)
    for k in range(len(stack)):
        if np.allclose(homographies[k], np.eye(3), atol=1e-7):
            out[k] = stack[k]
        else:
            out[k] = cv2.warpPerspective(
                stack[k],
                homographies[k].astype(np.float64),
                (w, h),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )
    return out


# What a training sample reads of its scene: the per-pixel arrays (decoded per sample, or once with
# ``cache_in_memory``) and the small per-scene values (read once per file and process).
PIXEL_ARRAYS = ("stack", *(spec.name for spec in schema.WRITTEN_ARRAYS if spec.name in TRAINING_GROUND_TRUTH and spec.per_pixel))
SCENE_VALUES = ("focus_distance", "f_number", "focal_length_mm", "sensor_width_mm")


class FocalStackDataset(torch.utils.data.Dataset):
    """Reads the sample a ``SampleKey`` describes. Arrays come back unnormalised (see ``Norm``):

    stack (L, 3, h, w) uint8, focus (L,) float32 m, defocus (L, h, w) float32 px (signed),
    depth (h, w) float32 m, aif (3, h, w) uint8, edges (h, w) uint8, camera (3,) float32
    (f-number, focal length mm, sensor width mm), plus ``file`` and ``scene`` indices.

    Only what a sample needs is read: the five per-pixel arrays of its scene (one HDF5 chunk each,
    decoded whole), and the per-scene values, which are read for all scenes of a file at once.
    ``cache_in_memory()`` decodes every scene once instead.
    """

    def __init__(self, paths: list[str], align_slices: bool = False):
        self.paths = [str(p) for p in paths]
        # Warp each slice back into the reference view by its stored homography (files rendered with
        # focus breathing or camera shake); ground truth is already in that view.
        self.align_slices = align_slices
        self._files: dict[int, FocalStackFile] = {}
        self._pid: int | None = None
        self._values: dict[int, dict[str, np.ndarray | None]] = {}  # per file: SCENE_VALUES (+ homographies)
        self._cache: list[dict[str, np.ndarray]] | None = None  # per file: PIXEL_ARRAYS of every scene

    def _file(self, i: int) -> FocalStackFile:
        if self._pid != os.getpid():  # a fresh worker process: never reuse the parent's handles
            self._files, self._pid = {}, os.getpid()
        if i not in self._files:
            self._files[i] = FocalStackFile(self.paths[i])
        return self._files[i]

    def _scene_values(self, i: int) -> dict[str, np.ndarray | None]:
        if i not in self._values:
            f = self._file(i)
            # a camera the file lacks (DDFF-12) reads as NaN
            values: dict[str, np.ndarray | None] = {
                name: f.read_all(name) if f.has(name) else np.full(len(f), np.nan, np.float32) for name in SCENE_VALUES
            }
            values["slice_homography"] = None
            if self.align_slices:
                try:
                    values["slice_homography"] = f.read_all("slice_homography")
                except DatasetError:  # other writers' files may lack it: nothing to align
                    pass
            self._values[i] = values
        return self._values[i]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_files"], state["_pid"] = {}, None
        return state

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def cache_nbytes(self) -> int:
        """Bytes that ``cache_in_memory`` would hold: the per-pixel arrays of every complete scene."""
        total = 0
        for i in range(len(self.paths)):
            f = self._file(i)
            if len(f):  # what one scene decodes to (defocus may be recomputed rather than stored)
                total += len(f) * sum(f.read(n, 0).nbytes for n in PIXEL_ARRAYS if f.has(n))
        return total

    def cache_in_memory(self, copies: int = 1) -> int:
        """Decode every complete scene's per-pixel arrays once, into memory; samples then come from
        there (DataLoader workers, forked, share it with this process). Returns the bytes held.
        ``copies``: processes on this machine that each hold such a cache (training processes of one
        node). Raises ValueError naming --cache-data when they would not fit in the memory available."""
        need, available = self.cache_nbytes(), available_memory()
        if available is not None and need * copies > 0.8 * available:
            each = f" for each of {copies} processes" if copies > 1 else ""
            raise ValueError(
                f"--cache-data: the files need {need / 1e9:.1f} GB decoded{each}, {available / 1e9:.1f} GB "
                "of memory is available; train without --cache-data"
            )
        cache = []
        for i in range(len(self.paths)):
            f = self._file(i)
            first = {n: f.read(n, 0) for n in PIXEL_ARRAYS if f.has(n)} if len(f) else {}
            arrays = {n: np.empty((len(f), *a.shape), a.dtype) for n, a in first.items()}
            for scene in range(len(f)):
                for name, array in arrays.items():
                    array[scene] = f.read(name, scene)
            cache.append(arrays)
        self._cache = cache
        return need

    def _pixels(self, file: int, scene: int, names: tuple[str, ...]) -> dict[str, np.ndarray | None]:
        if self._cache is not None:
            cached = self._cache[file]
            return {name: cached[name][scene] if name in cached else None for name in names}
        f = self._file(file)
        return {name: f.read(name, scene) if f.has(name) else None for name in names}

    def __getitem__(self, key: SampleKey) -> dict:
        return self.read_sample(key, PIXEL_ARRAYS, stand_ins=True)

    def read_sample(self, key: SampleKey, names: tuple[str, ...], stand_ins: bool) -> dict:
        """The per-pixel arrays ``names`` of ``key``'s scene, each taken as its schema entry says
        (``transform_pixels``), with the focus distances and camera. Ground truth the file lacks is left out,
        or with ``stand_ins`` given as a placeholder flagged absent (``has_NAME``), so that batches of files
        with and without it stack (depth, which every training file holds, is never flagged)."""
        values = self._scene_values(key.file)
        px = self._pixels(key.file, key.scene, names)
        s, h, w = px["stack"].shape[:3]
        sample, held = {}, {}
        for name in names:
            spec = schema.SPECS[name]
            array = px[name]
            if stand_ins and spec.presence == "ground_truth" and name != "depth":
                held[name] = array is not None
                if array is None:
                    array = spec.placeholder(schema.concrete_shape(spec, s, h, w))
            if array is not None:
                sample[name] = transform_pixels(array, spec, key, values["slice_homography"], key.scene)
        camera = [values[n][key.scene] for n in schema.CAMERA_NAMES]
        return {
            **sample,
            "focus": _fresh(values["focus_distance"][key.scene][list(key.slices)], np.float32),
            "camera": torch.tensor(camera, dtype=torch.float32),
            **{f"has_{name}": torch.tensor(flag) for name, flag in held.items()},
            "file": key.file,
            "scene": key.scene,
        }


def transform_pixels(array: np.ndarray, spec: schema.ArraySpec, key: SampleKey, homographies, scene: int) -> torch.Tensor:
    """One per-pixel array of a scene as a sample of ``key`` takes it: its slices (arrays with an S axis),
    aligned to the reference view (the stack, when ``homographies`` are given), cropped, flipped (vector
    components that follow the image axes change sign: ``ArraySpec.flip_negates``), transposed (those
    components swap), re-captured (the stack, with the key's ``capture``), colour channels first, floating
    point as float32."""
    axes = spec.trailing
    if "S" in axes:
        array = array[list(key.slices)]
        if spec.name == "stack" and homographies is not None:
            array = align_to_reference(array, homographies[scene][list(key.slices)])
    y_axis, x_axis = axes.index("H"), axes.index("W")
    if key.crop is not None:
        y, x, h, w = key.crop
        index = [slice(None)] * array.ndim
        index[y_axis], index[x_axis] = slice(y, y + h), slice(x, x + w)
        array = array[tuple(index)]
    for flip, axis, component in ((key.flip_h, x_axis, spec.flip_negates[0]), (key.flip_v, y_axis, spec.flip_negates[1])):
        if flip:
            array = np.flip(array, axis)
            if component is not None:
                array = array.copy()
                array[..., component] *= -1
    if key.transpose:
        array = np.swapaxes(array, y_axis, x_axis)
        cx, cy = spec.flip_negates
        if cx is not None and cy is not None:
            # The camera frame's y points up, against the rows: the pixel at (row r, column c) moves to (c, r),
            # so a vector's new x is minus its old y and its new y minus its old x.
            array = array.copy()
            array[..., [cx, cy]] = -array[..., [cy, cx]]
    if spec.name == "stack" and key.capture is not None:  # the camera sees the oriented, cropped frame
        array = recapture_stack(array, key.capture)
    if axes[-1] == "3":  # colour or vector channels first: (..., H, W, 3) -> (..., 3, H, W)
        array = np.moveaxis(array, -1, -3)
    return _fresh(array, np.float32 if np.dtype(spec.dtype).kind == "f" else None)


def _fresh(a: np.ndarray, dtype=None) -> torch.Tensor:
    """A tensor of its own (C order): never a view of the decoded scene, which may be the cache's."""
    return torch.from_numpy(np.array(a, dtype=dtype, order="C"))


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def make_loader(
    dataset: FocalStackDataset, batches: list[list[SampleKey]], workers: int, start: int = 0, pin: bool = False
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=PlannedBatches(batches, start),
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=False,
        # The loader draws its workers' seeds from this, not from torch's global generator (the samples
        # need no seeds: every random choice is in the plan).
        generator=torch.Generator(),
    )


# -- normalisation on the device -------------------------------------------------------------------


def _defocus_target(targets: dict, defocus_px: torch.Tensor, held: torch.Tensor, norm: Norm) -> None:
    """defocus / defocus_scale (absolute unless ``signed_defocus``), defocus_px, and defocus_mask: held and
    finite (FoD500's imports have no maps where depth is unknown)."""
    defocus_px = defocus_px if norm.signed_defocus else defocus_px.abs()
    valid = torch.isfinite(defocus_px) & held[:, None, None, None]
    defocus_px = torch.where(valid, defocus_px, torch.zeros_like(defocus_px))
    targets.update(defocus=defocus_px / norm.defocus_scale, defocus_px=defocus_px, defocus_mask=valid)


def _aif_target(targets: dict, aif: torch.Tensor, held: torch.Tensor, norm: Norm) -> None:
    targets.update(aif=aif.float().div_(255.0), aif_valid=held)


def _edges_target(targets: dict, edges: torch.Tensor, held: torch.Tensor, norm: Norm) -> None:
    targets.update(edges=edges.float(), edges_valid=held)


# How each ground truth a loss term needs (but depth) becomes targets: (targets, batch values on the device,
# (B,) which samples hold it, Norm). A ground truth a term needs gets a row here.
TARGETS = {"defocus": _defocus_target, "aif": _aif_target, "edges": _edges_target}
assert set(TARGETS) == TRAINING_GROUND_TRUTH - {"depth"}, "every ground truth a loss term needs has a target"


def to_model_inputs(batch: dict, norm: Norm, device: torch.device) -> tuple[dict, dict]:
    """(inputs, targets), normalised and on ``device``.

    inputs: stack (B, S, 3, H, W) float in [0, 1], focus (B, S) / focus_scale.
    targets: defocus (B, S, H, W) / defocus_scale (absolute unless ``signed_defocus``), depth (B, H, W)
    clipped to max_depth / depth_scale, depth_mask (B, H, W) bool, aif (B, 3, H, W) in [0, 1],
    edges (B, H, W) float 0/1, and depth_m, defocus_px (unnormalised) for metrics.

    Ground truth that only some samples hold comes with masks: defocus_mask (B, S, H, W) (the sample
    holds defocus maps, and the value is finite: FoD500's imports have none where depth is unknown),
    aif_valid and edges_valid (B,). Ground truth that no sample of the batch holds is left out of the
    targets altogether (validation batches never mix files, so a file's metrics say '-' rather than
    score a stand-in).
    """
    nb = device.type == "cuda"
    stack = norm.stack(batch["stack"].to(device, non_blocking=nb))
    focus = norm.focus(batch["focus"].to(device, non_blocking=nb))
    depth_m = batch["depth"].to(device, non_blocking=nb)
    mask = torch.isfinite(depth_m) & (depth_m > 0) & (depth_m <= norm.max_depth)
    depth = torch.where(mask, depth_m, torch.zeros_like(depth_m)).clamp_(max=norm.max_depth) / norm.depth_scale
    targets = {"depth": depth, "depth_m": depth_m, "depth_mask": mask}
    everywhere = torch.ones(len(depth), dtype=torch.bool, device=device)
    for name, target in TARGETS.items():
        held = batch[f"has_{name}"].to(device) if f"has_{name}" in batch else None
        if name in batch and (held is None or bool(held.any())):
            target(targets, batch[name].to(device, non_blocking=nb), everywhere if held is None else held, norm)
    return {"stack": stack, "focus": focus}, targets
