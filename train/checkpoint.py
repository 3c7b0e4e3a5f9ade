"""Checkpoints: one file holding weights, optimiser state, the training configuration and the
normalisation constants, and where the run stands (epoch, batch, step, the hooks' states). Saved
atomically (``focalstack.dataset.files.atomic_path``: temporary file in the same folder, fsync, rename),
so a killed run leaves the previous checkpoint intact. Loaded with ``torch.load(weights_only=True)``: a
checkpoint is plain data (dicts, lists, strings, numbers, tensors) and never executes code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from focalstack.dataset.files import atomic_path
from focalstack.dataset.numbers import is_finite_number

from .data import Norm
from .models import ARCHITECTURES, FocusOnDefocus, build_model

FORMAT = "focalstack-train"
VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    path = Path(path)
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as fh:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, fh)
    return path


def bundled_weights() -> dict[str, Path]:
    """The weights the package ships, by short name (``weights/NAME.pt``)."""
    from importlib import resources

    try:
        folder = resources.files("focalstack.weights")
    except ModuleNotFoundError:
        return {}
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".pt")}


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A checkpoint file: ``name_or_path`` itself when it is a file, else the shipped weights of that short
    name; CheckpointError naming what exists otherwise."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = bundled_weights()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    if path.is_dir():  # a run folder, most likely
        inside = sorted(path.glob("*.pt"))
        hint = f"; did you mean {path / 'best.pt'}?" if (path / "best.pt").is_file() else ""
        hint = hint or (f"; it holds {', '.join(p.name for p in inside[:5])}" if inside else "")
        raise CheckpointError(f"{path}: a folder, expected a checkpoint file{hint}")
    names = ", ".join(sorted(shipped)) or "none yet"
    raise CheckpointError(f"{path}: no such checkpoint file, and no shipped weights of that name (shipped: {names})")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and check a checkpoint (on the CPU), a file or the short name of shipped weights
    (``resolve_checkpoint``). Raises CheckpointError with a one-line message."""
    given, path = path, resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the unpickler says, the file is not ours
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = next((ln for ln in lines if ln.startswith("WeightsUnpickler error")), lines[0] if lines else "")
        if why.startswith("Weights only load failed"):
            why = "torch.load(weights_only=True) refused it"
        why = why.split(". ")[0]  # torch's advice runs on for sentences; the first says what failed
        why = why if len(why) <= 160 else why[:157] + "..."
        if isinstance(exc, KeyError) or why.isdigit():  # the unpickler's lookup of a byte it does not know: '101'
            why = "not a file that torch.save wrote"
        shadowed = str(given) in bundled_weights() and Path(given).is_file()  # a local file of a shipped name
        hint = f"; it is a file here, so the shipped weights {given} were not used" if shadowed else ""
        raise CheckpointError(f"{path}: not a focalstack-train checkpoint ({why or type(exc).__name__}){hint}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a focalstack-train checkpoint (no format {FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')!r}, this trainer reads {VERSION}")
    for key in ("arch", "arch_kwargs", "model", "norm", "config"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    if ckpt["arch"] not in ARCHITECTURES:
        raise CheckpointError(f"{path}: architecture {ckpt['arch']!r} is unknown (this trainer knows {', '.join(ARCHITECTURES)})")
    _check_norm(ckpt["norm"], path)
    return ckpt


def _check_norm(norm, path) -> None:
    """CheckpointError naming the first normalisation constant every reader of the checkpoint would turn
    into wrong numbers (0 scales depth to 0, NaN gives NaN metrics) or a traceback (a string)."""
    if not isinstance(norm, dict):
        raise CheckpointError(f"{path}: 'norm' is {type(norm).__name__}, expected a table of normalisation constants")
    for name in ("focus_scale", "depth_scale", "defocus_scale", "max_depth"):
        value = norm.get(name, getattr(Norm, name))
        if not (is_finite_number(value) and value > 0):
            raise CheckpointError(f"{path}: norm {name} is {value!r}, expected a finite number > 0")
    if not isinstance(norm.get("signed_defocus", False), bool):
        raise CheckpointError(f"{path}: norm signed_defocus is {norm['signed_defocus']!r}, expected true or false")


def inference_weights(ckpt: dict) -> dict:
    """The weights a checkpoint stands for: the run's average of its weights where it kept one (``--ema``),
    else the weights its optimiser left."""
    average = ckpt.get("weight_average")
    return average["model"] if isinstance(average, dict) and "model" in average else ckpt["model"]


def model_from_checkpoint(
    ckpt: dict, path: str | os.PathLike = "checkpoint", arch: str | None = None
) -> tuple[FocusOnDefocus, Norm]:
    """Rebuild the network a checkpoint holds and load its weights. With ``arch``, the checkpoint must
    be of that architecture. Weights that do not fit the architecture raise CheckpointError."""
    if arch is not None and ckpt["arch"] != arch:
        raise CheckpointError(f"{path}: checkpoint is architecture {ckpt['arch']!r}, expected {arch!r}")
    try:
        model = build_model(ckpt["arch"], **ckpt["arch_kwargs"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    weights = inference_weights(ckpt)
    check_weights(model, weights, path, ckpt["arch"])
    model.load_state_dict(weights)
    return model, Norm.from_dict(ckpt["norm"])


def non_finite_tensors(state: dict) -> list[str]:
    """Names of the floating-point tensors of ``state`` that hold NaN or inf."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def check_weights(model: torch.nn.Module, state: dict, path, arch: str) -> None:
    """CheckpointError unless ``state`` has exactly ``model``'s tensors, each of its shape, all finite."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            shapes = f"{tuple(state[k].shape)}, the network's {tuple(own[k].shape)}"
            parts.append(f"{len(wrong)} of another shape (e.g. {k}: {shapes})")
        raise CheckpointError(f"{path}: weights do not fit architecture {arch!r}: tensors {'; '.join(parts)}")
    broken = non_finite_tensors(state)
    if broken:  # a run that diverged saved them: every output would be NaN
        raise CheckpointError(f"{path}: {len(broken)} weight tensor(s) hold NaN or infinite values (e.g. {broken[0]})")


# What a weights-only checkpoint keeps of a training checkpoint: enough to rebuild, run and describe the
# network (``model_from_checkpoint``, predict, evaluate), not to resume its training.
WEIGHTS_KEYS = (
    "arch",
    "arch_kwargs",
    "model",
    "norm",
    "config",
    "camera",
    "epoch",
    "global_step",
    "elapsed",
    "torch_version",
    "created_utc",
)


def export_weights(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    max_bytes: int | None = None,
    half: bool | None = None,
    extra: dict | None = None,
) -> dict:
    """Write the weights-only checkpoint of ``src`` to ``dst`` (atomically): no optimiser state, no
    run position, loadable by ``load_checkpoint``. The weights are float16 when ``half`` says so, or, with
    ``half`` None, when float32 would exceed ``max_bytes``; they load back into float32 networks.
    ``extra`` (plain data) is stored under ``"card"``. Returns what was written, less the weights."""
    ckpt = load_checkpoint(src)
    out = {k: ckpt[k] for k in WEIGHTS_KEYS if k in ckpt}
    tensors = inference_weights(ckpt)
    size32 = sum(t.numel() * 4 for t in tensors.values() if t.is_floating_point())
    if half is None:
        half = max_bytes is not None and size32 > max_bytes
    broken = non_finite_tensors(tensors)
    if broken:  # every reader would refuse the file: say so here, where the weights come from
        raise CheckpointError(f"{src}: {len(broken)} weight tensor(s) hold NaN or infinite values (e.g. {broken[0]})")

    def narrowed(t: torch.Tensor) -> torch.Tensor:
        # A value beyond float16's range would become inf and every reader would refuse the file: such a
        # tensor stays float32 (it loads into the network all the same).
        h = t.half()
        return h if bool(torch.isfinite(h).all()) else t

    out["model"] = {k: (narrowed(t) if half and t.is_floating_point() else t) for k, t in tensors.items()}
    out["weights_only"] = True
    out["weights_dtype"] = "float16" if half else "float32"
    if extra:
        out["card"] = extra
    with atomic_path(dst, fsync=True) as tmp:  # measured before it replaces anything at dst
        with open(tmp, "wb") as fh:
            torch.save({"format": FORMAT, "version": VERSION, **out}, fh)
        written = tmp.stat().st_size
        if max_bytes is not None and written > max_bytes:
            raise CheckpointError(f"{dst}: {written} bytes even {'in float16' if half else 'in float32'}, over {max_bytes}")
    return {k: v for k, v in out.items() if k != "model"} | {"bytes": written}
